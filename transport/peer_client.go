package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// ErrPeerUnavailable is a peer that cannot be reached now: the dial failed,
// the connection broke, or a recent failure has not yet been retried.
var ErrPeerUnavailable = errors.New("transport: peer unavailable")

// ErrPeerOverloaded is a peer with too many checks already in flight; the
// caller should fall back rather than queue more.
var ErrPeerOverloaded = errors.New("transport: too many checks in flight to peer")

// PeerClientConfig configures a PeerClient. Zero fields mean defaults.
type PeerClientConfig struct {
	// Dial opens a connection to a peer address. If nil, TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Keys returns the cluster keys; the first proves this node's
	// membership. None: no proof (unencrypted clusters). Must not block.
	Keys func() [][]byte
	// MaxInFlight bounds the checks queued or awaiting an answer per peer.
	// If zero, defaults to 10,000.
	MaxInFlight int
	// RetryAfter is how long calls to a peer whose dial failed fail at once
	// before it is dialled again. If zero, defaults to 1s.
	RetryAfter time.Duration
	// IdleTimeout is how long a peer may go without a check sent to it
	// before its connection is closed, with the goroutines and queue kept
	// for it; the next check to it dials again. A connection is closed
	// between IdleTimeout and 1.25 × IdleTimeout after its last use, never
	// with a check in flight. If zero, defaults to 60s; negative: never.
	IdleTimeout time.Duration
	// MaxConns bounds the open connections to peers. Dialling one more
	// first closes the least recently used idle one. If every open
	// connection has checks in flight, the dial goes ahead all the same (a
	// soft bound: no check waits or fails for it) and the excess is closed
	// as connections fall idle. If zero, defaults to 64; negative: no bound.
	MaxConns int
	// Logger receives connection errors. If nil, discarded.
	Logger *slog.Logger
	// Registerer receives the client's metrics. If nil, not registered.
	Registerer prometheus.Registerer
}

// PeerClient sends checks to their owners over one persistent connection
// per peer: it is the cluster.Peers of a node. Concurrent calls to one
// peer are coalesced: while a frame is being written, later calls queue,
// and the next frame carries all of them (up to MaxBatch checks).
// Connections are bounded (peer_reap.go): an idle one is closed after
// IdleTimeout, and at most MaxConns are kept open. It is safe for
// concurrent use.
type PeerClient struct {
	cfg     PeerClientConfig
	stop    chan struct{}
	wg      sync.WaitGroup
	batches prometheus.Histogram
	dials   *prometheus.CounterVec
	closes  *prometheus.CounterVec // by reason; shared with the node's PeerServer
	resent  prometheus.Counter     // checks sent again after a goaway
	open    atomic.Int64           // connections open now
	// dropping counts connections chosen for eviction and not yet
	// closed; it goes up under mu (peer_reap.go).
	dropping atomic.Int64
	conns    prometheus.GaugeFunc // open, exported

	mu      sync.Mutex // guards peers, closed, reaping, and every peerConn's inflight going up
	peers   map[string]*peerConn
	closed  bool
	reaping bool // the idle reaper runs: started with the first peer
}

// NewPeerClient returns a PeerClient for cfg. Close it when done.
func NewPeerClient(cfg PeerClientConfig) *PeerClient {
	if cfg.Dial == nil {
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if cfg.Keys == nil {
		cfg.Keys = func() [][]byte { return nil }
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 10_000
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultPeerIdleTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultPeerMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &PeerClient{
		cfg:   cfg,
		stop:  make(chan struct{}),
		peers: make(map[string]*peerConn),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_forward_batch_size",
			Help:    "Checks per frame forwarded to an owner (concurrent checks are coalesced).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 1000},
		}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_peer_dials_total",
			Help: "Connections opened to peers, by result (ok, error).",
		}, []string{"result"}),
	}
	c.dials.WithLabelValues("ok") // both at zero from start
	c.dials.WithLabelValues("error")
	c.closes = peerCloses(cfg.Registerer)
	c.resent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_peer_resent_checks_total",
		Help: "Checks sent again on a new connection because their owner closed the one they were sent on before deciding them (it was over its --peer-max-accepted, or the connection was silent past its timeout).",
	})
	c.conns = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_peer_connections",
		Help: "Connections open to peers, to forward checks to their owners.",
	}, func() float64 { return float64(c.open.Load()) })
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.batches, c.dials, c.resent, c.conns)
	}
	return c
}

// call is one Check waiting for its decisions.
type call struct {
	checks []cluster.PeerCheck
	done   chan callResult   // buffered: the answer never blocks
	sc     trace.SpanContext // the caller's span, sent with the checks if sampled
}

type callResult struct {
	decisions []bucket.Decision
	err       error
}

// Check sends checks to the peer at addr and returns its decisions, in
// order, with the span context in ctx if it is sampled (so that the
// owner's spans join the caller's trace). It returns ctx's error if ctx
// ends first, ErrPeerOverloaded if
// too much is in flight to that peer, and an error wrapping
// ErrPeerUnavailable if the peer cannot be reached.
func (c *PeerClient) Check(ctx context.Context, addr string, checks []cluster.PeerCheck) ([]bucket.Decision, error) {
	if len(checks) == 0 || len(checks) > MaxBatch {
		return nil, fmt.Errorf("transport: %d checks in one call (1 to %d)", len(checks), MaxBatch)
	}
	pc, err := c.peer(addr, int64(len(checks)))
	if err != nil {
		return nil, err
	}
	cl := &call{checks: checks, done: make(chan callResult, 1), sc: trace.SpanContextFromContext(ctx)}
	select {
	case pc.queue <- cl:
	default:
		pc.inflight.Add(-int64(len(checks)))
		return nil, ErrPeerOverloaded
	}
	select {
	case r := <-cl.done:
		return r.decisions, r.err
	case <-ctx.Done():
		return nil, ctx.Err() // the answer, when it comes, is dropped
	}
}

// peer returns the peerConn of addr, starting one if there is none, with n
// checks counted in flight on it. They are counted under c.mu, so a
// peerConn seen idle under c.mu and dropped from c.peers gets no more
// calls (peer_reap.go).
func (c *PeerClient) peer(addr string, n int64) (*peerConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: client closed", ErrPeerUnavailable)
	}
	pc, ok := c.peers[addr]
	if !ok {
		pc = &peerConn{c: c, addr: addr, queue: make(chan *call, c.cfg.MaxInFlight), pending: map[uint64][]*call{}, gone: make(chan struct{})}
		pc.lastUsed.Store(time.Now().UnixNano())
		c.peers[addr] = pc
		c.wg.Go(pc.run)
		if !c.reaping && c.cfg.IdleTimeout > 0 {
			c.reaping = true
			c.wg.Go(c.reapIdle)
		}
	}
	if pc.inflight.Add(n) > int64(c.cfg.MaxInFlight) {
		pc.inflight.Add(-n)
		return nil, ErrPeerOverloaded
	}
	return pc, nil
}

// Handoff sends buckets to their new owner at addr, in frames of at most
// MaxBatch, on a connection of its own (handoffs are rare and may be
// large), and returns when the owner has merged them all. mode is the mode
// the buckets belong to. An owner that is leaving too refuses them:
// cluster.ErrLeft, and it merged none of the frame it refused.
func (c *PeerClient) Handoff(ctx context.Context, addr string, mode rules.Sync, entries []bucket.Entry) error {
	conn, err := c.cfg.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("%w: handoff to %s: %v", ErrPeerUnavailable, addr, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	} else {
		conn.SetDeadline(time.Now().Add(handshakeLimit))
	}
	if err := clientHandshake(conn, c.cfg.Keys()); err != nil {
		return fmt.Errorf("handoff to %s: %w", addr, err)
	}
	w, r := newFrameWriter(), newFrameReader()
	for id := uint64(1); len(entries) > 0; id++ {
		n := min(len(entries), MaxBatch)
		if err := w.write(conn, frameHandoff, &peerHandoff{id: id, sync: mode, entries: entries[:n]}); err != nil {
			return fmt.Errorf("handoff to %s: %w", addr, err)
		}
		typ, dec, err := r.read(conn)
		if err == nil && typ == frameGoAway {
			return fmt.Errorf("handoff to %s: %w", addr, cluster.ErrLeft)
		}
		var ack peerHandoffAck
		if err == nil && (typ != frameHandoffAck || ack.decode(dec) != nil || ack.id != id) {
			err = errMalformed
		}
		if err != nil {
			return fmt.Errorf("handoff to %s: %w", addr, err)
		}
		entries = entries[n:]
	}
	return nil
}

// Forget drops the peer at addr (a member that left): its connection is
// closed, what is in flight to it fails, and its goroutine ends. A later
// call to addr starts afresh.
func (c *PeerClient) Forget(addr string) {
	c.mu.Lock()
	pc, ok := c.peers[addr]
	delete(c.peers, addr)
	c.mu.Unlock()
	if ok {
		close(pc.gone)
		pc.disconnect(nil, closedLeft, fmt.Errorf("%w: %s forgotten", ErrPeerUnavailable, addr))
	}
}

// Close closes every connection, fails every call in flight, and returns
// when the client's goroutines have finished.
func (c *PeerClient) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.stop)
	peers := c.peers
	c.mu.Unlock()
	for _, pc := range peers {
		pc.disconnect(nil, "", fmt.Errorf("%w: client closed", ErrPeerUnavailable))
	}
	c.wg.Wait()
}
