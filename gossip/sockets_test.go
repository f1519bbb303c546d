package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// TestJoinLogsOneLinePerAttempt: a node whose three seeds refuse
// connections logs one line per join attempt, not one per seed: at INFO
// for the first attempt, at DEBUG for the next, each saying how many
// addresses it tried and answered and the last error; then a seed that
// answers ends the run of failures with one INFO line.
func TestJoinLogsOneLinePerAttempt(t *testing.T) {
	var seeds []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, ln.Addr().String())
		ln.Close() // refused from now on
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, err := New(Config{Name: "a", BindAddr: "127.0.0.1:0", Profile: "local", Insecure: true, Seeds: seeds, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer g.shutdown()
	ctx := context.Background()
	attempts := func() []string {
		var lines []string
		for line := range strings.Lines(buf.String()) {
			if !strings.Contains(line, "component=memberlist") {
				lines = append(lines, line)
			}
		}
		buf.Reset()
		return lines
	}
	for i, level := range []string{"INFO", "DEBUG"} {
		if failed := g.joinOnce(ctx, i); failed != i+1 {
			t.Fatalf("attempt %d: %d failed in a row, want %d", i+1, failed, i+1)
		}
		lines := attempts()
		want := fmt.Sprintf(`level=%s msg="join found no peer yet" tried=3 answered=0 attempt=%d last_err="failed to join `, level, i+1)
		if len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Fatalf("attempt %d logged %q; want one line containing %q", i+1, lines, want)
		}
	}

	b, err := New(Config{Name: "b", BindAddr: "127.0.0.1:0", Profile: "local", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.shutdown()
	g.cfg.Seeds = append(g.cfg.Seeds, b.Addr())
	if failed := g.joinOnce(ctx, 2); failed != 0 {
		t.Fatalf("a join that found a peer leaves %d failed in a row, want 0", failed)
	}
	if lines := attempts(); len(lines) != 1 || !strings.Contains(lines[0], `level=INFO msg=joined tried=4 answered=1 members=1 failed_attempts=2`) {
		t.Fatalf("the join that found a peer logged %q; want one INFO line", lines)
	}
}

// TestUpdateMetaWhileJoining: the join loop reads the node's own port
// while its metadata changes (a node's heartbeat flag follows its rules):
// memberlist rewrites its own record on UpdateNode, so the port and
// address are read once, at New. The race detector caught it in a
// twelve-node test.
func TestUpdateMetaWhileJoining(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := ln.Addr().String()
	ln.Close() // refused from now on
	g, err := New(Config{Name: "a", BindAddr: "127.0.0.1:0", Profile: "local", Insecure: true, Seeds: []string{seed}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.shutdown()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 20 {
			g.joinOnce(context.Background(), i)
		}
	})
	wg.Go(func() {
		for i := range 20 {
			if err := g.UpdateMeta(Meta{API: APIVersion, Beats: i%2 == 0}, time.Second); err != nil {
				t.Error(err)
			}
			_ = g.Addr()
		}
	})
	wg.Wait()
}
