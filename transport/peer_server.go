package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// PeerHandler decides checks forwarded to this node as their keys' owner:
// a *cluster.Node.
type PeerHandler interface {
	// DecideForwarded decides checks in order. ctx holds the span context
	// the sender sent them under, if any (it ends nothing). It must not
	// block on the network. An error (the node left) closes the
	// connection: the sender decides from its fair share.
	DecideForwarded(ctx context.Context, checks []cluster.PeerCheck) ([]bucket.Decision, error)
	// AcceptHandoff takes in buckets of mode whose owner this node has
	// become (or, for a cluster that shrank into gossip mode, that it keeps
	// a replica of). It must not block on the network. An error closes the
	// connection unacknowledged.
	AcceptHandoff(mode rules.Sync, entries []bucket.Entry) error
}

// PeerServerConfig configures a PeerServer.
type PeerServerConfig struct {
	// Handler decides forwarded checks. Required.
	Handler PeerHandler
	// Keys returns the cluster keys a peer must prove it holds; none means
	// no proof is asked (unencrypted clusters). It must not block.
	Keys func() [][]byte
	// IdleTimeout is how long a peer connection may carry no frame before
	// this side closes it. Clients close their idle connections first
	// (PeerClientConfig.IdleTimeout); this catches those that never do,
	// such as a peer whose process hangs. Give it at least twice the
	// clients' timeout, so that it never closes a connection a client is
	// about to use. If zero, defaults to 2 × DefaultPeerIdleTimeout;
	// negative: never.
	IdleTimeout time.Duration
	// MaxAccepted bounds the accepted connections open: above it, the
	// least recently active idle one that has carried checks is closed
	// (peer_accept.go). Busy ones are not, so the bound is passed while
	// more are busy. If zero, defaults to DefaultPeerMaxAccepted (256);
	// negative: no bound.
	MaxAccepted int
	// Logger receives connection errors. If nil, discarded.
	Logger *slog.Logger
	// Registerer receives the peer server's metrics. If nil, not registered.
	Registerer prometheus.Registerer
}

// PeerServer answers forwarded checks on peer connections, and closes the
// accepted connections that stay silent or are over its bound, asking
// their clients first (peer_goaway.go). It is safe for concurrent use.
type PeerServer struct {
	cfg      PeerServerConfig
	rejected *prometheus.CounterVec
	frames   prometheus.Counter
	checks   prometheus.Counter
	closes   *prometheus.CounterVec // by reason; shared with the node's PeerClient
	open     atomic.Int64           // accepted connections open: len(conns)
	gauge    prometheus.GaugeFunc   // open, exported

	mu       sync.Mutex // guards the fields below
	conns    map[*accepted]struct{}
	shedding int  // conns marked to be closed for MaxAccepted, not yet closed
	stopped  bool // Serve's context ended: new connections are closed
}

// NewPeerServer returns a PeerServer for cfg.
func NewPeerServer(cfg PeerServerConfig) *PeerServer {
	if cfg.Keys == nil {
		cfg.Keys = func() [][]byte { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 2 * DefaultPeerIdleTimeout
	}
	if cfg.MaxAccepted == 0 {
		cfg.MaxAccepted = DefaultPeerMaxAccepted
	}
	s := &PeerServer{
		cfg:    cfg,
		conns:  map[*accepted]struct{}{},
		closes: peerCloses(cfg.Registerer),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_peer_rejected_total",
			Help: "Peer connections or frames rejected, by reason: auth (no cluster key proven), malformed (frame dropped, connection closed).",
		}, []string{"reason"}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_peer_served_frames_total",
			Help: "Batches of forwarded checks answered as owner.",
		}),
		checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_peer_served_checks_total",
			Help: "Forwarded checks answered as owner.",
		}),
	}
	s.gauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_peer_accepted_connections",
		Help: "Connections accepted from peers and open, on which they forward checks to this node as owner.",
	}, func() float64 { return float64(s.open.Load()) })
	for _, r := range []string{"auth", "malformed"} {
		s.rejected.WithLabelValues(r) // at zero from start
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.rejected, s.frames, s.checks, s.gauge)
	}
	return s
}

// Serve accepts peer connections on ln until ctx ends; then it closes ln
// and every connection and returns when their goroutines have finished.
func (s *PeerServer) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.closeAll()
	})
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { s.serveConn(conn) })
	}
}

// serveConn authenticates a peer and answers its batches in order until
// the connection fails or a frame is malformed, or it is closed as idle
// or for MaxAccepted.
func (s *PeerServer) serveConn(conn net.Conn) {
	a := s.track(conn)
	if a == nil {
		conn.Close()
		return
	}
	reason := ""
	defer func() {
		conn.Close()
		s.untrack(a, reason)
	}()
	if err := serverHandshake(conn, s.cfg.Keys()); err != nil {
		if errors.Is(err, ErrPeerAuth) {
			s.rejected.WithLabelValues("auth").Inc()
			s.cfg.Logger.Warn("peer failed authentication", "remote", conn.RemoteAddr().String())
		}
		return
	}
	s.makeRoom()
	r, w := newFrameReader(), newFrameWriter()
	var batch peerBatch
	var handoff peerHandoff
	var renewAt time.Time
	var last uint64 // the last batch answered
	for {
		renewAt = s.renewIdleDeadline(conn, renewAt)
		typ, dec, err := a.read(r)
		if err != nil {
			switch {
			case a.shed.Load():
				reason = closedAcceptedEvicted
				s.goAway(conn, w, last)
			case errors.Is(err, os.ErrDeadlineExceeded):
				reason = closedAcceptedIdle
				s.goAway(conn, w, last)
			case errors.Is(err, errMalformed):
				s.rejected.WithLabelValues("malformed").Inc()
			}
			return
		}
		a.busy.Store(true)
		switch {
		case typ == frameCheckBatch && batch.decode(dec) == nil:
			var decisions []bucket.Decision
			if decisions, err = decideTraced(s.cfg.Handler, batch.checks, batch.traces); err != nil {
				return
			}
			s.frames.Inc()
			s.checks.Add(float64(len(batch.checks)))
			err = w.write(conn, frameCheckBatchResult, &peerBatchResult{id: batch.id, decisions: decisions})
			last = batch.id
			a.carried.CompareAndSwap(carriedNothing, carriedChecks)
		case typ == frameHandoff && handoff.decode(dec) == nil:
			a.carried.Store(carriedHandoff)
			if err = s.cfg.Handler.AcceptHandoff(handoff.sync, handoff.entries); err != nil {
				if errors.Is(err, cluster.ErrLeft) {
					// Leaving too: the sender hands them to the next
					// owner. A goaway says so (an older sender takes it
					// for a broken connection: the same, less clearly).
					s.goAway(conn, w, last)
				}
				return
			}
			err = w.write(conn, frameHandoffAck, &peerHandoffAck{id: handoff.id})
		default:
			s.rejected.WithLabelValues("malformed").Inc()
			s.cfg.Logger.Warn("malformed peer frame; closing the connection", "remote", conn.RemoteAddr().String(), "type", typ)
			return
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				reason = closedAcceptedIdle // the peer read no answer for IdleTimeout
			}
			return
		}
		a.lastActive.Store(time.Now().UnixNano())
		a.busy.Store(false)
		s.makeRoom() // over MaxAccepted while this one was busy, perhaps
	}
}

// renewIdleDeadline pushes conn's read and write deadlines IdleTimeout past now,
// unless it was pushed within the last eighth of IdleTimeout (renewAt),
// which spares a timer update per frame; so a silent connection is closed
// between 7/8 of IdleTimeout and IdleTimeout after its last frame. It
// returns when to renew next.
func (s *PeerServer) renewIdleDeadline(conn net.Conn, renewAt time.Time) time.Time {
	if s.cfg.IdleTimeout < 0 {
		return renewAt
	}
	now := time.Now()
	if now.Before(renewAt) {
		return renewAt
	}
	// The write deadline too: a peer that stops reading (a hung process)
	// would otherwise hold an answer's write, and its connection, open
	// for good, past IdleTimeout and MaxAccepted alike.
	conn.SetDeadline(now.Add(s.cfg.IdleTimeout))
	return now.Add(s.cfg.IdleTimeout / 8)
}
