package cluster

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// handoffTimeout bounds handing buckets to one new owner.
const handoffTimeout = 5 * time.Second

// AcceptHandoff implements transport.PeerHandler: it merges buckets of mode
// sync whose owner this node has become, or, for a cluster that shrank into
// gossip mode, that it now keeps a replica of. A bucket it already holds
// keeps the lower level, so a handoff never gives a key a fresh burst.
func (n *Node) AcceptHandoff(sync rules.Sync, entries []bucket.Entry) {
	if sync != rules.SyncAuto && sync != rules.SyncOwner {
		return
	}
	now := n.now()
	for _, e := range entries {
		n.buckets[sync].Merge(now, e)
	}
	n.metrics.handoff.WithLabelValues("received").Add(float64(len(entries)))
}

// handOff sends the buckets of mode sync that topo assigns to another
// member to that member, and drops them here. A bucket whose new owner
// cannot be reached is lost; that owner starts it full (bounded: one burst).
func (n *Node) handOff(ctx context.Context, topo *topology, sync rules.Sync) {
	moved := n.buckets[sync].Take(n.now(), func(id bucket.ID) bool { return topo.ownerOf(id) != topo.self })
	byOwner := map[string][]bucket.Entry{}
	for _, e := range moved {
		owner := topo.ownerOf(e.ID)
		byOwner[owner] = append(byOwner[owner], e)
	}
	for owner, entries := range byOwner {
		n.send(ctx, topo, owner, sync, entries)
	}
}

// spread sends a copy of every bucket of mode sync that is not full to
// every other member, which merge them into their replicas: how a cluster
// that shrank into gossip mode starts its replicas from the owners'
// buckets.
func (n *Node) spread(ctx context.Context, topo *topology, sync rules.Sync) {
	levels := n.buckets[sync].Levels(n.now(), math.MaxInt)
	if len(levels) == 0 {
		return
	}
	for name := range topo.addrs {
		n.send(ctx, topo, name, sync, levels)
	}
}

// send hands entries of mode sync to member to.
func (n *Node) send(ctx context.Context, topo *topology, to string, sync rules.Sync, entries []bucket.Entry) {
	hctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	err := n.peers.Handoff(hctx, topo.addrs[to], sync, entries)
	cancel()
	if err != nil {
		n.metrics.handoff.WithLabelValues("lost").Add(float64(len(entries)))
		n.log.Warn("handoff failed; the new owner starts these buckets full", "owner", to, "buckets", len(entries), "err", err)
		return
	}
	n.metrics.handoff.WithLabelValues("sent").Add(float64(len(entries)))
}

// handOffAll hands every owned bucket to its owner on the ring without this
// node: what a graceful leave does before telling the cluster. Replicas of
// gossip mode stay: every other member has its own.
func (n *Node) handOffAll(ctx context.Context) {
	topo := n.topo.Load()
	var others []string
	for _, m := range topo.ring.Members() {
		if m != topo.self {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		return
	}
	r, err := ring.New(others, n.ringCfg)
	if err != nil {
		n.log.Error("no ring to hand buckets off to", "err", err)
		return
	}
	next := &topology{ring: r, addrs: topo.addrs, self: topo.self}
	n.handOff(ctx, next, rules.SyncOwner)
	if n.route(rules.SyncAuto, topo) == rules.SyncOwner {
		n.handOff(ctx, next, rules.SyncAuto)
	}
}

func newHandoffMetrics(reg Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_handoff_buckets_total",
		Help: "Buckets handed over when ownership moved or auto mode switched between gossip and owner: sent, received, lost (peer unreachable; it starts them full).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
