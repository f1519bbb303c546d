package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
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

// processes returns the processes of cmds.
func processes(cmds []*exec.Cmd) []*os.Process {
	var ps []*os.Process
	for _, c := range cmds {
		ps = append(ps, c.Process)
	}
	return ps
}

// processCPU is the CPU time, user and system, that the processes have
// used so far, read from /proc (0 where there is none).
func processCPU(ps []*os.Process) time.Duration {
	var total time.Duration
	for _, p := range ps {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name (which may hold spaces, inside
		// parentheses): utime and stime are the 12th and 13th, in clock
		// ticks of 1/100 s.
		_, rest, ok := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 13 {
			continue
		}
		for _, f := range fields[11:13] {
			ticks, _ := strconv.ParseInt(f, 10, 64)
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total
}
