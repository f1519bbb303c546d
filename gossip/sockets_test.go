package gossip

import (
	"context"
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
