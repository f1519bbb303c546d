package gossip

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// maxMetaBytes is memberlist's limit on node metadata; memberlist panics
// past it, so Meta is checked when the node is built.
const maxMetaBytes = 512

// APIVersion is the version of sluice's peer protocol this build speaks.
const APIVersion = 1

// Meta is what a node tells its peers about itself, carried in memberlist's
// node metadata (msgpack, at most 512 bytes).
type Meta struct {
	// PeerAddr is the address of the node's peer RPC listener ("" if none).
	PeerAddr string `msgpack:"p"`
	// API is the peer protocol version (APIVersion).
	API int `msgpack:"v"`
	// Incarnation tells the lives of a node apart: its start time in Unix
	// nanoseconds. A node that restarts under the same name has a new one.
	Incarnation int64 `msgpack:"i"`
	// GossipMax and GossipModeMax are the node's caps on the cluster size
	// in which sync auto and sync gossip keep keys by gossip (0: not
	// said, as by an older node). The cluster goes by the smallest a live
	// member says, so that every node routes a key the same way.
	GossipMax     int `msgpack:"ga,omitempty"`
	GossipModeMax int `msgpack:"gg,omitempty"`
	// Beats says the node heartbeats whenever gossip mode gossips (within
	// GossipModeMax), not only when auto does: it has rules in force set
	// to gossip mode. Peers count it silent when its beats stop; one that
	// does not say so (false, or an older node) is expected to beat only
	// while auto gossips.
	Beats bool `msgpack:"gb,omitempty"`
}

func (m Meta) encode() ([]byte, error) {
	b, err := msgpack.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	if len(b) > maxMetaBytes {
		return nil, fmt.Errorf("node metadata is %d bytes, over memberlist's %d", len(b), maxMetaBytes)
	}
	return b, nil
}

// errBadMeta is metadata that does not decode; the member is shown with
// empty metadata rather than dropped.
var errBadMeta = errors.New("malformed node metadata")

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 || len(b) > maxMetaBytes {
		return m, errBadMeta
	}
	if err := Unmarshal(b, &m); err != nil {
		return Meta{}, errBadMeta
	}
	return m, nil
}
