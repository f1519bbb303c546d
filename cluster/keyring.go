package cluster

import "github.com/sluicerl/sluice/gossip"

// Keys returns the gossip keys, the one used to encrypt first; peers prove
// their membership with the same keys.
func (n *Node) Keys() ([][]byte, error) {
	if n.gossip == nil {
		return nil, gossip.ErrNoEncryption
	}
	return n.gossip.Keys()
}

// PeerKeys returns the gossip keys, or none when gossip is not encrypted:
// what peer connections authenticate with. It does not block.
func (n *Node) PeerKeys() [][]byte {
	k, _ := n.Keys()
	return k
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
