package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunReleasesGossipOnEarlyError: run fails when --http-addr is taken,
// after the node (and its memberlist, listening on the gossip port, with
// its goroutines) has been made. Every goroutine has an owner that waits
// for it: when run returns, the gossip port is free again.
func TestRunReleasesGossipOnEarlyError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gossipAddr := free.Addr().String()
	free.Close()
	err = run(context.Background(), []string{"--http-addr", taken.Addr().String(), "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--gossip-addr", gossipAddr, "--peer-addr", "127.0.0.1:0", "--data-dir", ""}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "http-addr") {
		t.Fatalf("run with --http-addr taken: %v, want an error naming it", err)
	}
	ln, err := net.Listen("tcp", gossipAddr)
	if err != nil {
		t.Fatalf("after run returned, its gossip port %s is still held: %v", gossipAddr, err)
	}
	ln.Close()
}

// TestShutdownKeepsAnswering: on SIGTERM the node turns not ready and leaves
// its cluster, but the application beside it, which may be draining too,
// still gets answers until it stops asking; only then does the API close.
func TestShutdownKeepsAnswering(t *testing.T) {
	logs, cancel, done := runInProcess(t)
	started, at := logs.await(t, "sluice started", 0)
	api, admin := "http://"+started["http_addr"].(string), "http://"+started["admin_addr"].(string)
	// The application asks every drainQuiet/5, before and all through the
	// stop, until told to stop asking.
	check := `{"key": "k", "limit": 100000, "period": "1s"}`
	stopAsking, stopped := make(chan struct{}), make(chan error, 1)
	var answered atomic.Int64
	go func() {
		tick := time.NewTicker(drainQuiet / 5)
		defer tick.Stop()
		for {
			resp, err := http.Post(api+"/v1/check", "application/json", strings.NewReader(check))
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if err != nil {
				stopped <- fmt.Errorf("check %d: %w", answered.Load(), err)
				return
			}
			resp.Body.Close()
			answered.Add(1)
			select {
			case <-stopAsking:
				stopped <- nil
				return
			case <-tick.C:
			}
		}
	}()
	cancel() // SIGTERM, while the application is asking
	logs.await(t, "left the cluster; answering the application until it stops asking", at)
	if resp, err := http.Get(admin + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stopping: %v %v, want 503", resp, err)
	}
	// Well past the budget of a quiet API: the node is still answering.
	for answered.Load() < 15 {
		select {
		case err := <-done:
			t.Fatalf("run returned while the application was still asking: %v", err)
		case err := <-stopped:
			t.Fatalf("the application lost its sidecar while stopping: %v", err)
		case <-time.After(drainQuiet / 5):
		}
	}
	close(stopAsking)
	if err := <-stopped; err != nil {
		t.Fatalf("the application lost its sidecar while stopping: %v", err)
	}
	// It stops asking: the node closes.
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post(api+"/v1/check", "application/json", strings.NewReader(`{"key": "k", "limit": 1, "period": "1s"}`)); err == nil {
		t.Fatal("the API still answers after the node stopped")
	}
}

// runInProcess runs a node on loopback ports of its own, with a data dir of
// its own and extra flags, and returns its logs, how to stop it (SIGTERM)
// and what run returns.
func runInProcess(t *testing.T, extra ...string) (*logWatcher, context.CancelFunc, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	args := append([]string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	return logs, cancel, done
}
