// Package cluster is sluice's request path. A check arrives from transport;
// Node resolves its rule (by name, by descriptors, or inline) and its sync
// mode, decides it on the bucket store, and answers with the decision.
// On a single node every sync mode decides locally. Node is the only
// component that reads the clock: it passes now to the pure bucket math,
// and its periodic work (sweeping refilled buckets) runs under Run.
package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// Config configures a Node. Zero fields mean defaults.
type Config struct {
	// Store configures the bucket store (its bound on keys, its shards).
	Store bucket.StoreConfig
	// Now is the clock. If nil, a monotonic clock: wall time at start plus
	// monotonic time since, so a wall-clock step neither mints tokens nor
	// freezes buckets.
	Now func() time.Time
	// SweepInterval is how often buckets that have refilled completely are
	// dropped from the store. If zero, defaults to 10s.
	SweepInterval time.Duration
	// Metrics receives the node's metrics. If nil, they are not registered.
	Metrics Registerer
	// Logger receives the node's logs. If nil, they are discarded.
	Logger *slog.Logger
	// Gossip makes the node a cluster member. If nil, the node stands
	// alone and joins no cluster.
	Gossip *gossip.Config
	// Peer is how a cluster member exchanges checks with key owners.
	// Required with Gossip; its address goes in Gossip.Meta.PeerAddr.
	Peer PeerConfig
}

// PeerConfig configures a node's peer connections. Zero fields mean
// defaults.
type PeerConfig struct {
	// Listener accepts checks forwarded by peers. Run serves it and closes
	// it when it returns.
	Listener net.Listener
	// Dial connects to a peer. If nil, TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// ForwardTimeout bounds a check forwarded to its owner; past it the
	// node decides from its fair share. If zero, defaults to 250ms.
	ForwardTimeout time.Duration
	// Ring configures the hash ring; every node must use the same.
	Ring ring.Config
}

// Node decides checks. It is safe for concurrent use; its zero value is
// not usable: make one with New.
type Node struct {
	now     func() time.Time
	store   *bucket.Store
	rules   atomic.Pointer[rules.Set]
	metrics *metrics
	sweep   time.Duration
	log     *slog.Logger
	gossip  *gossip.Gossip // nil when standalone

	// Owner mode. owned holds the buckets this node decides for the
	// cluster as their owner; store holds local and fallback buckets.
	owned          *bucket.Store
	topo           atomic.Pointer[topology]
	changed        chan struct{} // membership changed; buffered 1
	peers          *transport.PeerClient
	peerServer     *transport.PeerServer
	peerLn         net.Listener
	forwardTimeout time.Duration
	ringCfg        ring.Config
}

// New returns a Node with no rules loaded (not ready until SetRules). If
// the node is a cluster member, its gossip listener is open when New
// returns; Run joins the cluster.
func New(cfg Config) (*Node, error) {
	if cfg.Now == nil {
		start := time.Now()
		cfg.Now = func() time.Time { return start.Add(time.Since(start)) }
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Peer.ForwardTimeout <= 0 {
		cfg.Peer.ForwardTimeout = 250 * time.Millisecond
	}
	n := &Node{
		now:            cfg.Now,
		store:          bucket.NewStore(cfg.Store),
		owned:          bucket.NewStore(cfg.Store),
		sweep:          cfg.SweepInterval,
		log:            cfg.Logger,
		changed:        make(chan struct{}, 1),
		peerLn:         cfg.Peer.Listener,
		forwardTimeout: cfg.Peer.ForwardTimeout,
		ringCfg:        cfg.Peer.Ring,
	}
	n.metrics = newMetrics(cfg.Metrics, n.store, n.owned)
	self := ""
	if cfg.Gossip != nil {
		self = cfg.Gossip.Name
	}
	topo, err := buildTopology(self, nil, n.ringCfg)
	if err != nil {
		return nil, err
	}
	n.topo.Store(topo)
	if cfg.Gossip == nil {
		return n, nil
	}
	gc := *cfg.Gossip
	if gc.Registerer == nil {
		gc.Registerer = cfg.Metrics
	}
	if gc.Logger == nil {
		gc.Logger = cfg.Logger
	}
	gc.OnChange = n.membershipChanged
	if n.gossip, err = gossip.New(gc); err != nil {
		return nil, err
	}
	keys := func() [][]byte {
		k, _ := n.gossip.Keys() // none when gossip is unencrypted
		return k
	}
	n.peers = transport.NewPeerClient(transport.PeerClientConfig{Dial: cfg.Peer.Dial, Keys: keys, Logger: cfg.Logger, Registerer: cfg.Metrics})
	n.peerServer = transport.NewPeerServer(transport.PeerServerConfig{Handler: n, Keys: keys, Logger: cfg.Logger, Registerer: cfg.Metrics})
	return n, nil
}

// membershipChanged is gossip's OnChange: it must not block, so it only
// flags the change for the topology loop.
func (n *Node) membershipChanged() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// topologyLoop rebuilds the ring when membership changes, off every lock,
// and publishes it.
func (n *Node) topologyLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.changed:
		}
		topo, err := buildTopology(n.gossip.Name(), n.gossip.Members(), n.ringCfg)
		if err != nil {
			n.log.Error("ring not rebuilt; keeping the previous one", "err", err)
			continue
		}
		old := n.topo.Swap(topo)
		n.metrics.ringMembers.Set(float64(topo.ring.Len()))
		for name, addr := range old.addrs {
			if topo.addrs[name] != addr {
				n.peers.Forget(addr) // gone, or moved to another address
			}
		}
		n.handOff(ctx, topo) // a joiner may own some of our keys now
	}
}

// SetRules puts a rule set in force. Buckets of named rules keep their state
// across changes to the rule's limit (tokens are clamped to a lower burst).
func (n *Node) SetRules(s *rules.Set) {
	n.rules.Store(s)
	n.metrics.rulesLoaded.Set(float64(s.Len()))
}

// Rules returns the rule set in force, or nil before the first SetRules.
func (n *Node) Rules() *rules.Set { return n.rules.Load() }

// Ready reports whether the node has rules loaded and so serves checks.
func (n *Node) Ready() bool { return n.rules.Load() != nil }

// ErrNotReady is returned for checks that arrive before any rules are loaded.
var ErrNotReady = errors.New("cluster: node not ready: no rules loaded")

// resolved is a check with its rule resolved.
type resolved struct {
	id     bucket.ID
	limit  bucket.Limit
	cost   int64
	sync   rules.Sync
	counts *ruleCounters
}

// resolve finds the rule and bucket for req. Its errors are
// *rules.FieldError for bad input.
func (n *Node) resolve(req *transport.CheckRequest) (resolved, error) {
	set := n.rules.Load()
	if set == nil {
		return resolved{}, ErrNotReady
	}
	var r resolved
	switch {
	case req.Rule != "":
		rule, err := set.Get(req.Rule)
		if err != nil {
			return r, err
		}
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: req.Key}, limit: rule.Limit, sync: rule.Sync}
	case req.Descriptors != nil:
		rule, key, err := set.Match(req.Descriptors)
		if err != nil {
			return r, err
		}
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: key}, limit: rule.Limit, sync: rule.Sync}
	default:
		r = resolved{id: bucket.ID{Inline: req.Inline, Key: req.Key}, limit: req.Inline}
	}
	if req.SyncSet {
		r.sync = req.Sync
	}
	r.cost = req.Cost
	r.counts = n.metrics.forRule(r.id.Rule, r.sync)
	return r, nil
}

func (r *resolved) result(d bucket.Decision) transport.CheckResult {
	return transport.CheckResult{Decision: d, Rule: r.id.Rule, Policy: r.limit, Sync: r.sync}
}

// ownerMode reports whether r is decided by its key's owner.
func (r *resolved) ownerMode() bool { return r.sync == rules.SyncOwner }

// decide runs a resolved check: on the key's owner in owner mode, else on
// this node's store.
func (n *Node) decide(ctx context.Context, r *resolved) (transport.CheckResult, error) {
	if r.ownerMode() {
		return n.decideOwner(ctx, r)
	}
	d := n.store.AllowN(n.now(), r.id, r.limit, r.cost)
	r.counts.observe(&d, r.limit)
	return r.result(d), nil
}

// Check decides one check.
func (n *Node) Check(ctx context.Context, req *transport.CheckRequest) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	return n.decide(ctx, &r)
}

// CheckBatch resolves every check before deciding any, so a bad check
// anywhere in the batch changes no state.
func (n *Node) CheckBatch(ctx context.Context, reqs []transport.CheckRequest) ([]transport.CheckResult, error) {
	rs := make([]resolved, len(reqs))
	for i := range reqs {
		var err error
		if rs[i], err = n.resolve(&reqs[i]); err != nil {
			return nil, rules.PrefixField(err, "checks["+strconv.Itoa(i)+"].")
		}
	}
	out := make([]transport.CheckResult, len(rs))
	var owned []int
	for i := range rs {
		if rs[i].ownerMode() {
			owned = append(owned, i)
			continue
		}
		out[i], _ = n.decide(ctx, &rs[i]) // local decisions do not fail
	}
	if len(owned) > 0 {
		if err := n.decideOwnerBatch(ctx, rs, owned, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Wait reserves the check's tokens and holds the call until they are due.
// Reservations on one bucket are granted in arrival order: each waits
// behind the tokens reserved before it. If the tokens cannot be granted
// within maxWait it answers at once with a denial and spends nothing. If
// ctx ends first the reserved tokens are given back and ctx's error
// returned.
func (n *Node) Wait(ctx context.Context, req *transport.CheckRequest, maxWait time.Duration) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	if r.ownerMode() && n.topo.Load().ring.Len() > 1 {
		return transport.CheckResult{}, &rules.FieldError{Field: "sync", Msg: "owner mode does not support /v1/wait yet in a cluster; use sync local"}
	}
	d := n.store.ReserveN(n.now(), r.id, r.limit, r.cost, maxWait)
	r.counts.observe(&d, r.limit)
	res := r.result(d)
	if !d.Allowed || d.Wait == 0 {
		return res, nil
	}
	timer := time.NewTimer(d.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		res.Waited = d.Wait
		return res, nil
	case <-ctx.Done():
		n.store.RefundN(n.now(), r.id, r.limit, r.cost)
		n.metrics.waitsAbandoned.Inc()
		return transport.CheckResult{}, ctx.Err()
	}
}

// Run keeps the node in its cluster and does its periodic work until ctx
// ends. Then it leaves gracefully: it hands the buckets it owns to their
// next owners, stops answering peers (a check forwarded to it now would
// find no bucket; its sender decides from its fair share instead), and
// tells the cluster it is leaving, in that order, and returns. Checks are answered before, during and after
// Run: a node that has left decides alone.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.sweepLoop(gctx) })
	if n.gossip == nil {
		return g.Wait()
	}
	// Membership and peer service outlive ctx until the handoff is done.
	memberCtx, leave := context.WithCancel(context.Background())
	defer leave()
	gossipDone := make(chan struct{})
	g.Go(func() error {
		defer close(gossipDone)
		return n.gossip.Run(memberCtx)
	})
	g.Go(func() error { return n.topologyLoop(gctx) })
	peerCtx, stopPeers := context.WithCancel(context.Background())
	defer stopPeers()
	if n.peerLn != nil {
		g.Go(func() error { return n.peerServer.Serve(peerCtx, n.peerLn) })
	}
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil { // a graceful stop, not a failure
			n.handOffAll(context.Background())
		}
		stopPeers()
		leave()
		<-gossipDone
		return nil
	})
	err := g.Wait()
	n.peers.Close()
	return err
}

// sweepLoop drops buckets that have refilled completely, which changes no
// decision and frees memory.
func (n *Node) sweepLoop(ctx context.Context) error {
	t := time.NewTicker(n.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := n.now()
			dropped := n.store.Sweep(now) + n.owned.Sweep(now)
			n.metrics.swept.Add(float64(dropped))
		}
	}
}
