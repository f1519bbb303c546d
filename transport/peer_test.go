package transport

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// storeHandler decides forwarded checks on a real bucket store, as an owner
// does.
type storeHandler struct {
	store *bucket.Store
	gate  chan struct{} // if set, each batch waits for a token from it
	sync  rules.Sync    // of the last handoff
}

func (h *storeHandler) DecideForwarded(_ context.Context, checks []cluster.PeerCheck) ([]bucket.Decision, error) {
	if h.gate != nil {
		<-h.gate
	}
	out := make([]bucket.Decision, len(checks))
	now := time.Now()
	for i, c := range checks {
		out[i] = h.store.AllowN(now, c.ID, c.Limit, c.Cost)
	}
	return out, nil
}

func (h *storeHandler) AcceptHandoff(sync rules.Sync, entries []bucket.Entry) error {
	h.sync = sync
	for _, e := range entries {
		h.store.Merge(time.Now(), e)
	}
	return nil
}

func startPeerServer(t *testing.T, h PeerHandler, keys [][]byte) (*PeerServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewPeerServer(PeerServerConfig{Handler: h, Keys: func() [][]byte { return keys }})
	serve(t, s, ln)
	return s, ln.Addr().String()
}

// serve runs s on ln until the test's cleanup stops it and waits for it.
func serve(t *testing.T, s *PeerServer, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func newClient(t *testing.T, cfg PeerClientConfig) *PeerClient {
	t.Helper()
	c := NewPeerClient(cfg)
	t.Cleanup(c.Close)
	return c
}

var (
	keyA = []byte("peer-test-key-a-thirty-two-bytes")
	keyB = []byte("peer-test-key-b-thirty-two-bytes")
)

// TestPeerExactAndCoalesced sends 2,000 concurrent single checks on one key
// through one connection: exactly the burst is admitted, and the checks
// travel in far fewer frames than calls.
func TestPeerExactAndCoalesced(t *testing.T) {
	srv, addr := startPeerServer(t, &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, [][]byte{keyA})
	c := newClient(t, PeerClientConfig{Keys: func() [][]byte { return [][]byte{keyA} }})
	check := []cluster.PeerCheck{{ID: bucket.ID{Rule: "r", Key: "hot"}, Limit: bucket.Limit{Rate: 1, Period: time.Hour, Burst: 700}, Cost: 1}}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 40 {
				d, err := c.Check(context.Background(), addr, check)
				if err != nil {
					t.Error(err)
					return
				}
				if d[0].Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 700 {
		t.Fatalf("admitted %d, want exactly the burst, 700", got)
	}
	frames := testutil.ToFloat64(srv.frames)
	if frames >= 2000 || testutil.ToFloat64(srv.checks) != 2000 {
		t.Fatalf("%v frames for 2000 checks: no coalescing", frames)
	}
	t.Logf("2000 checks in %v frames", frames)
}

func TestPeerAuth(t *testing.T) {
	srv, addr := startPeerServer(t, &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, [][]byte{keyB, keyA})
	check := []cluster.PeerCheck{{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: time.Second, Burst: 1}, Cost: 1}}

	// Mid-rotation: the server uses B and still accepts A.
	ok := newClient(t, PeerClientConfig{Keys: func() [][]byte { return [][]byte{keyA} }})
	if _, err := ok.Check(context.Background(), addr, check); err != nil {
		t.Fatalf("a client with an installed key: %v", err)
	}
	stranger := newClient(t, PeerClientConfig{Keys: func() [][]byte { return [][]byte{[]byte("not-a-cluster-key-thirty-two-by!")} }})
	if _, err := stranger.Check(context.Background(), addr, check); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("a client without a cluster key: %v, want ErrPeerUnavailable", err)
	}
	keyless := newClient(t, PeerClientConfig{})
	if _, err := keyless.Check(context.Background(), addr, check); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("a client with no key: %v, want ErrPeerUnavailable", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(srv.rejected.WithLabelValues("auth")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%v auth rejections counted, want 1 (the stranger; the keyless client refuses itself)", testutil.ToFloat64(srv.rejected.WithLabelValues("auth")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And a keyed client never talks to an unkeyed server (no downgrade).
	_, open := startPeerServer(t, &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, nil)
	if _, err := ok.Check(context.Background(), open, check); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("keyed client to an unkeyed server: %v", err)
	}
}

func TestPeerUnreachableFailsFast(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newClient(t, PeerClientConfig{RetryAfter: time.Hour})
	check := []cluster.PeerCheck{{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: time.Second, Burst: 1}, Cost: 1}}
	for range 3 {
		if _, err := c.Check(context.Background(), addr, check); !errors.Is(err, ErrPeerUnavailable) {
			t.Fatalf("unreachable peer: %v", err)
		}
	}
	if n := testutil.ToFloat64(c.dials.WithLabelValues("error")); n != 1 {
		t.Fatalf("%v dials, want 1: calls within RetryAfter must fail without dialling", n)
	}
}

// TestPeerBoundedInFlight stalls the owner: calls beyond MaxInFlight fail
// at once with ErrPeerOverloaded, and a caller's deadline is honoured.
func TestPeerBoundedInFlight(t *testing.T) {
	h := &storeHandler{store: bucket.NewStore(bucket.StoreConfig{}), gate: make(chan struct{})}
	_, addr := startPeerServer(t, h, nil)
	c := newClient(t, PeerClientConfig{MaxInFlight: 4})
	check := []cluster.PeerCheck{{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 100, Period: time.Second, Burst: 100}, Cost: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := c.Check(ctx, addr, check)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var overloaded, deadline int
	for err := range errs {
		switch {
		case errors.Is(err, ErrPeerOverloaded):
			overloaded++
		case errors.Is(err, context.DeadlineExceeded):
			deadline++
		default:
			t.Errorf("unexpected result %v", err)
		}
	}
	if overloaded != 6 || deadline != 4 {
		t.Fatalf("%d overloaded, %d timed out; want 6 and 4", overloaded, deadline)
	}
	close(h.gate) // release the stalled batches before cleanup
}

func TestPeerServerDropsMalformedFrames(t *testing.T) {
	srv, addr := startPeerServer(t, &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := clientHandshake(conn, nil); err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{0, 0, 0, 3, frameCheckBatch, 0xc1, 0xc1}) // 0xc1 is never valid msgpack
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the server answered a malformed frame")
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(srv.rejected.WithLabelValues("malformed")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("malformed frame not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPeerHandoff(t *testing.T) {
	h := &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}
	_, addr := startPeerServer(t, h, [][]byte{keyA})
	c := newClient(t, PeerClientConfig{Keys: func() [][]byte { return [][]byte{keyA} }})
	l := bucket.Limit{Rate: 1, Period: time.Hour, Burst: 10}
	var entries []bucket.Entry
	for i := range 2500 { // three frames
		entries = append(entries, bucket.Entry{ID: bucket.ID{Rule: "r", Key: "k" + strconv.Itoa(i)}, Limit: l, Tokens: 2})
	}
	if err := c.Handoff(context.Background(), addr, rules.SyncAuto, entries); err != nil {
		t.Fatal(err)
	}
	if h.sync != rules.SyncAuto {
		t.Fatalf("handoff arrived for mode %v, want auto", h.sync)
	}
	if n := h.store.Len(); n != 2500 {
		t.Fatalf("%d buckets arrived, want 2500", n)
	}
	if d := h.store.Peek(time.Now(), bucket.ID{Rule: "r", Key: "k2499"}, l, 0); d.Remaining != 2 {
		t.Fatalf("handed-over bucket has %d tokens, want 2", d.Remaining)
	}
}

// leavingHandler is a node that has left its cluster: it refuses every
// handoff.
type leavingHandler struct{ storeHandler }

func (h *leavingHandler) AcceptHandoff(rules.Sync, []bucket.Entry) error { return cluster.ErrLeft }

// TestPeerHandoffToALeaver: an owner that is leaving too says so, and the
// sender learns it (and hands the buckets to the next owner).
func TestPeerHandoffToALeaver(t *testing.T) {
	h := &leavingHandler{storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}}
	_, addr := startPeerServer(t, h, [][]byte{keyA})
	c := newClient(t, PeerClientConfig{Keys: func() [][]byte { return [][]byte{keyA} }})
	l := bucket.Limit{Rate: 1, Period: time.Hour, Burst: 10}
	entries := []bucket.Entry{{ID: bucket.ID{Rule: "r", Key: "k"}, Limit: l, Tokens: 2}}
	if err := c.Handoff(context.Background(), addr, rules.SyncOwner, entries); !errors.Is(err, cluster.ErrLeft) {
		t.Fatalf("handoff to a leaving owner: %v, want cluster.ErrLeft", err)
	}
	if n := h.store.Len(); n != 0 {
		t.Fatalf("the leaving owner holds %d buckets, want none", n)
	}
}

// BenchmarkPeerTCP forwards single checks to an owner over real TCP on
// loopback from many goroutines (client and server in one process, on the
// same cores), and reports the batch size that coalescing achieved.
func BenchmarkPeerTCP(b *testing.B) {
	for _, callers := range []int{2, 16, 256} {
		b.Run("goroutines="+strconv.Itoa(callers), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := NewPeerServer(PeerServerConfig{Handler: &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, Keys: func() [][]byte { return [][]byte{keyA} }})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- srv.Serve(ctx, ln) }()
			c := NewPeerClient(PeerClientConfig{Keys: func() [][]byte { return [][]byte{keyA} }})
			check := []cluster.PeerCheck{{ID: bucket.ID{Rule: "r", Key: "k"}, Limit: bucket.Limit{Rate: 1 << 40, Period: time.Second, Burst: 1 << 40}, Cost: 1}}
			addr := ln.Addr().String()
			c.Check(context.Background(), addr, check) // connect outside the timing
			b.SetParallelism(max(callers/runtimeProcs(), 1))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Check(context.Background(), addr, check); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			frames, checks := testutil.ToFloat64(srv.frames), testutil.ToFloat64(srv.checks)
			b.ReportMetric(checks/frames, "checks/frame")
			c.Close()
			cancel()
			<-done
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func TestPeerForget(t *testing.T) {
	_, addr := startPeerServer(t, &storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}, nil)
	c := newClient(t, PeerClientConfig{})
	check := []cluster.PeerCheck{{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: time.Second, Burst: 5}, Cost: 1}}
	if _, err := c.Check(context.Background(), addr, check); err != nil {
		t.Fatal(err)
	}
	c.Forget(addr)
	c.mu.Lock()
	n := len(c.peers)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d peers after Forget", n)
	}
	if _, err := c.Check(context.Background(), addr, check); err != nil {
		t.Fatalf("a forgotten peer can be called again: %v", err)
	}
}
