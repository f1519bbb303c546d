package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
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
	err = run(context.Background(), []string{"--http-addr", taken.Addr().String(), "--admin-addr", "127.0.0.1:0",
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
