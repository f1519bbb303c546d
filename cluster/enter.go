package cluster

import "github.com/sluicerl/sluice/rules"

// Auto mode entering gossip. When a cluster shrinks to --gossip-max-members
// (a member leaves, is declared dead, or this node is cut off and sees its
// peers die one by one), every node's auto-mode keys go from their owners to
// the replicas (gossip mode's alike at --gossip-mode-max-members), which
// share one store with the owners' buckets: the owner
// of a key keeps its bucket as its replica, and sends a copy of every bucket
// that is not full to every other member (owners.spread), which merges it
// in. A node that decides a key before that copy has arrived (it is on its
// way, or its sender is on the far side of a partition) would otherwise
// make a full replica of it: a fresh burst on every such node, spent at a
// share of a full bucket (a 9-node cluster losing one member gave a hot key
// 1.13× its limit; a member cut off from eight others, 1.54×).
//
// So for handoffTimeout after the switch, a key this node does not hold
// yet starts its replica from what this node knows of the key:
//   - it decided the key from its fair share lately (its owner did not
//     answer): that share's level, as many times as members are alive, as
//     an owner taking over does (seedTakeover);
//   - it checked the key at the lease threshold lately: the owner's bucket
//     was near empty, and the replica starts empty;
//   - otherwise a fair share of the burst.
//
// The owner's copy, when it arrives, is merged in and the lower level
// stays, so the seed costs at most a fair share, and only for keys that
// were fuller at their owners than that.

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
// auto mode entered gossip within handoffTimeout and the replica is not
// held yet. Outside that window it costs one atomic load.
func (n *Node) seedEntered(c *check) {
	e := n.entered.Load()
	if e == nil || c.mode != rules.SyncAuto && c.mode != rules.SyncGossip || !e.modes[replicaStore(c.mode)] {
		return
	}
	now := n.now()
	ns := now.UnixNano()
	if ns >= e.until {
		n.entered.CompareAndSwap(e, nil)
		return
	}
	store := n.replicas.store(c.mode)
	if store.Holds(c.id) {
		return
	}
	l := c.topo.share(c.limit)
	level := l.Burst / max(c.topo.remembered, 1)
	o := n.owners
	if fl, ok := o.fallback.Level(now, c.id); ok && ns-o.lastFallback.Load() <= takeoverTerm {
		level = min(fl*c.topo.alive(), l.Burst)
	} else if o.leases.hot(leaseKey{c.mode, c.id}, ns) {
		level = 0
	}
	store.Seed(now, c.id, l, level)
}
