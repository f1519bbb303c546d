package gossip

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestRealSockets runs two nodes over real UDP and TCP on loopback: the
// second joins the first by address, both see each other, and after Run
// returns no goroutine is left (goleak checks at the end of the package).
func TestRealSockets(t *testing.T) {
	key := []byte("sockets-test-key-sixteen")[:16]
	a, err := New(Config{Name: "a", BindAddr: "127.0.0.1:0", Keys: [][]byte{key}, Label: "t"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Name: "b", BindAddr: "127.0.0.1:0", Keys: [][]byte{key}, Label: "t", Seeds: []string{a.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	go func() { done <- b.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.NumAlive() != 2 || b.NumAlive() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not joined within 10s: a sees %v, b sees %v", a.Members(), b.Members())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestStopDuringJoinOfSilentSeeds: a node told to stop while joining a
// sample of seeds that accept connections but never answer (a partition
// that blackholes them) stops after the one it is waiting on, not after
// waiting out the TCP timeout of every address in the sample.
func TestStopDuringJoinOfSilentSeeds(t *testing.T) {
	accepted := make(chan net.Conn, 64)
	var seeds []string
	for range 8 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c // held open, never answered
			}
		}()
		seeds = append(seeds, ln.Addr().String())
	}
	g, err := New(Config{Name: "a", BindAddr: "127.0.0.1:0", Profile: "local", Insecure: true, Seeds: seeds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	first := <-accepted
	defer first.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := 1 + len(accepted); n > 1 {
		t.Fatalf("%d of %d silent seeds contacted after the node was told to stop; want only the one it was waiting on", n, len(seeds))
	}
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
}
