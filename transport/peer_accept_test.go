package transport

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicerl/sluice/bucket"
)

// pipeListener is a net.Listener in memory, for tests under
// testing/synctest: each dial hands the server end of a net.Pipe to
// Accept.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial opens a connection to the listener's server.
func (l *pipeListener) dial(ctx context.Context, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// serveOnPipe starts a PeerServer for cfg, deciding on a real store, on a
// pipeListener; the test's cleanup stops it and waits for its connections.
func serveOnPipe(t *testing.T, cfg PeerServerConfig) (*PeerServer, *pipeListener) {
	t.Helper()
	cfg.Handler = &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}
	s, ln := NewPeerServer(cfg), newPipeListener()
	serve(t, s, ln)
	return s, ln
}

// sumClients returns the sum over clients of the counter that metric
// picks from each.
func sumClients(clients []*PeerClient, metric func(*PeerClient) float64) float64 {
	var sum float64
	for _, c := range clients {
		sum += metric(c)
	}
	return sum
}

// TestPeerMaxAcceptedHolds: 12 clients (12 nodes) check against one owner
// that keeps at most 3 accepted connections. Going round one at a time,
// the owner has at most 3 open once each check is answered, and every
// connection it accepted past that was closed at its request, counted
// once on each side. Then all 12 at once, 20 times over: the bound is
// passed while they are busy and holds again once they are idle. Every
// check is answered by the owner, none fails (which would send it to the
// fair share), and the owner decided each exactly once.
func TestPeerMaxAcceptedHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const clients, bound = 12, 3
		srv, ln := serveOnPipe(t, PeerServerConfig{MaxAccepted: bound})
		cs := make([]*PeerClient, clients)
		for i := range cs {
			cs[i] = newClient(t, PeerClientConfig{Dial: ln.dial})
		}
		assertIdle := func(when string) {
			t.Helper()
			synctest.Wait()
			if open := testutil.ToFloat64(srv.gauge); open > bound {
				t.Fatalf("%s: %v accepted connections open while idle, bound %d", when, open, bound)
			}
		}
		var sent int
		for r := range 3 {
			for i, c := range cs {
				mustCheck(t, c, "owner")
				sent++
				assertIdle("round " + strconv.Itoa(r) + ", client " + strconv.Itoa(i))
			}
		}
		var failed atomic.Int64
		for r := range 20 {
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Go(func() {
					if _, err := c.Check(context.Background(), "owner", reapCheck); err != nil {
						failed.Add(1)
					}
				})
			}
			wg.Wait()
			sent += clients
			assertIdle("concurrent round " + strconv.Itoa(r))
		}
		if failed.Load() != 0 {
			t.Fatalf("%d of %d concurrent checks failed (they would fall back)", failed.Load(), 20*clients)
		}
		if served := testutil.ToFloat64(srv.checks); served != float64(sent) {
			t.Fatalf("the owner decided %v checks, want each of the %d sent once", served, sent)
		}
		dials := sumClients(cs, func(c *PeerClient) float64 { return testutil.ToFloat64(c.dials.WithLabelValues("ok")) })
		goaways := sumClients(cs, func(c *PeerClient) float64 { return testutil.ToFloat64(c.closes.WithLabelValues(closedGoAway)) })
		evicted := testutil.ToFloat64(srv.closes.WithLabelValues(closedAcceptedEvicted))
		open := testutil.ToFloat64(srv.gauge)
		resent := sumClients(cs, func(c *PeerClient) float64 { return testutil.ToFloat64(c.resent) })
		t.Logf("%d checks: %v dials, %v closed by the owner, %v open, %v checks resent", sent, dials, evicted, open, resent)
		if evicted == 0 || goaways != evicted || dials != evicted+open {
			t.Fatalf("%v dials, %v accepted_evicted at the owner, %v goaway at the clients, %v open: want evictions, each counted on both sides, and dials = evicted + open", dials, evicted, goaways, open)
		}
	})
}

// heldConn is a client end whose reads, once hold is set, wait for a
// token on release before returning what they read.
type heldConn struct {
	net.Conn
	hold    atomic.Bool
	release chan struct{}
}

func (c *heldConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.hold.Load() {
		<-c.release
	}
	return n, err
}

// TestPeerCheckSentAsOwnerClosesIsResent: a check sent on a connection
// after the owner asked to close it, but before the client read the
// request, is not decided on it; the client sends it again on a new
// connection, where it is answered, rather than failing it.
func TestPeerCheckSentAsOwnerClosesIsResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, ln := serveOnPipe(t, PeerServerConfig{MaxAccepted: 1})
		var first *heldConn
		a := newClient(t, PeerClientConfig{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := ln.dial(ctx, addr)
			if err == nil && first == nil {
				first = &heldConn{Conn: conn, release: make(chan struct{})}
				return first, nil
			}
			return conn, err
		}})
		b := newClient(t, PeerClientConfig{Dial: ln.dial})
		mustCheck(t, a, "owner")
		first.hold.Store(true)
		mustCheck(t, b, "owner") // over the bound: a's idle connection is asked to close
		synctest.Wait()          // the request waits in a's reader
		answered := make(chan error, 1)
		go func() {
			_, err := a.Check(context.Background(), "owner", reapCheck)
			answered <- err
		}()
		synctest.Wait() // written on the connection being closed
		if got := testutil.ToFloat64(srv.checks); got != 2 {
			t.Fatalf("the owner decided %v checks before a read its request; want 2 (none on the connection it closes)", got)
		}
		close(first.release)
		if err := <-answered; err != nil {
			t.Fatalf("the check sent as the owner closed its connection: %v; want it sent again and answered", err)
		}
		if resent, dials := testutil.ToFloat64(a.resent), testutil.ToFloat64(a.dials.WithLabelValues("ok")); resent != 1 || dials != 2 {
			t.Fatalf("%v checks resent on %v dials; want 1 on 2", resent, dials)
		}
		if got := testutil.ToFloat64(srv.checks); got != 3 {
			t.Fatalf("the owner decided %v checks, want 3: each once", got)
		}
		if got := testutil.ToFloat64(a.closes.WithLabelValues(closedError)); got != 0 {
			t.Fatalf("%v connections closed as broken, want 0", got)
		}
	})
}

// TestPeerServerIdleCloseAsksClient: a connection silent for the server's
// IdleTimeout is closed at its request, counted as accepted_idle at the
// server and goaway at the client, and the next check dials again.
func TestPeerServerIdleCloseAsksClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, ln := serveOnPipe(t, PeerServerConfig{IdleTimeout: 2 * time.Minute})
		c := newClient(t, PeerClientConfig{Dial: ln.dial, IdleTimeout: -1})
		mustCheck(t, c, "owner")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if open := testutil.ToFloat64(srv.gauge); open != 0 {
			t.Fatalf("%v accepted connections open after the idle timeout, want 0", open)
		}
		idle, goaway := testutil.ToFloat64(srv.closes.WithLabelValues(closedAcceptedIdle)), testutil.ToFloat64(c.closes.WithLabelValues(closedGoAway))
		if idle != 1 || goaway != 1 {
			t.Fatalf("%v accepted_idle at the server, %v goaway at the client; want 1 and 1", idle, goaway)
		}
		mustCheck(t, c, "owner")
		if dials := testutil.ToFloat64(c.dials.WithLabelValues("ok")); dials != 2 {
			t.Fatalf("%v dials, want 2", dials)
		}
	})
}

// BenchmarkPeerMaxAccepted measures what the accepted bound costs, over
// real TCP on loopback with a keyed handshake: 32 clients (32 nodes) check
// one owner that keeps at most 4 accepted connections, each client from
// its own goroutine, so the owner closes idle connections while checks are
// being sent on them. It reports per check the connections the owner
// closed (evicted/check), the checks sent again because the owner closed
// their connection before deciding them (resent/check), and those that
// failed, which a node would decide from its fair share (failed/check).
func BenchmarkPeerMaxAccepted(b *testing.B) {
	const clients, bound = 32, 4
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	keys := func() [][]byte { return [][]byte{keyA} }
	srv := NewPeerServer(PeerServerConfig{Handler: &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, Keys: keys, MaxAccepted: bound})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()
	cs := make([]*PeerClient, clients)
	for i := range cs {
		cs[i] = NewPeerClient(PeerClientConfig{Keys: keys})
	}
	addr := ln.Addr().String()
	var next, failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Check(context.Background(), addr, reapCheck); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	resent := sumClients(cs, func(c *PeerClient) float64 { return testutil.ToFloat64(c.resent) })
	b.ReportMetric(testutil.ToFloat64(srv.closes.WithLabelValues(closedAcceptedEvicted))/float64(b.N), "evicted/check")
	b.ReportMetric(resent/float64(b.N), "resent/check")
	b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/check")
	for _, c := range cs {
		c.Close()
	}
	cancel()
	<-done
}

// TestPeerServerClosesConnectionItsPeerDoesNotRead: a peer that sends a
// batch and never reads its answer (a hung process) must not keep its
// accepted connection open for good: the server's write of the answer is
// bounded by the idle timeout as its reads are, and the close is counted
// as accepted_idle. Without the write deadline the write blocked forever,
// past both the idle timeout and MaxAccepted (found by a hostile review).
func TestPeerServerClosesConnectionItsPeerDoesNotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, ln := serveOnPipe(t, PeerServerConfig{MaxAccepted: 1, IdleTimeout: 2 * time.Minute})
		raw, err := ln.dial(context.Background(), "owner")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := clientHandshake(raw, nil); err != nil {
			t.Fatal(err)
		}
		w := newFrameWriter()
		if err := w.write(raw, frameCheckBatch, &peerBatch{id: 1, checks: reapCheck}); err != nil {
			t.Fatal(err)
		}
		// never read
		b := newClient(t, PeerClientConfig{Dial: ln.dial, IdleTimeout: -1})
		mustCheck(t, b, "owner")
		time.Sleep(10 * time.Minute) // 5 × the server's idle timeout
		synctest.Wait()
		open := testutil.ToFloat64(srv.gauge)
		idle := testutil.ToFloat64(srv.closes.WithLabelValues(closedAcceptedIdle))
		t.Logf("after 10 min: %v accepted open (cap 1), %v accepted_idle", open, idle)
		if open != 0 {
			t.Errorf("%v accepted connections open 10 min later (the other client's was closed for the cap), idle timeout 2 min: a peer that does not read pins its connection (the server's answer write has no deadline)", open)
		}
	})
}
