package transport

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounding peer connections. Keys spread evenly over owners would
// otherwise leave every node connected to every other: N² connections
// across a fleet, each with two goroutines, a read buffer and a queue.
// Two rules keep a node's share small (docs/design/ownership.md):
//
//   - A peer with nothing in flight whose last frame was sent IdleTimeout
//     ago is dropped whole: its connection is closed, its goroutines end
//     and its queue is freed. A tick every IdleTimeout/4 looks.
//   - Before a dial, if MaxConns connections are open, the least recently
//     used peer with nothing in flight is dropped the same way. If every
//     open connection is busy, the dial goes ahead (no check waits for a
//     connection, none fails for the bound) and the excess is dropped as
//     soon as an answer arrives and an idle one can be found.
//
// A peer is dropped only under c.mu, with nothing in flight, and removed
// from c.peers at once; since checks are counted in flight under c.mu
// (PeerClient.peer), no check is ever sent on a connection being closed.

// DefaultPeerIdleTimeout is PeerClientConfig.IdleTimeout's default.
const DefaultPeerIdleTimeout = 60 * time.Second

// DefaultPeerMaxConns is PeerClientConfig.MaxConns's default.
const DefaultPeerMaxConns = 64

// The reasons of sluice_peer_connections_closed_total: for connections
// this node dialled, then for those it accepted (peer_accept.go).
const (
	closedIdle    = "idle"
	closedEvicted = "evicted"
	closedError   = "error"
	closedLeft    = "left"
	closedGoAway  = "goaway"

	closedAcceptedIdle    = "accepted_idle"
	closedAcceptedEvicted = "accepted_evicted"
)

// peerCloses returns sluice_peer_connections_closed_total with every
// reason at zero, registered with reg if not nil. A node's client and
// server count in the same metric: the second to register it gets the
// first's.
func peerCloses(reg prometheus.Registerer) *prometheus.CounterVec {
	closes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_peer_connections_closed_total",
		Help: "Peer connections closed, by reason. Dialled by this node: idle (unused for --peer-idle-timeout), evicted (the least recently used, for --peer-max-conns), error (broken), left (the member left), goaway (the owner asked: it was over its --peer-max-accepted, or the connection was silent past its timeout). Accepted by this node, closed by it: accepted_idle (silent for twice --peer-idle-timeout), accepted_evicted (the least recently active idle one, for --peer-max-accepted).",
	}, []string{"reason"})
	for _, r := range []string{closedIdle, closedEvicted, closedError, closedLeft, closedGoAway, closedAcceptedIdle, closedAcceptedEvicted} {
		closes.WithLabelValues(r)
	}
	if reg == nil {
		return closes
	}
	if err := reg.Register(closes); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			panic(err) // as MustRegister: a programmer error
		}
		return already.ExistingCollector.(*prometheus.CounterVec)
	}
	return closes
}

// minReapTick is the shortest interval between two looks for idle peers,
// whatever IdleTimeout: a tick of IdleTimeout/4 would be 0 (a panic in
// time.NewTicker) under 4ns, and spin the reaper under a few µs.
const minReapTick = time.Millisecond

// reapIdle drops idle peers every IdleTimeout/4, or minReapTick if that
// is longer, until the client closes.
func (c *PeerClient) reapIdle() {
	t := time.NewTicker(max(c.cfg.IdleTimeout/4, minReapTick))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.reap(now)
		}
	}
}

// reap drops every peer idle at now: nothing in flight, and no frame sent
// for IdleTimeout. A peer whose last use is after now (the clock went
// back) is not idle.
func (c *PeerClient) reap(now time.Time) {
	cutoff := now.Add(-c.cfg.IdleTimeout).UnixNano()
	var idle []*peerConn
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for addr, pc := range c.peers {
		if pc.inflight.Load() == 0 && pc.lastUsed.Load() <= cutoff {
			delete(c.peers, addr)
			idle = append(idle, pc)
		}
	}
	c.mu.Unlock()
	for _, pc := range idle {
		pc.drop(closedIdle)
	}
}

// overCap reports whether more than MaxConns connections are open.
func (c *PeerClient) overCap() bool {
	return c.cfg.MaxConns > 0 && c.open.Load() > int64(c.cfg.MaxConns)
}

// makeRoom drops the least recently used idle peers until at most
// MaxConns − extra connections are open, or no open one is idle.
func (c *PeerClient) makeRoom(extra int) {
	if c.cfg.MaxConns <= 0 {
		return
	}
	for {
		pc := c.evict(extra)
		if pc == nil {
			return
		}
		pc.drop(closedEvicted)
		c.dropping.Add(-1)
	}
}

// evict removes from c.peers, and returns, the connected peer with nothing
// in flight that sent its last frame longest ago, if more than
// MaxConns − extra connections are open, not counting those being dropped
// (c.dropping, which it adds the peer to); nil if there is none, or no
// need. Concurrent callers therefore never drop more than the excess.
func (c *PeerClient) evict(extra int) *peerConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.open.Load()-c.dropping.Load()+int64(extra) <= int64(c.cfg.MaxConns) {
		return nil
	}
	var lru *peerConn
	for _, pc := range c.peers {
		if pc.inflight.Load() != 0 || !pc.isConnected() {
			continue
		}
		if lru == nil || pc.lastUsed.Load() < lru.lastUsed.Load() {
			lru = pc
		}
	}
	if lru != nil {
		delete(c.peers, lru.addr)
		c.dropping.Add(1)
	}
	return lru
}

// isConnected reports whether pc has a connection open.
func (pc *peerConn) isConnected() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.conn != nil
}

// drop ends pc, already removed from c.peers with nothing in flight: its
// goroutines end and its connection, if any, closes, counted for reason.
// No call is pending to be failed.
func (pc *peerConn) drop(reason string) {
	close(pc.gone)
	pc.disconnect(nil, reason, fmt.Errorf("%w: %s: connection closed (%s)", ErrPeerUnavailable, pc.addr, reason))
}
