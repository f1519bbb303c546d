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

	"github.com/sluicerl/sluice/bucket"
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
	// Logger receives connection errors. If nil, discarded.
	Logger *slog.Logger
	// Registerer receives the client's metrics. If nil, not registered.
	Registerer prometheus.Registerer
}

// PeerClient sends checks to their owners over one persistent connection
// per peer. Concurrent calls to one peer are coalesced: while a frame is
// being written, later calls queue, and the next frame carries all of them
// (up to MaxBatch checks). It is safe for concurrent use.
type PeerClient struct {
	cfg     PeerClientConfig
	stop    chan struct{}
	wg      sync.WaitGroup
	batches prometheus.Histogram
	dials   *prometheus.CounterVec

	mu     sync.Mutex // guards peers and closed
	peers  map[string]*peerConn
	closed bool
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
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.batches, c.dials)
	}
	return c
}

// call is one Check waiting for its decisions.
type call struct {
	checks []PeerCheck
	done   chan callResult // buffered: the answer never blocks
}

type callResult struct {
	decisions []bucket.Decision
	err       error
}

// Check sends checks to the peer at addr and returns its decisions, in
// order. It returns ctx's error if ctx ends first, ErrPeerOverloaded if
// too much is in flight to that peer, and an error wrapping
// ErrPeerUnavailable if the peer cannot be reached.
func (c *PeerClient) Check(ctx context.Context, addr string, checks []PeerCheck) ([]bucket.Decision, error) {
	if len(checks) == 0 || len(checks) > MaxBatch {
		return nil, fmt.Errorf("transport: %d checks in one call (1 to %d)", len(checks), MaxBatch)
	}
	pc, err := c.peer(addr)
	if err != nil {
		return nil, err
	}
	if pc.inflight.Add(int64(len(checks))) > int64(c.cfg.MaxInFlight) {
		pc.inflight.Add(-int64(len(checks)))
		return nil, ErrPeerOverloaded
	}
	cl := &call{checks: checks, done: make(chan callResult, 1)}
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

func (c *PeerClient) peer(addr string) (*peerConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: client closed", ErrPeerUnavailable)
	}
	pc, ok := c.peers[addr]
	if !ok {
		pc = &peerConn{c: c, addr: addr, queue: make(chan *call, c.cfg.MaxInFlight), pending: map[uint64][]*call{}, gone: make(chan struct{})}
		c.peers[addr] = pc
		c.wg.Go(pc.run)
	}
	return pc, nil
}

// Handoff sends buckets to their new owner at addr, in frames of at most
// MaxBatch, on a connection of its own (handoffs are rare and may be
// large), and returns when the owner has merged them all. sync is the mode
// the buckets belong to.
func (c *PeerClient) Handoff(ctx context.Context, addr string, sync rules.Sync, entries []bucket.Entry) error {
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
		if err := w.write(conn, frameHandoff, &peerHandoff{id: id, sync: sync, entries: entries[:n]}); err != nil {
			return fmt.Errorf("handoff to %s: %w", addr, err)
		}
		typ, dec, err := r.read(conn)
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
		pc.disconnect(nil, fmt.Errorf("%w: %s forgotten", ErrPeerUnavailable, addr))
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
		pc.disconnect(nil, fmt.Errorf("%w: client closed", ErrPeerUnavailable))
	}
	c.wg.Wait()
}

// dialTimeout bounds connecting to a peer and authenticating. Calls queue
// behind a dial, so it is short: a peer that cannot connect in a second is
// treated as unavailable (and retried after RetryAfter).
const dialTimeout = time.Second

// peerConn is the connection to one peer and the calls in flight on it.
type peerConn struct {
	c        *PeerClient
	addr     string
	queue    chan *call
	gone     chan struct{} // closed by Forget
	inflight atomic.Int64  // checks queued or pending

	mu       sync.Mutex // guards the fields below
	conn     net.Conn   // nil when not connected
	pending  map[uint64][]*call
	nextID   uint64
	failedAt time.Time
}

// run writes queued calls to the peer, coalescing what has queued up
// meanwhile into one frame, until the client closes.
func (pc *peerConn) run() {
	w := newFrameWriter()
	for {
		var first *call
		select {
		case <-pc.c.stop:
			pc.failQueued()
			return
		case <-pc.gone:
			pc.failQueued()
			return
		case first = <-pc.queue:
		}
		calls := []*call{first}
		n := len(first.checks)
	drain:
		for n < MaxBatch {
			select {
			case cl := <-pc.queue:
				if n+len(cl.checks) > MaxBatch {
					pc.send(w, calls)
					calls, n = nil, 0
				}
				calls = append(calls, cl)
				n += len(cl.checks)
			default:
				break drain
			}
		}
		pc.send(w, calls)
	}
}

// send writes calls as one frame, connecting first if needed.
func (pc *peerConn) send(w *frameWriter, calls []*call) {
	conn, err := pc.connected()
	if err != nil {
		pc.finish(calls, callResult{err: err})
		return
	}
	batch := peerBatch{}
	for _, cl := range calls {
		batch.checks = append(batch.checks, cl.checks...)
	}
	pc.mu.Lock()
	if pc.conn != conn { // broken meanwhile
		pc.mu.Unlock()
		pc.finish(calls, callResult{err: fmt.Errorf("%w: connection to %s lost", ErrPeerUnavailable, pc.addr)})
		return
	}
	pc.nextID++
	batch.id = pc.nextID
	pc.pending[batch.id] = calls
	pc.mu.Unlock()
	pc.c.batches.Observe(float64(len(batch.checks)))
	if err := w.write(conn, frameCheckBatch, &batch); err != nil {
		pc.disconnect(conn, fmt.Errorf("%w: write to %s: %v", ErrPeerUnavailable, pc.addr, err))
	}
}

// connected returns the open connection, dialling and authenticating one
// if there is none, unless a dial failed within RetryAfter.
func (pc *peerConn) connected() (net.Conn, error) {
	pc.mu.Lock()
	conn, failedAt := pc.conn, pc.failedAt
	pc.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	if !failedAt.IsZero() && time.Since(failedAt) < pc.c.cfg.RetryAfter {
		return nil, fmt.Errorf("%w: %s failed %v ago", ErrPeerUnavailable, pc.addr, time.Since(failedAt).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	conn, err := pc.c.cfg.Dial(ctx, pc.addr)
	if err == nil {
		conn.SetDeadline(time.Now().Add(dialTimeout))
		if err = clientHandshake(conn, pc.c.cfg.Keys()); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		pc.c.dials.WithLabelValues("error").Inc()
		pc.mu.Lock()
		pc.failedAt = time.Now()
		pc.mu.Unlock()
		pc.c.cfg.Logger.Debug("peer dial failed", "peer", pc.addr, "err", err)
		return nil, fmt.Errorf("%w: %s: %v", ErrPeerUnavailable, pc.addr, err)
	}
	pc.c.dials.WithLabelValues("ok").Inc()
	pc.mu.Lock()
	pc.conn, pc.failedAt = conn, time.Time{}
	pc.mu.Unlock()
	pc.c.wg.Go(func() { pc.read(conn) })
	return conn, nil
}

// read delivers the peer's answers to their calls until the connection
// fails.
func (pc *peerConn) read(conn net.Conn) {
	r := newFrameReader()
	var res peerBatchResult
	for {
		typ, dec, err := r.read(conn)
		if err == nil && (typ != frameCheckBatchResult || res.decode(dec) != nil) {
			err = errMalformed
		}
		if err != nil {
			pc.disconnect(conn, fmt.Errorf("%w: read from %s: %v", ErrPeerUnavailable, pc.addr, err))
			return
		}
		pc.mu.Lock()
		calls, ok := pc.pending[res.id]
		delete(pc.pending, res.id)
		pc.mu.Unlock()
		if !ok {
			continue // an answer for a batch already failed
		}
		total := 0
		for _, cl := range calls {
			total += len(cl.checks)
		}
		if total != len(res.decisions) {
			pc.finish(calls, callResult{err: fmt.Errorf("%w: %s answered %d of %d checks", ErrPeerUnavailable, pc.addr, len(res.decisions), total)})
			continue
		}
		off := 0
		for _, cl := range calls {
			n := len(cl.checks)
			pc.finish([]*call{cl}, callResult{decisions: res.decisions[off : off+n : off+n]})
			off += n
		}
	}
}

// disconnect closes conn (the current connection if nil) and fails every
// call pending on it with err.
func (pc *peerConn) disconnect(conn net.Conn, err error) {
	pc.mu.Lock()
	if conn == nil {
		conn = pc.conn
	}
	if conn == nil || pc.conn != conn {
		pc.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		return
	}
	pc.conn = nil
	pending := pc.pending
	pc.pending = map[uint64][]*call{}
	pc.mu.Unlock()
	conn.Close()
	for _, calls := range pending {
		pc.finish(calls, callResult{err: err})
	}
}

func (pc *peerConn) finish(calls []*call, r callResult) {
	for _, cl := range calls {
		pc.inflight.Add(-int64(len(cl.checks)))
		cl.done <- r
	}
}

func (pc *peerConn) failQueued() {
	for {
		select {
		case cl := <-pc.queue:
			pc.finish([]*call{cl}, callResult{err: fmt.Errorf("%w: client closed", ErrPeerUnavailable)})
		default:
			return
		}
	}
}
