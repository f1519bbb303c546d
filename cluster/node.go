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
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
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
	// GossipSync configures gossip mode and the switch of auto mode.
	GossipSync GossipSyncConfig
	// Leases configures token leases for keys checked often in owner mode.
	Leases LeaseConfig
	// Shadow puts the whole node in shadow mode: every check is decided
	// and counted, and allowed.
	Shadow bool
	// Persist stores the rules set through the API, and holds those set
	// before a restart. If nil, the API refuses to change rules (changes
	// made on peers still arrive, and are kept in memory).
	Persist *rules.Persist
}

// GossipSyncConfig configures gossip mode. Zero fields mean defaults.
type GossipSyncConfig struct {
	// Interval is how often a node sends its peers the tokens it admitted
	// in gossip mode; it bounds how long peers decide without knowing.
	// If zero, defaults to 50ms.
	Interval time.Duration
	// MaxMembers is the largest cluster in which auto mode gossips; in a
	// larger one it routes each key to its owner. If zero, defaults to 8.
	MaxMembers int
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
	buckets [4]*bucket.Store // by sync mode; local also holds fallback buckets
	rules   atomic.Pointer[rules.Set]
	metrics *metrics
	sweep   time.Duration
	log     *slog.Logger
	gossip  *gossip.Gossip // nil when standalone
	self    string         // this node's name in the cluster
	// member is gossip, published for memberlist's goroutines, which may
	// call in before New has returned.
	member atomic.Pointer[gossip.Gossip]

	// Owner mode.
	topo           atomic.Pointer[topology]
	changed        chan struct{} // membership changed; buffered 1
	peers          *transport.PeerClient
	peerServer     *transport.PeerServer
	peerLn         net.Listener
	forwardTimeout time.Duration
	ringCfg        ring.Config

	leases *leases
	shadow bool
	hot    *hotKeys

	// Gossip mode.
	counters     *counters
	syncInterval time.Duration
	gossipMax    int

	// Rules: the file's, and the API's catalog; in force, their
	// combination (in rules above).
	catalog    *rules.Catalog
	persist    *rules.Persist
	rulesMu    sync.Mutex    // serialises changes to what is in force
	fileRules  *rules.Set    // nil until the first SetRules
	rulesDirty chan struct{} // peers changed the catalog: store it; buffered 1
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
	if cfg.GossipSync.Interval <= 0 {
		cfg.GossipSync.Interval = 50 * time.Millisecond
	}
	if cfg.GossipSync.MaxMembers <= 0 {
		cfg.GossipSync.MaxMembers = 8
	}
	self := ""
	if cfg.Gossip != nil {
		self = cfg.Gossip.Name
	}
	n := &Node{
		now:            cfg.Now,
		self:           self,
		sweep:          cfg.SweepInterval,
		log:            cfg.Logger,
		changed:        make(chan struct{}, 1),
		peerLn:         cfg.Peer.Listener,
		forwardTimeout: cfg.Peer.ForwardTimeout,
		ringCfg:        cfg.Peer.Ring,
		counters:       newCounters(cfg.Now().UnixNano()),
		syncInterval:   cfg.GossipSync.Interval,
		gossipMax:      cfg.GossipSync.MaxMembers,
		catalog:        rules.NewCatalog(self),
		persist:        cfg.Persist,
		rulesDirty:     make(chan struct{}, 1),
		shadow:         cfg.Shadow,
		hot:            newHotKeys(cfg.Now()),
	}
	for i := range n.buckets {
		n.buckets[i] = bucket.NewStore(cfg.Store)
	}
	if cfg.Persist != nil {
		stored, err := cfg.Persist.Load()
		if err != nil {
			return nil, fmt.Errorf("cluster: stored API rules: %w", err)
		}
		n.catalog.Merge(stored)
	}
	n.metrics = newMetrics(cfg.Metrics, &n.buckets)
	n.leases = newLeases(cfg.Leases, cfg.Metrics)
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
	gc.Handler = (*sharedState)(n)
	if n.gossip, err = gossip.New(gc); err != nil {
		return nil, err
	}
	n.member.Store(n.gossip)
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
		n.metrics.ringShare.Set(topo.ring.Share(topo.self))
		for name, addr := range old.addrs {
			if topo.addrs[name] != addr {
				n.peers.Forget(addr) // gone, or moved to another address
			}
		}
		// A joiner may own some of our keys now.
		n.handOff(ctx, topo, rules.SyncOwner)
		switch was, is := n.route(rules.SyncAuto, old), n.route(rules.SyncAuto, topo); {
		case is == rules.SyncOwner:
			// Grown past gossip: each owner starts from its replica, and
			// the others' replicas are merged into it (the lower level
			// stays), so the switch gives no key a fresh burst.
			n.handOff(ctx, topo, rules.SyncAuto)
		case was == rules.SyncOwner:
			// Shrunk into gossip: every member starts its replicas from
			// the owners' buckets.
			n.spread(ctx, topo, rules.SyncAuto)
		}
	}
}

// route returns how a check of mode sync is decided in topo: auto is gossip
// in a cluster of at most gossipMax members and owner above.
func (n *Node) route(sync rules.Sync, topo *topology) rules.Sync {
	if sync != rules.SyncAuto {
		return sync
	}
	if topo.alive() > int64(n.gossipMax) {
		return rules.SyncOwner
	}
	return rules.SyncGossip
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
	sync   rules.Sync // as configured: picks the bucket store
	route  rules.Sync // how it is decided now: local, gossip or owner
	shadow bool       // allowed whatever the decision
	tell   bool       // gossip with peers: count what is admitted for them
	counts *ruleCounters
	// op and maxWait make a wait's reservation of a check (OpReserve);
	// op is OpCheck otherwise.
	op      transport.PeerOp
	maxWait time.Duration
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
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: req.Key}, limit: rule.Limit, sync: rule.Sync, shadow: rule.Shadow}
	case req.Descriptors != nil:
		rule, key, err := set.Match(req.Descriptors)
		if err != nil {
			return r, err
		}
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: key}, limit: rule.Limit, sync: rule.Sync, shadow: rule.Shadow}
	default:
		r = resolved{id: bucket.ID{Inline: req.Inline, Key: req.Key}, limit: req.Inline}
	}
	if req.SyncSet {
		r.sync = req.Sync
	}
	if err := rules.CheckSync(r.limit.Algo, r.sync); err != nil {
		return r, err
	}
	if r.limit.Algo == bucket.SlidingWindowLog && r.sync == rules.SyncAuto {
		// Gossip cannot keep the log exact: auto keeps it on its owner
		// at every size (and in the owner store, so handoffs move it).
		r.sync = rules.SyncOwner
	}
	r.cost = req.Cost
	r.shadow = r.shadow || n.shadow
	topo := n.topo.Load()
	r.route = n.route(r.sync, topo)
	r.tell = r.route == rules.SyncGossip && topo.alive() > 1
	r.counts = n.metrics.forRule(r.id.Rule, r.sync)
	return r, nil
}

// result is the answer to r. Under a shadow rule a denial becomes an
// allowance that says it would have been denied (and is counted); nothing
// was spent for it, so the bucket holds what enforcement would leave.
func (r *resolved) result(d bucket.Decision) transport.CheckResult {
	res := transport.CheckResult{Decision: d, Rule: r.id.Rule, Policy: r.limit, Sync: r.sync, Shadow: r.shadow}
	if r.shadow && !d.Allowed {
		res.ShadowDenied = true
		res.Allowed, res.RetryAfter, res.TooLarge = true, 0, false
		r.counts.shadowAllowed.Inc()
	}
	return res
}

// ownerMode reports whether r is decided by its key's owner.
func (r *resolved) ownerMode() bool { return r.route == rules.SyncOwner }

// decide runs a resolved check: on the key's owner in owner mode, else on
// this node's bucket (in gossip mode its replica, counting what it admits
// for its peers).
func (n *Node) decide(ctx context.Context, r *resolved) (transport.CheckResult, error) {
	if r.ownerMode() {
		return n.decideOwner(ctx, r)
	}
	now := n.now()
	d := n.buckets[r.sync].AllowN(now, r.id, r.limit, r.cost)
	// A node alone counts nothing: a peer that joins later starts from
	// its replica's level, which already holds what it admitted.
	if r.tell && d.Allowed && r.cost > 0 {
		n.counters.add(r.sync, r.id, r.limit, r.cost, now.UnixNano())
	}
	r.counts.observe(&d, r.limit)
	return r.result(d), nil
}

// Check decides one check.
func (n *Node) Check(ctx context.Context, req *transport.CheckRequest) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	if n.hot.sampled() {
		n.hot.record(r.id, n.now())
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
// behind the tokens reserved before it (for a leaky bucket, behind
// everything queued before it, so callers are released evenly spaced). In
// owner mode the owner reserves and this node holds the call. If the
// tokens cannot be granted within maxWait it answers at once with a
// denial and spends nothing. If ctx ends first the reserved tokens are
// given back and ctx's error returned. Windowed algorithms cannot reserve
// ahead: a wait on one is bad input.
func (n *Node) Wait(ctx context.Context, req *transport.CheckRequest, maxWait time.Duration) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	if r.limit.Algo.Windowed() {
		// A window cannot reserve ahead: there is nothing to queue for.
		return transport.CheckResult{}, &rules.FieldError{Field: "algorithm",
			Msg: r.limit.Algo.String() + " does not queue: /v1/wait takes token_bucket or leaky_bucket; use /v1/check and retry after Retry-After"}
	}
	r.op, r.maxWait = transport.OpReserve, maxWait
	res, giveBack, err := n.reserve(ctx, &r)
	if err != nil {
		return transport.CheckResult{}, err
	}
	if !res.Allowed || res.Wait == 0 {
		return res, nil
	}
	timer := time.NewTimer(res.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		res.Waited = res.Wait
		return res, nil
	case <-ctx.Done():
		giveBack()
		n.metrics.waitsAbandoned.Inc()
		return transport.CheckResult{}, ctx.Err()
	}
}

// reserve makes r's reservation where r is decided: on the owner, or on
// this node's bucket (in gossip mode its replica, counting the
// reservation for its peers as spent even if the caller leaves: totals
// only grow, which errs on the side of the limit). It returns the answer
// and how to give the reservation back.
func (n *Node) reserve(ctx context.Context, r *resolved) (transport.CheckResult, func(), error) {
	if r.ownerMode() {
		topo := n.topo.Load()
		if owner := topo.ownerOf(r.id); owner != topo.self {
			out := []transport.CheckResult{{}}
			if err := n.forward(ctx, topo, owner, []*resolved{r}, out); err != nil {
				return transport.CheckResult{}, nil, err
			}
			if out[0].Fallback {
				share := fairShare(r.limit, topo.alive())
				return out[0], func() { n.buckets[rules.SyncLocal].RefundN(n.now(), fallbackID(r.id), share, r.cost) }, nil
			}
			addr := topo.addrs[owner]
			return out[0], func() { go n.giveBack(addr, *r, r.cost) }, nil
		}
		n.metrics.routes.WithLabelValues("owned").Inc()
	}
	now := n.now()
	store := n.buckets[r.sync]
	d := store.ReserveN(now, r.id, r.limit, r.cost, r.maxWait)
	if r.tell && d.Allowed && r.cost > 0 {
		n.counters.add(r.sync, r.id, r.limit, r.cost, now.UnixNano())
	}
	r.counts.observe(&d, r.limit)
	return r.result(d), func() { store.RefundN(n.now(), r.id, r.limit, r.cost) }, nil
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
	g.Go(func() error { return n.syncLoop(gctx) })
	g.Go(func() error { return n.persistLoop(gctx) })
	if n.leases.on() {
		g.Go(func() error { return n.leaseLoop(gctx) })
	}
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
			dropped := 0
			for _, s := range n.buckets {
				dropped += s.Sweep(now)
			}
			n.metrics.swept.Add(float64(dropped))
		}
	}
}
