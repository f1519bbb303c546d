package cluster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/ring"
)

// handoffTimeout bounds handing buckets to one new owner.
const handoffTimeout = 5 * time.Second

// AcceptHandoff implements transport.PeerHandler: it merges buckets whose
// owner this node has become. A bucket it already holds keeps the lower
// level, so a handoff never gives a key a fresh burst.
func (n *Node) AcceptHandoff(entries []bucket.Entry) {
	now := n.now()
	for _, e := range entries {
		n.owned.Merge(now, e)
	}
	n.metrics.handoff.WithLabelValues("received").Add(float64(len(entries)))
}

// handOff sends the owned buckets that topo assigns to another member to
// that member, and drops them here. A bucket whose new owner cannot be
// reached is lost; that owner starts it full (bounded: one burst).
func (n *Node) handOff(ctx context.Context, topo *topology) {
	moved := n.owned.Take(n.now(), func(id bucket.ID) bool { return topo.ownerOf(id) != topo.self })
	if len(moved) == 0 {
		return
	}
	byOwner := map[string][]bucket.Entry{}
	for _, e := range moved {
		owner := topo.ownerOf(e.ID)
		byOwner[owner] = append(byOwner[owner], e)
	}
	for owner, entries := range byOwner {
		addr := topo.addrs[owner]
		hctx, cancel := context.WithTimeout(ctx, handoffTimeout)
		err := n.peers.Handoff(hctx, addr, entries)
		cancel()
		if err != nil {
			n.metrics.handoff.WithLabelValues("lost").Add(float64(len(entries)))
			n.log.Warn("handoff failed; the new owner starts these buckets full", "owner", owner, "buckets", len(entries), "err", err)
			continue
		}
		n.metrics.handoff.WithLabelValues("sent").Add(float64(len(entries)))
	}
}

// handOffAll hands every owned bucket to its owner on the ring without this
// node: what a graceful leave does before telling the cluster.
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
	n.handOff(ctx, &topology{ring: r, addrs: topo.addrs, self: topo.self})
}

func newHandoffMetrics(reg Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_handoff_buckets_total",
		Help: "Owner buckets handed over when ownership moved: sent, received, lost (new owner unreachable; it starts them full).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
