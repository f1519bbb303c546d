package cluster

import (
	"time"

	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// Status describes the node for its status page.
type Status struct {
	// Self is this node's name ("" when it stands alone).
	Self string
	// Time is the node's clock when the status was taken.
	Time time.Time
	// Members are the cluster's members as this node sees them, itself
	// included; a standalone node is its only member.
	Members []MemberStatus
	// Rules are the rules in force.
	Rules []rules.Rule
	// HotKeys are the keys this node checks most, hottest first.
	HotKeys []HotKey
	// TopDenied are the keys this node denied most lately, most first.
	TopDenied []DeniedKey
	// Checks and Denied count every check decided here since start.
	Checks, Denied uint64
	// Rates are the checks, denials and fallbacks per second of the last
	// five minutes.
	Rates Rates
	// Alive and Remembered are the live members and those the cluster is
	// remembered to have (partition.go). While Remembered is larger,
	// cluster-wide limits are decided at the share Alive/Remembered.
	Alive, Remembered int64
	// AutoRoute and GossipRoute are how keys of auto and gossip mode are
	// decided at the cluster's size now: "gossip" (each node on its
	// replica) up to their caps, "owner" above.
	AutoRoute, GossipRoute string
}

// MemberStatus is one member as the status page shows it.
type MemberStatus struct {
	gossip.Member
	// Share is the fraction of the hash ring the member owns (0 unless
	// it is alive).
	Share float64
}

// Status returns the node's status. It does not block.
func (n *Node) Status() Status {
	now := n.now()
	topo := n.topo.Load()
	st := Status{Self: n.self, Time: now, Rules: n.RulesInForce(), HotKeys: n.hot.top(10, now), TopDenied: n.denied.top(10, now)}
	for _, m := range n.Members() {
		ms := MemberStatus{Member: m}
		if m.State == gossip.StateAlive {
			ms.Share = topo.ring.Share(m.Name)
		}
		st.Members = append(st.Members, ms)
	}
	if len(st.Members) == 0 { // standalone
		st.Members = []MemberStatus{{Member: gossip.Member{Name: n.self, State: gossip.StateAlive, Self: true}, Share: 1}}
	}
	st.Checks, st.Denied = n.metrics.totals()
	st.Rates = n.rates.rates()
	st.Alive, st.Remembered = topo.reachable, topo.remembered
	st.AutoRoute, st.GossipRoute = routeName(routeOf(rules.SyncAuto, topo)), routeName(routeOf(rules.SyncGossip, topo))
	return st
}

// TopDenied returns the at most max keys this node denied most over the
// last one to two minutes, most first (see DeniedKey for the counts'
// accuracy). It does not block on the network.
func (n *Node) TopDenied(max int) []DeniedKey { return n.denied.top(max, n.now()) }

// Name returns the node's name in its cluster ("" when standalone).
func (n *Node) Name() string { return n.self }

// GossipAddr returns the gossip address the node advertises ("" when
// standalone).
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.Addr()
}

// Members returns the cluster's members as this node sees them, itself
// included; nil when standalone.
func (n *Node) Members() []gossip.Member {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.Members()
}

// RingMembers returns the members on this node's hash ring, sorted.
func (n *Node) RingMembers() []string { return n.topo.Load().ring.Members() }
