package transport

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

// pipeNet serves peers in memory, for tests under testing/synctest: a dial
// to an address opens a net.Pipe to that address's PeerServer, and the
// client ends still open are counted by address.
type pipeNet struct {
	t     *testing.T
	cfg   PeerServerConfig // Handler is set per address
	wg    sync.WaitGroup   // the servers' connections
	mu    sync.Mutex       // guards the fields below
	open  map[string]int
	gates map[string]chan struct{} // an address's batches wait for a token, if set
}

// newPipeNet returns a pipeNet whose servers take cfg; the test's cleanup
// waits for their connections to end (after the clients close).
func newPipeNet(t *testing.T, cfg PeerServerConfig) *pipeNet {
	n := &pipeNet{t: t, cfg: cfg, open: map[string]int{}, gates: map[string]chan struct{}{}}
	t.Cleanup(n.wg.Wait) // registered before any client: runs after it closes
	return n
}

func (n *pipeNet) dial(_ context.Context, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	n.mu.Lock()
	n.open[addr]++
	cfg := n.cfg
	cfg.Handler = &storeHandler{store: bucket.NewStore(bucket.StoreConfig{}), gate: n.gates[addr]}
	n.mu.Unlock()
	srv := NewPeerServer(cfg)
	n.wg.Go(func() { srv.serveConn(server) })
	return &countedConn{Conn: client, closed: func() {
		n.mu.Lock()
		n.open[addr]--
		n.mu.Unlock()
	}}, nil
}

// gate makes addr's batches wait for a token sent on the returned channel.
// Call it before the first dial to addr.
func (n *pipeNet) gate(addr string) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gates[addr] = make(chan struct{})
	return n.gates[addr]
}

// opened returns the client ends open to addr, or to all addresses if
// addr is empty.
func (n *pipeNet) opened(addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr != "" {
		return n.open[addr]
	}
	sum := 0
	for _, k := range n.open {
		sum += k
	}
	return sum
}

// countedConn reports its first Close.
type countedConn struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}

var reapCheck = []cluster.PeerCheck{{ID: bucket.ID{Rule: "r", Key: "k"}, Limit: bucket.Limit{Rate: 1 << 20, Period: time.Second, Burst: 1 << 20}, Cost: 1}}

// mustCheck sends reapCheck to addr and fails the test unless it is
// answered and allowed.
func mustCheck(t *testing.T, c *PeerClient, addr string) {
	t.Helper()
	d, err := c.Check(context.Background(), addr, reapCheck)
	if err != nil || !d[0].Allowed {
		t.Fatalf("check to %s: %v, %+v", addr, err, d)
	}
}

// assertOpen checks that the client counts want connections open, and
// that the network has as many client ends open.
func assertOpen(t *testing.T, c *PeerClient, n *pipeNet, want int) {
	t.Helper()
	if got, ends := testutil.ToFloat64(c.conns), n.opened(""); got != float64(want) || ends != want {
		t.Fatalf("sluice_peer_connections %v, %d client ends open; want %d", got, ends, want)
	}
}

// TestPeerIdleConnectionCloses: a connection unused for IdleTimeout is
// closed within a quarter of it more, not before, and with it the peer's
// goroutines; a clock gone backwards closes nothing.
func TestPeerIdleConnectionCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{})
		c := newClient(t, PeerClientConfig{Dial: n.dial, IdleTimeout: time.Minute})
		mustCheck(t, c, "a")
		c.reap(time.Now().Add(-time.Hour)) // the clock went back
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		assertOpen(t, c, n, 1)
		time.Sleep(time.Minute / 4)
		synctest.Wait()
		assertOpen(t, c, n, 0)
		if got := testutil.ToFloat64(c.closes.WithLabelValues(closedIdle)); got != 1 {
			t.Fatalf("%v closed as idle, want 1", got)
		}
		c.mu.Lock()
		peers := len(c.peers)
		c.mu.Unlock()
		if peers != 0 {
			t.Fatalf("%d peers kept after the idle close, want 0", peers)
		}
	})
}

// TestPeerRedialsAfterIdleClose: the next check to a peer whose connection
// was closed as idle dials again and is answered.
func TestPeerRedialsAfterIdleClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{})
		c := newClient(t, PeerClientConfig{Dial: n.dial})
		mustCheck(t, c, "a")
		time.Sleep(DefaultPeerIdleTimeout * 5 / 4)
		synctest.Wait()
		assertOpen(t, c, n, 0)
		mustCheck(t, c, "a")
		assertOpen(t, c, n, 1)
		if got := testutil.ToFloat64(c.dials.WithLabelValues("ok")); got != 2 {
			t.Fatalf("%v dials, want 2", got)
		}
	})
}

// TestPeerMaxConnsHolds: with 10 peers and a bound of 3, one caller going
// round them never has more than 3 connections open once a check is
// answered, and every check is answered; then 10 callers at once, one per
// peer, go past the bound while all are busy, are all answered, and the
// excess is closed once their answers are in.
func TestPeerMaxConnsHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{})
		c := newClient(t, PeerClientConfig{Dial: n.dial, MaxConns: 3})
		for i := range 50 {
			mustCheck(t, c, "peer-"+strconv.Itoa(i*7%10))
			if open := testutil.ToFloat64(c.conns); open > 3 || n.opened("") > 3 {
				t.Fatalf("after check %d: %v connections open (%d ends), bound 3", i, open, n.opened(""))
			}
		}
		dials := testutil.ToFloat64(c.dials.WithLabelValues("ok"))
		if evicted := testutil.ToFloat64(c.closes.WithLabelValues(closedEvicted)); evicted != dials-3 {
			t.Fatalf("%v evicted after %v dials, want %v", evicted, dials, dials-3)
		}
		for range 3 {
			var wg sync.WaitGroup
			for i := range 10 {
				wg.Go(func() { mustCheck(t, c, "peer-"+strconv.Itoa(i)) })
			}
			wg.Wait()
			synctest.Wait()
			assertOpen(t, c, n, 3)
		}
	})
}

// TestPeerBusyConnectionIsNotEvicted: with a bound of 1, a check to a
// second peer while the first, least recently used, has one in flight
// opens a second connection rather than wait or close the busy one. Once
// answered, the second is the one idle connection past the bound and is
// closed; the check in flight is answered on its own connection.
func TestPeerBusyConnectionIsNotEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{})
		gate := n.gate("a")
		c := newClient(t, PeerClientConfig{Dial: n.dial, MaxConns: 1})
		answered := make(chan error, 1)
		go func() {
			_, err := c.Check(context.Background(), "a", reapCheck)
			answered <- err
		}()
		synctest.Wait() // a's check waits at its owner
		time.Sleep(time.Second)
		mustCheck(t, c, "b")
		synctest.Wait()
		assertOpen(t, c, n, 1)
		if n.opened("a") != 1 {
			t.Fatal("the busy connection was closed to make room")
		}
		gate <- struct{}{}
		if err := <-answered; err != nil {
			t.Fatalf("the check in flight on the least recently used connection: %v", err)
		}
		synctest.Wait()
		assertOpen(t, c, n, 1)
		if got := testutil.ToFloat64(c.closes.WithLabelValues(closedEvicted)); got != 1 {
			t.Fatalf("%v evicted, want 1", got)
		}
		mustCheck(t, c, "b") // and b again: a, now idle, makes room
		assertOpen(t, c, n, 1)
		if n.opened("a") != 0 || testutil.ToFloat64(c.closes.WithLabelValues(closedEvicted)) != 2 {
			t.Fatal("a, idle, was not evicted to make room for b")
		}
	})
}

// TestPeerServerClosesIdleConnections: a client that never closes its
// idle connection has it closed by the server after the server's
// IdleTimeout, and its next check dials again.
func TestPeerServerClosesIdleConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{IdleTimeout: 2 * time.Minute})
		c := newClient(t, PeerClientConfig{Dial: n.dial, IdleTimeout: -1})
		mustCheck(t, c, "a")
		time.Sleep(2*time.Minute - time.Second)
		synctest.Wait()
		assertOpen(t, c, n, 1)
		time.Sleep(time.Second)
		synctest.Wait()
		assertOpen(t, c, n, 0)
		mustCheck(t, c, "a")
		assertOpen(t, c, n, 1)
	})
}

// BenchmarkPeerRedial measures what closing idle connections costs a
// check, over real TCP on loopback with a keyed handshake (client and
// server in one process, on the same cores), one caller at a time: "open"
// is a check on an open connection; "redial" drops the peer as the idle
// reaper does and checks again, so it pays for closing the connection,
// starting the peer's goroutines, dialling, authenticating, and the check.
func BenchmarkPeerRedial(b *testing.B) {
	for _, redial := range []bool{false, true} {
		name := "open"
		if redial {
			name = "redial"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			keys := func() [][]byte { return [][]byte{keyA} }
			srv := NewPeerServer(PeerServerConfig{Handler: &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, Keys: keys})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- srv.Serve(ctx, ln) }()
			c := NewPeerClient(PeerClientConfig{Keys: keys, IdleTimeout: time.Hour})
			addr := ln.Addr().String()
			c.Check(context.Background(), addr, reapCheck) // connect outside the timing
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if redial {
					c.reap(time.Now().Add(2 * time.Hour))
				}
				if _, err := c.Check(context.Background(), addr, reapCheck); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if dials := testutil.ToFloat64(c.dials.WithLabelValues("ok")); redial && dials < float64(b.N) {
				b.Fatalf("%v dials for %d checks: not redialling", dials, b.N)
			}
			c.Close()
			cancel()
			<-done
		})
	}
}
