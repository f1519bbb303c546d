package gossip

import (
	"errors"
	"fmt"
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
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.AddKey(key); err != nil {
		return fmt.Errorf("install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the one used to encrypt.
func (g *Gossip) UseKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("use key: %w", err)
	}
	return nil
}

// RemoveKey removes a key that is no longer used to encrypt.
func (g *Gossip) RemoveKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("remove key: %w", err)
	}
	return nil
}
