package cluster

import (
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/transport"
)

// Name returns the node's name in its cluster ("" when standalone).
func (n *Node) Name() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.Name()
}

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

// Cluster describes the node's cluster for the API.
func (n *Node) Cluster() transport.ClusterView {
	v := transport.ClusterView{Self: n.Name(), Counts: map[string]int{}}
	for _, m := range n.Members() {
		v.Members = append(v.Members, transport.MemberView{
			Name:        m.Name,
			Addr:        m.Addr,
			PeerAddr:    m.Meta.PeerAddr,
			State:       m.State.String(),
			Since:       m.Since,
			Incarnation: m.Meta.Incarnation,
			Self:        m.Self,
		})
		v.Counts[m.State.String()]++
	}
	return v
}

// Keys returns the gossip keys, the one used to encrypt first.
func (n *Node) Keys() ([][]byte, error) {
	if n.gossip == nil {
		return nil, gossip.ErrNoEncryption
	}
	return n.gossip.Keys()
}

// InstallKey adds a gossip key this node accepts.
func (n *Node) InstallKey(key []byte) error {
	if n.gossip == nil {
		return gossip.ErrNoEncryption
	}
	return n.gossip.InstallKey(key)
}

// UseKey makes an installed gossip key the one used to encrypt.
func (n *Node) UseKey(key []byte) error {
	if n.gossip == nil {
		return gossip.ErrNoEncryption
	}
	return n.gossip.UseKey(key)
}

// RemoveKey removes a gossip key that is not used to encrypt.
func (n *Node) RemoveKey(key []byte) error {
	if n.gossip == nil {
		return gossip.ErrNoEncryption
	}
	return n.gossip.RemoveKey(key)
}
