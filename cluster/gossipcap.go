package cluster

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/rules"
)

// Gossip mode sends every total that changed to every live member each
// sync interval: N² datagrams a second in a cluster of N, 40,000 from each
// node at 2,000 members. Above Config.GossipSync.GossipModeMaxMembers its
// keys are decided by their owners instead, with the machinery auto mode
// switches by (handoff.go): a key keeps its bucket across the switch, in
// either direction. The switch is each node's, from its own view of the
// membership, like auto's.

// defaultGossipModeMaxMembers is gossip mode's cap: the largest cluster the
// gossip traffic table in docs/design/gossip.md measured (166 KB a second
// from each node at 200 checks a second).
const defaultGossipModeMaxMembers = 32

func newGossipCapGauge(reg Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_gossip_mode_routed_to_owners",
		Help: "1 while the cluster is larger than gossip mode's cap (--gossip-mode-max-members), so that sync: gossip keys are decided by their owners on the ring, as sync: auto keys are above --gossip-max-members; 0 while they gossip.",
	})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// observeGossipCap publishes whether gossip mode's keys go to their owners
// in t, and logs when t crosses its cap: at warning level going up if rules
// in force use gossip mode (an operator chose it, and gets owner mode).
func (n *Node) observeGossipCap(old, t *topology) {
	routed := !t.gossips(rules.SyncGossip)
	if routed {
		n.gossipRouted.Set(1)
	} else {
		n.gossipRouted.Set(0)
	}
	switch wasRouted := !old.gossips(rules.SyncGossip); {
	case routed && !wasRouted:
		attrs := []any{"members", t.alive(), "cap", t.caps.gossip}
		if names := n.gossipRules(); len(names) > 0 {
			n.log.Warn("the cluster is larger than gossip mode's cap: keys of rules set to sync gossip are decided by their owners until it shrinks to the cap",
				append(attrs, "rules", names)...)
			return
		}
		n.log.Info("the cluster is larger than gossip mode's cap: keys checked with sync gossip are decided by their owners until it shrinks to the cap", attrs...)
	case !routed && wasRouted:
		n.log.Info("the cluster is within gossip mode's cap again: sync gossip keys are kept by gossip", "members", t.alive(), "cap", t.caps.gossip)
	}
}

// gossipRules returns the names of the rules in force set to gossip mode.
func (n *Node) gossipRules() []string {
	set := n.rules.Load()
	if set == nil {
		return nil
	}
	var names []string
	for _, r := range set.Rules() {
		if r.Sync == rules.SyncGossip {
			names = append(names, r.Name)
		}
	}
	return names
}
