package transport

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Bounding accepted peer connections. The dial side's cap bounds what a
// node opens, not what it is sent: the owner of a key that every node
// checks accepts a connection from each of them, up to N − 1 across a
// fleet. Two rules keep that down (docs/design/ownership.md):
//
//   - Above MaxAccepted open accepted connections, the least recently
//     active idle one is closed: a connection that has answered a check
//     batch, carries no handoff, and has no frame being decided or
//     answered. Busy ones are never closed, so the bound is soft, as the
//     dial side's is: the excess is closed as connections fall idle (each
//     answered frame looks again), never mid-frame.
//   - One silent for IdleTimeout is closed (peer_server.go).
//
// Either way the server asks the client to close it (peer_goaway.go), so
// that no check sent as it closes is lost.

// DefaultPeerMaxAccepted is PeerServerConfig.MaxAccepted's default: four
// times the dial side's cap. Every accepted connection is some node's
// dialled one, so a node accepts DefaultPeerMaxConns on average; four
// times that leaves owners of hot keys room before connections churn.
const DefaultPeerMaxAccepted = 4 * DefaultPeerMaxConns

// What an accepted connection has carried; only one that has carried
// check batches alone is closed for MaxAccepted. A handoff has its own
// connection, which its sender closes when done.
const (
	carriedNothing int32 = iota
	carriedChecks
	carriedHandoff
)

// accepted is one connection accepted from a peer.
type accepted struct {
	conn       net.Conn
	lastActive atomic.Int64 // when its last frame was answered, in Unix nanoseconds
	carried    atomic.Int32 // carriedNothing, carriedChecks, carriedHandoff
	busy       atomic.Bool  // a frame is being decided or answered
	shed       atomic.Bool  // chosen to be closed for MaxAccepted
}

// errShed is the read not made on a connection marked to be closed for
// MaxAccepted.
var errShed = errors.New("transport: connection closed for the accepted bound")

// read reads the next frame from a's connection, unless a is marked to be
// closed. makeRoom marks it before it moves the read deadline into the
// past, so a mark made as serveConn pushed the deadline forward, undoing
// the wake-up, is seen here.
func (a *accepted) read(r *frameReader) (byte, *msgpack.Decoder, error) {
	if a.shed.Load() {
		return 0, nil, errShed
	}
	return r.read(a.conn)
}

// track adds conn to the accepted connections and returns it, or nil if
// the server has stopped (the caller closes conn).
func (s *PeerServer) track(conn net.Conn) *accepted {
	a := &accepted{conn: conn}
	a.lastActive.Store(time.Now().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.conns[a] = struct{}{}
	s.open.Add(1)
	return a
}

// untrack removes a, closed, from the accepted connections, counted for
// reason if not empty.
func (s *PeerServer) untrack(a *accepted, reason string) {
	s.mu.Lock()
	delete(s.conns, a)
	s.open.Add(-1)
	if a.shed.Load() {
		s.shedding--
	}
	s.mu.Unlock()
	if reason != "" {
		s.closes.WithLabelValues(reason).Inc()
	}
}

// closeAll closes every accepted connection, and any accepted later.
func (s *PeerServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for a := range s.conns {
		a.conn.Close()
	}
}

// makeRoom marks to be closed, least recently active first, idle
// connections that have carried checks until at most MaxAccepted are open
// besides those already marked, or none is left to mark; it wakes each
// from its read, and its goroutine asks the peer to close it.
func (s *PeerServer) makeRoom() {
	if s.cfg.MaxAccepted <= 0 || s.open.Load() <= int64(s.cfg.MaxAccepted) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.conns)-s.shedding > s.cfg.MaxAccepted {
		var lru *accepted
		for a := range s.conns {
			if a.carried.Load() != carriedChecks || a.busy.Load() || a.shed.Load() {
				continue
			}
			if lru == nil || a.lastActive.Load() < lru.lastActive.Load() {
				lru = a
			}
		}
		if lru == nil {
			return
		}
		lru.shed.Store(true) // before the deadline (accepted.read)
		s.shedding++
		lru.conn.SetReadDeadline(time.Unix(1, 0))
	}
}
