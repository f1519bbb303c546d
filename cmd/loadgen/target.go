package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// targetTransport returns the base URLs to send requests to and a
// transport that reaches them: "http://host:port" targets as they are,
// "unix:/path" targets through their Unix domain sockets (as
// http://unix-N, N the target's index). conns bounds the connections to
// each target.
func targetTransport(targets []string, conns int) ([]string, *http.Transport) {
	bases := make([]string, len(targets))
	sockets := map[string]string{}
	for i, t := range targets {
		if path, ok := strings.CutPrefix(t, "unix:"); ok {
			host := "unix-" + strconv.Itoa(i)
			sockets[host+":80"] = path
			bases[i] = "http://" + host
			continue
		}
		bases[i] = strings.TrimRight(t, "/")
	}
	dialer := &net.Dialer{Timeout: time.Second}
	return bases, &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if path, ok := sockets[addr]; ok {
				return dialer.DialContext(ctx, "unix", path)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
