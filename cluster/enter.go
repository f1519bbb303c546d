package cluster

import (
	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Auto mode entering gossip. When a cluster shrinks to --gossip-max-members
// (a member leaves, is declared dead, or this node is cut off and sees its
// peers die one by one), every node's auto-mode keys go from their owners
// to the replicas (gossip mode's alike at --gossip-mode-max-members), which
// share one store with the owners' buckets: the owner of a key keeps its
// bucket as its replica, and sends a copy of every bucket that is not full
// to every other member (owners.spread), which merges it in. A node that
// decides a key before that copy has arrived (it is on its way, or its
// sender is on the far side of a partition) would otherwise make a full
// replica of it: a fresh burst on every such node, spent at a share of a
// full bucket (a 9-node cluster losing one member gave a hot key 1.13× its
// limit; a member cut off from eight others, 1.54×).
//
// So for handoffTimeout after the switch, a key this node does not hold
// yet starts its replica from what this node knows of the key: empty if it
// checked the key at the lease threshold lately (the owner's bucket was
// near empty); else a fair share of the burst, or less if the node decided
// the key from its fair share lately (its owner did not answer) and that
// share's level, as many times as members are alive, says less, as an
// owner taking over estimates it (seedTakeover).
//
// The owner's copy, when it arrives, is merged in and the lower level
// stays, so the seed costs at most a fair share, and only for keys that
// were fuller at their owners than that. A peer's totals that arrive for a
// bucket not held yet are a debit on such a seed, not on a full bucket;
// and a node that still routes the mode to owners takes no debit for a
// bucket it does not hold (only the owner, which holds it, does): the
// debit would make a full replica that the node, once it gossips too,
// would spend as its own (560 tokens in a second, in two runs of four).

// gossipEntry is a switch from owners to gossip on this node: until when
// keys not held yet of the modes that switched are seeded (seedEntered).
type gossipEntry struct {
	until int64
	modes [2]bool // by replicaStore
}

// noteGossipEntry records that auto mode, or gossip mode above its cap,
// switched from routing to owners in old to gossiping in topo.
func (n *Node) noteGossipEntry(old, topo *topology) {
	if topo.alive() <= 1 {
		return
	}
	var e gossipEntry
	for _, mode := range []rules.Sync{rules.SyncGossip, rules.SyncAuto} {
		e.modes[replicaStore(mode)] = !old.gossips(mode) && topo.gossips(mode)
	}
	if e.modes == [2]bool{} {
		return
	}
	now := n.now().UnixNano()
	if prev := n.entered.Load(); prev != nil && now < prev.until {
		for i := range e.modes {
			e.modes[i] = e.modes[i] || prev.modes[i]
		}
	}
	e.until = now + int64(handoffTimeout)
	n.entered.Store(&e)
}

// seedEntered starts c's replica from what this node knows of the key, if
// its mode entered gossip within handoffTimeout and the replica is not
// held yet. Outside that window it costs one atomic load.
func (n *Node) seedEntered(c *check) {
	if n.entered.Load() != nil {
		n.seedReplica(c.mode, c.id, c.topo.share(c.limit), c.topo)
	}
}

// seedReplica is seedEntered for the bucket id of mode, decided at limit l
// in topo: also called when a peer's totals arrive for a bucket this node
// does not hold, whose debit would otherwise make it full first.
func (n *Node) seedReplica(mode rules.Sync, id bucket.ID, l bucket.Limit, topo *topology) {
	e := n.entered.Load()
	if e == nil || mode != rules.SyncAuto && mode != rules.SyncGossip || !e.modes[replicaStore(mode)] {
		return
	}
	now := n.now()
	ns := now.UnixNano()
	if ns >= e.until {
		n.entered.CompareAndSwap(e, nil)
		return
	}
	store := n.replicas.store(mode)
	if store.Holds(id) {
		return
	}
	level := l.Burst / max(topo.remembered, 1)
	o := n.owners
	if o.leases.hot(leaseKey{mode, id}, ns) {
		level = 0
	} else if fl, ok := o.fallback.Level(now, id); ok && ns-o.lastFallback.Load() <= takeoverTerm {
		// Never above the fair share: a node that fell back only once,
		// as when the owner it asked was leaving, holds a fresh share,
		// and that share times the members alive is a fresh burst.
		level = min(level, fl*topo.alive())
	}
	store.Seed(now, id, l, level)
}
