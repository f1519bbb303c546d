// Package ring maps keys to their owner among a set of members, by
// consistent hashing with bounded loads (buraksezer/consistent): each key
// hashes to one of a fixed number of partitions, and partitions are spread
// over members so that none owns more than Load times its fair share. When
// a member joins or leaves, only about 1/N of the keys change owner.
//
// A Ring is an immutable snapshot: build a new one when membership changes
// (off any hot lock), publish it with an atomic pointer, and look keys up
// with no lock and no allocation. Every node that builds a Ring from the
// same members and Config gets the same owners.
package ring

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Config shapes a ring. Zero fields mean defaults. Every node of a cluster
// must use the same Config, or they disagree on owners.
type Config struct {
	// PartitionCount is the number of partitions keys hash into; the ring
	// holds at most this many members. If zero, defaults to 1021 (a prime,
	// 20 to 50 partitions per member up to about 50 members).
	PartitionCount int
	// ReplicationFactor is the number of points each member has on the
	// hash circle. If zero, defaults to 20; must be at least 2.
	ReplicationFactor int
	// Load caps a member's partitions at Load times the average; must be
	// above 1. If zero, defaults to 1.25.
	Load float64
	// Hasher hashes keys, partition numbers and members' points. If nil,
	// xxhash.
	Hasher Hasher
}

// Hasher is a 64-bit hash function. It must be deterministic and the same
// on every node.
type Hasher interface {
	Sum64([]byte) uint64
}

type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// ErrTooManyMembers is returned by New for more members than partitions.
var ErrTooManyMembers = errors.New("ring: more members than partitions")

// Ring is an immutable assignment of partitions to members. It is safe for
// concurrent use.
type Ring struct {
	members []string // sorted
	owners  []string // owners[partition] is the member that owns it
	hasher  Hasher
}

// New builds the ring for members (names, unique). No members gives a ring
// in which no key has an owner.
func New(members []string, cfg Config) (*Ring, error) {
	if cfg.PartitionCount == 0 {
		cfg.PartitionCount = 1021
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 20
	}
	if cfg.Load == 0 {
		cfg.Load = 1.25
	}
	if cfg.Hasher == nil {
		cfg.Hasher = xxHasher{}
	}
	// consistent panics on these; say why instead.
	switch {
	case cfg.PartitionCount < 1:
		return nil, fmt.Errorf("ring: partition count %d must be positive", cfg.PartitionCount)
	case cfg.ReplicationFactor < 2:
		return nil, fmt.Errorf("ring: replication factor %d must be at least 2", cfg.ReplicationFactor)
	case cfg.Load <= 1:
		return nil, fmt.Errorf("ring: load %v must be above 1", cfg.Load)
	case len(members) > cfg.PartitionCount:
		return nil, fmt.Errorf("%w: %d members, %d partitions", ErrTooManyMembers, len(members), cfg.PartitionCount)
	}
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		return nil, errors.New("ring: member names must be unique")
	}
	r := &Ring{members: sorted, hasher: cfg.Hasher}
	if len(sorted) == 0 {
		return r, nil
	}
	c, err := build(sorted, cfg)
	if err != nil {
		return nil, err
	}
	r.owners = make([]string, cfg.PartitionCount)
	for p := range r.owners {
		r.owners[p] = c.GetPartitionOwner(p).String()
	}
	return r, nil
}

type member string

func (m member) String() string { return string(m) }

// build runs consistent, turning a panic the guards above did not foresee
// into an error: a membership change must never crash a node.
func build(members []string, cfg Config) (c *consistent.Consistent, err error) {
	defer func() {
		if p := recover(); p != nil {
			c, err = nil, fmt.Errorf("ring: building for %d members: %v", len(members), p)
		}
	}()
	ms := make([]consistent.Member, len(members))
	for i, m := range members {
		ms[i] = member(m)
	}
	return consistent.New(ms, consistent.Config{
		Hasher:            cfg.Hasher,
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.Load,
	}), nil
}

// Owner returns the member that owns key, or "" if the ring has no members.
// It takes no lock and does not allocate.
func (r *Ring) Owner(key string) string {
	// The hasher only reads the bytes: view the string without copying it.
	return r.OwnerBytes(unsafe.Slice(unsafe.StringData(key), len(key)))
}

// OwnerBytes is Owner for a key held in a byte slice.
func (r *Ring) OwnerBytes(key []byte) string {
	if len(r.owners) == 0 {
		return ""
	}
	return r.owners[r.hasher.Sum64(key)%uint64(len(r.owners))]
}

// OwnerOfHash returns the owner of the key whose hash, by the ring's
// Hasher, is h: for callers that hash a key in parts without building it.
func (r *Ring) OwnerOfHash(h uint64) string {
	if len(r.owners) == 0 {
		return ""
	}
	return r.owners[h%uint64(len(r.owners))]
}

// DefaultHasher reports whether the ring hashes with xxhash (Config.Hasher
// was nil), so that callers may stream a key into an xxhash.Digest.
func (r *Ring) DefaultHasher() bool {
	_, ok := r.hasher.(xxHasher)
	return ok
}

// Members returns the members, sorted.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Share returns the fraction of partitions member owns.
func (r *Ring) Share(member string) float64 {
	if len(r.owners) == 0 {
		return 0
	}
	n := 0
	for _, o := range r.owners {
		if o == member {
			n++
		}
	}
	return float64(n) / float64(len(r.owners))
}
