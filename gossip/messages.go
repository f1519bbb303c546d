package gossip

import (
	"github.com/vmihailenco/msgpack/v5"
)

// Gossip messages between sluice nodes are a type byte followed by a
// msgpack body. A frame that does not decode is dropped and counted.
const (
	// msgLeaving announces a graceful departure just before memberlist's
	// leave, because memberlist does not tell its event delegate whether a
	// member left or failed.
	msgLeaving byte = 1
)

// leaving is the body of msgLeaving.
type leaving struct {
	Name string `msgpack:"n"`
}

// maxNameBytes bounds a node name in a message.
const maxNameBytes = 256

func encodeLeaving(name string) []byte {
	b, err := msgpack.Marshal(&leaving{Name: name})
	if err != nil {
		panic("gossip: encode leaving: " + err.Error()) // a string always encodes
	}
	return append([]byte{msgLeaving}, b...)
}

// decodeMessage decodes a gossip message, reporting false for a malformed
// frame or an unknown type.
func decodeMessage(b []byte) (leaving, bool) {
	var l leaving
	if len(b) < 2 || b[0] != msgLeaving || len(b) > 2*maxNameBytes {
		return l, false
	}
	if err := Unmarshal(b[1:], &l); err != nil || l.Name == "" || len(l.Name) > maxNameBytes {
		return leaving{}, false
	}
	return l, true
}
