// Package cluster is sluice's request path. A check arrives from a
// transport as a Request. Node resolves its rule (by name, by descriptors,
// or inline) and its sync mode, and routes it to one of three deciders:
// local decides on this node's own bucket; replicas decides on this node's
// replica of a bucket that every member keeps, and tells the others what
// it admitted by gossip; owners decides on the authoritative bucket if this
// node owns the key on the hash ring, else asks the owner through Peers,
// spends a lease of the owner's tokens, or, when the owner cannot answer,
// decides from this node's fair share of the limit. Auto mode is replicas
// in a small cluster and owners in a large one; so is gossip mode, with a
// larger cap. The answer is a Result,
// which the transport turns into its wire form.
//
// Node is the only component that reads the clock: it passes now to the
// pure bucket math. Its periodic work (sweeping full buckets, syncing
// totals, following membership, lease terms, storing rules) runs under
// Run, which owns every goroutine the node starts.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// Node decides checks. It is safe for concurrent use; its zero value is
// not usable: make one with New.
type Node struct {
	now    func() time.Time
	log    *slog.Logger
	self   string         // this node's name in the cluster ("" alone)
	gossip *gossip.Gossip // nil when standalone
	// member is gossip, published for memberlist's goroutines, which may
	// call in before New has returned.
	member atomic.Pointer[gossip.Gossip]

	// Routing: the topology, rebuilt on membership change, and the
	// deciders a check is routed to.
	topo    atomic.Pointer[topology]
	changed chan struct{} // membership changed; buffered 1
	ringCfg ring.Config
	// ringSettle is the least time between rebuilds of a large ring.
	ringSettle time.Duration
	gossipCaps gossipCaps
	// Heartbeats above auto's cap (silence.go): the metadata advertised,
	// whether the node beats, and a signal that the rules changed
	// (buffered 1).
	meta      gossip.Meta
	beating   atomic.Bool
	advertise chan struct{}
	local     *localMode
	replicas  *replicas
	owners    *owners
	stores    []storeLabel // every store, for the sweep and metrics

	metrics *metrics
	tr      *tracing // nil: tracing off
	hot     *hotKeys
	denied  *deniedKeys
	rates   *rateRing // checks, denials and fallbacks per second, for the status page (7 KB, kept out of the Node's own cache lines)
	shadow  bool
	sweep   time.Duration
	leaveIn time.Duration
	leave   sync.Once

	partitionWindow time.Duration
	partition       *partitionMetrics
	learned         learnedMissing // members peers count as missing
	boot            bootMemory     // the size stored before a restart
	gate            bootGate       // holds a restarted node's checks until it finds a peer
	// entered is auto mode's last switch into gossip, while keys not held
	// yet are seeded from it (enter.go); nil outside that window.
	entered     atomic.Pointer[gossipEntry]
	sizeSavedAt atomic.Int64 // Unix ns the remembered size was last stored

	gossipRouted prometheus.Gauge // sluice_gossip_mode_routed_to_owners (gossipcap.go)

	// Rules: the file's, and the API's catalog; in force, their
	// combination.
	rules      atomic.Pointer[rules.Set]
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
	if cfg.Peer.RingSettle <= 0 {
		cfg.Peer.RingSettle = defaultRingSettle
	}
	if cfg.GossipSync.Interval <= 0 {
		cfg.GossipSync.Interval = 50 * time.Millisecond
	}
	if cfg.GossipSync.MaxMembers <= 0 {
		cfg.GossipSync.MaxMembers = 8
	}
	if cfg.GossipSync.GossipModeMaxMembers <= 0 {
		cfg.GossipSync.GossipModeMaxMembers = defaultGossipModeMaxMembers
	}
	if cfg.GossipSync.MaxMembers > cfg.GossipSync.GossipModeMaxMembers {
		cfg.Logger.Warn("auto mode's threshold (--gossip-max-members) is lowered to gossip mode's cap (--gossip-mode-max-members): auto gossips with the same machinery",
			"gossip_max_members", cfg.GossipSync.MaxMembers, "lowered_to", cfg.GossipSync.GossipModeMaxMembers)
		cfg.GossipSync.MaxMembers = cfg.GossipSync.GossipModeMaxMembers
	}
	if cfg.LeaveTimeout <= 0 {
		cfg.LeaveTimeout = 10 * time.Second
	}
	if cfg.PartitionWindow == 0 {
		cfg.PartitionWindow = defaultPartitionWindow
	}
	if cfg.Gossip != nil && cfg.Peers == nil {
		panic("cluster: Config.Peers is required with Config.Gossip")
	}
	self := ""
	if cfg.Gossip != nil {
		self = cfg.Gossip.Name
	}
	n := &Node{
		now:        cfg.Now,
		log:        cfg.Logger,
		self:       self,
		changed:    make(chan struct{}, 1),
		advertise:  make(chan struct{}, 1),
		ringCfg:    cfg.Peer.Ring,
		ringSettle: cfg.Peer.RingSettle,
		gossipCaps: gossipCaps{auto: cfg.GossipSync.MaxMembers, gossip: cfg.GossipSync.GossipModeMaxMembers},
		hot:        newHotKeys(cfg.Now()),
		denied:     newDeniedKeys(cfg.Now()),
		rates:      &rateRing{},
		shadow:     cfg.Shadow,
		sweep:      cfg.SweepInterval,
		leaveIn:    cfg.LeaveTimeout,
		catalog:    rules.NewCatalog(self),
		persist:    cfg.Persist,
		rulesDirty: make(chan struct{}, 1),

		partitionWindow: cfg.PartitionWindow,
		partition:       newPartitionMetrics(cfg.Metrics),
		tr:              newTracing(cfg.Tracer, cfg.TraceKeys),
	}
	n.rates.observe(cfg.Now(), rateTotals{}) // counted from here, also before Run
	store := func(name string) *bucket.Store {
		s := bucket.NewStore(cfg.Store)
		n.stores = append(n.stores, storeLabel{name, s})
		return s
	}
	topology := func() *topology { return n.topo.Load() }
	n.local = &localMode{now: cfg.Now, store: store("local")}
	updates := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_gossip_counter_updates_total",
		Help: "Gossip-mode totals received from peers (each a peer's running count of the tokens it admitted for one key).",
	})
	gossiped, auto := store("gossip"), store("auto")
	n.replicas = &replicas{onSilence: n.membershipChanged, seed: n.seedReplica, beating: n.beating.Load, now: cfg.Now, self: self, stores: [2]*bucket.Store{gossiped, auto}, topo: topology,
		totals: newTotals(self, cfg.Now().UnixNano(), cfg.GossipSync.Interval), interval: cfg.GossipSync.Interval, log: cfg.Logger, updates: updates}
	n.owners = &owners{now: cfg.Now, log: cfg.Logger, topo: topology, peers: cfg.Peers, timeout: cfg.Peer.ForwardTimeout,
		ringCfg: cfg.Peer.Ring, owner: store("owner"), auto: auto, gossip: gossiped, fallback: store("fallback"),
		leases: newLeases(cfg.Leases, cfg.Metrics), jobs: make(chan peerJob, maxQueuedJobs), replicas: n.replicas,
		m: newOwnerMetrics(cfg.Metrics), tr: n.tr}
	n.gossipRouted = newGossipCapGauge(cfg.Metrics)
	n.owners.reset = n.resetHere
	n.metrics = newMetrics(cfg.Metrics, n.stores)
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(updates)
	}
	if cfg.Persist != nil {
		stored, err := cfg.Persist.Load()
		if err != nil {
			return nil, fmt.Errorf("stored API rules: %w", err)
		}
		n.catalog.Merge(stored)
	}
	topo, err := buildTopology(self, nil, n.ringCfg, n.gossipCaps)
	if err != nil {
		return nil, err
	}
	if cfg.Gossip != nil {
		n.boot = n.storedSize(cfg.Persist)
		topo.remembered = max(topo.remembered, n.boot.size)
		n.owners.restarted = n.boot.size > 0
		n.owners.started = cfg.Gossip.Meta.Incarnation
		if n.boot.size > 1 {
			n.gate.arm()
		}
	}
	n.topo.Store(topo)
	if cfg.Gossip == nil {
		return n, nil
	}
	gc := *cfg.Gossip
	gc.Meta.GossipMax, gc.Meta.GossipModeMax = n.gossipCaps.auto, n.gossipCaps.gossip
	n.meta = gc.Meta
	if gc.Registerer == nil {
		gc.Registerer = cfg.Metrics
	}
	if gc.Logger == nil {
		gc.Logger = cfg.Logger
	}
	gc.OnChange = n.membershipChanged
	gc.Joined = func(others int) {
		if others == 0 {
			n.gate.open() // nobody answered: no peer to wait for
		}
	}
	gc.Handler = (*sharedState)(n)
	if n.gossip, err = gossip.New(gc); err != nil {
		return nil, err
	}
	n.replicas.gossip = n.gossip
	n.member.Store(n.gossip)
	return n, nil
}

// Rules returns the rule set in force, or nil before the first SetRules.
func (n *Node) Rules() *rules.Set { return n.rules.Load() }

// Ready reports whether the node has rules loaded and so serves checks.
func (n *Node) Ready() bool { return n.rules.Load() != nil }

// Run keeps the node in its cluster and does its periodic work until ctx
// ends, then leaves (see Leave) within Config.LeaveTimeout and returns
// when every goroutine it started has finished. Checks are answered
// before, during and after Run: a node that has left decides alone.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.sweepLoop(gctx) })
	g.Go(func() error { return n.rateLoop(gctx) })
	if n.gossip == nil {
		return g.Wait()
	}
	// Membership outlives ctx until the handoff is done.
	memberCtx, leaveGossip := context.WithCancel(context.Background())
	defer leaveGossip()
	gossipDone := make(chan struct{})
	g.Go(func() error {
		defer close(gossipDone)
		return n.gossip.Run(memberCtx)
	})
	g.Go(func() error { return n.topologyLoop(gctx) })
	g.Go(func() error { return n.replicas.syncLoop(gctx) })
	g.Go(func() error { return n.advertiseLoop(gctx) })
	g.Go(func() error { return n.persistLoop(gctx) })
	g.Go(func() error { return n.owners.jobLoop(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil { // a graceful stop, not a failure
			lctx, cancel := context.WithTimeout(context.Background(), n.leaveIn)
			n.Leave(lctx)
			cancel()
		}
		leaveGossip()
		<-gossipDone
		return nil
	})
	return g.Wait()
}

// Close releases what New started (the gossip listener and memberlist's
// goroutines) for a node whose Run never ran or returned early; after Run
// it does nothing. The node must not be used for a cluster afterwards.
func (n *Node) Close() error {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.Close()
}

// Leave starts a graceful leave, once: from now on the node answers no
// peer (their checks fall back to their fair share, never to a bucket
// handed on), and it hands the buckets it owns to their next owners, to
// all at once, within ctx. Run tells the cluster when it returns. Call it
// before ending Run's context to give the handoff a deadline of your own;
// otherwise Run calls it with Config.LeaveTimeout.
func (n *Node) Leave(ctx context.Context) {
	n.leave.Do(func() {
		if n.gossip != nil {
			n.owners.leave(ctx)
		}
	})
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
			for _, s := range n.stores {
				dropped += s.store.Sweep(now)
			}
			n.metrics.swept.Add(float64(dropped))
			n.saveSize(n.topo.Load(), false)
		}
	}
}
