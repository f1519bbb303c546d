package gossip

import (
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// ErrNoEncryption is returned by keyring operations on a node that runs
// without gossip encryption: encryption can only be turned on at start.
var ErrNoEncryption = errors.New("gossip: this node runs without gossip encryption; restart it with a key")

// Keys returns the installed gossip keys, the one used to encrypt first.
func (g *Gossip) Keys() ([][]byte, error) {
	if g.keyring == nil {
		return nil, ErrNoEncryption
	}
	return g.keyring.GetKeys(), nil
}

// InstallKey adds a key that this node accepts, without using it yet.
// Rotation runs install (on every node), then use, then remove.
func (g *Gossip) InstallKey(key []byte) error {
	return g.keyOp("install", func(k *memberlist.Keyring) error { return k.AddKey(key) })
}

// UseKey makes an installed key the one used to encrypt.
func (g *Gossip) UseKey(key []byte) error {
	return g.keyOp("use", func(k *memberlist.Keyring) error { return k.UseKey(key) })
}

// RemoveKey removes a key that is no longer used to encrypt.
func (g *Gossip) RemoveKey(key []byte) error {
	return g.keyOp("remove", func(k *memberlist.Keyring) error { return k.RemoveKey(key) })
}

func (g *Gossip) keyOp(op string, f func(*memberlist.Keyring) error) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := f(g.keyring); err != nil {
		return fmt.Errorf("%s key: %w", op, err)
	}
	return nil
}
