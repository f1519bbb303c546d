package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds connecting to a peer and authenticating. Calls queue
// behind a dial, so it is short: a peer that cannot connect in a second is
// treated as unavailable (and retried after RetryAfter).
const dialTimeout = time.Second

// peerConn is the connection to one peer and the calls in flight on it.
type peerConn struct {
	c        *PeerClient
	addr     string
	queue    chan *call
	gone     chan struct{} // closed by Forget, or when dropped (peer_reap.go)
	inflight atomic.Int64  // checks queued or pending; goes up under c.mu only
	lastUsed atomic.Int64  // when a frame was last sent, in Unix nanoseconds

	mu       sync.Mutex // guards the fields below
	conn     net.Conn   // nil when not connected
	released net.Conn   // the last connection closed at the peer's request (peer_goaway.go)
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

// send writes calls as one frame, connecting first if needed. If the
// peer asks to close the connection before the frame is written, it is
// written on a new one.
func (pc *peerConn) send(w *frameWriter, calls []*call) {
	batch := peerBatch{}
	for _, cl := range calls {
		batch.checks = append(batch.checks, cl.checks...)
	}
	batch.traces = callTraces(calls, nil)
	var conn net.Conn
	for attempt := 0; ; attempt++ {
		var err error
		if conn, err = pc.connected(); err != nil {
			pc.finish(calls, callResult{err: err})
			return
		}
		pc.mu.Lock()
		if pc.conn == conn {
			break // still locked
		}
		released := pc.released == conn
		pc.mu.Unlock()
		if !released || attempt > 0 { // broken meanwhile
			pc.finish(calls, callResult{err: fmt.Errorf("%w: connection to %s lost", ErrPeerUnavailable, pc.addr)})
			return
		}
	}
	pc.nextID++
	batch.id = pc.nextID
	pc.pending[batch.id] = calls
	pc.mu.Unlock()
	pc.lastUsed.Store(time.Now().UnixNano())
	pc.c.batches.Observe(float64(len(batch.checks)))
	if err := w.write(conn, frameCheckBatch, &batch); err != nil {
		pc.disconnect(conn, closedError, fmt.Errorf("%w: write to %s: %v", ErrPeerUnavailable, pc.addr, err))
	}
}

// connected returns the open connection, dialling and authenticating one
// if there is none, unless a dial failed within RetryAfter. Before a dial
// it closes the least recently used idle connection if MaxConns are open.
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
	pc.c.makeRoom(1)
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
	if pc.ended() {
		// Forgotten or closed during the dial: the disconnect that came
		// with it found no connection, so none must be left open now.
		pc.mu.Unlock()
		conn.Close()
		return nil, fmt.Errorf("%w: %s: dropped while dialling", ErrPeerUnavailable, pc.addr)
	}
	pc.conn, pc.failedAt = conn, time.Time{}
	pc.c.open.Add(1) // under pc.mu, before a disconnect can take it off
	pc.mu.Unlock()
	pc.c.wg.Go(func() { pc.read(conn) })
	return conn, nil
}

// ended reports whether pc was forgotten or its client closed. Both close
// their channel before disconnecting pc under pc.mu, so a connection set
// under pc.mu after ended reports false is closed by that disconnect.
func (pc *peerConn) ended() bool {
	select {
	case <-pc.gone:
		return true
	case <-pc.c.stop:
		return true
	default:
		return false
	}
}

// read delivers the peer's answers to their calls until the connection
// fails.
func (pc *peerConn) read(conn net.Conn) {
	r := newFrameReader()
	var res peerBatchResult
	for {
		typ, dec, err := r.read(conn)
		if err == nil && typ == frameGoAway {
			var g peerGoAway
			if err = g.decode(dec); err == nil {
				pc.goAway(conn, g.id)
				return
			}
		}
		if err == nil && (typ != frameCheckBatchResult || res.decode(dec) != nil) {
			err = errMalformed
		}
		if err != nil {
			pc.disconnect(conn, closedError, fmt.Errorf("%w: read from %s: %v", ErrPeerUnavailable, pc.addr, err))
			return
		}
		pc.deliver(&res)
		if pc.c.overCap() { // dialled past MaxConns while all were busy
			pc.c.makeRoom(0)
		}
	}
}

// deliver hands the decisions of res to the calls of its batch.
func (pc *peerConn) deliver(res *peerBatchResult) {
	pc.mu.Lock()
	calls, ok := pc.pending[res.id]
	delete(pc.pending, res.id)
	pc.mu.Unlock()
	if !ok {
		return // an answer for a batch already failed
	}
	total := 0
	for _, cl := range calls {
		total += len(cl.checks)
	}
	if total != len(res.decisions) {
		pc.finish(calls, callResult{err: fmt.Errorf("%w: %s answered %d of %d checks", ErrPeerUnavailable, pc.addr, len(res.decisions), total)})
		return
	}
	off := 0
	for _, cl := range calls {
		n := len(cl.checks)
		pc.finish([]*call{cl}, callResult{decisions: res.decisions[off : off+n : off+n]})
		off += n
	}
}

// disconnect closes conn (the current connection if nil) and fails every
// call pending on it with err. reason, if not empty, is counted in
// sluice_peer_connections_closed_total.
func (pc *peerConn) disconnect(conn net.Conn, reason string, err error) {
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
	pc.c.open.Add(-1)
	if reason != "" {
		pc.c.closes.WithLabelValues(reason).Inc()
	}
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

// failQueued fails every call still queued on pc, which has ended (its
// peer forgotten, or the client closed). Callers may race: each call is
// taken from the queue once.
func (pc *peerConn) failQueued() {
	for {
		select {
		case cl := <-pc.queue:
			pc.finish([]*call{cl}, callResult{err: fmt.Errorf("%w: %s: client closed or peer forgotten", ErrPeerUnavailable, pc.addr)})
		default:
			return
		}
	}
}
