// Package ring maps keys to their owner among a set of members, by
// consistent hashing with bounded loads (buraksezer/consistent builds the
// ring up to libraryMembers; past that, assign makes the same assignment
// without its quadratic build): each key hashes to one of a number of partitions,
// and partitions are spread over members so that none owns more than Load
// times its fair share. The number of partitions grows with the members,
// about 16 each, so that the cap holds at any size. When a member joins or
// leaves, only about 1/N of the keys change owner.
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
	// PartitionCount fixes the number of partitions keys hash into (a key's
	// partition is then its hash modulo the count); the ring holds at most
	// this many members. If zero, the count follows the members:
	// BasePartitions (1021, a prime) up to 63 members, PartitionsPerMember
	// (16) per member past that (partitions.go).
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

// ErrTooManyMembers is returned by New for more members than a fixed
// Config.PartitionCount. A ring whose count follows its members has room
// for any number.
var ErrTooManyMembers = errors.New("ring: more members than partitions")

// Ring is an immutable assignment of partitions to members. It is safe for
// concurrent use.
type Ring struct {
	members []string // sorted
	owners  []int32  // owners[partition] indexes the member that owns it
	base    uint64   // the key mapping extends hash mod base (partitionOf)
	hasher  Hasher
}

// New builds the ring for members (names, unique). No members gives a ring
// in which no key has an owner.
func New(members []string, cfg Config) (*Ring, error) {
	fixed := cfg.PartitionCount
	cfg.PartitionCount = partitionCount(len(members), fixed)
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 20
	}
	if cfg.Load == 0 {
		cfg.Load = 1.25
	}
	if cfg.Hasher == nil {
		cfg.Hasher = xxHasher{}
	}
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
	r := &Ring{members: sorted, hasher: cfg.Hasher, base: uint64(cfg.PartitionCount)}
	if fixed == 0 {
		r.base = BasePartitions
	}
	if len(sorted) == 0 {
		return r, nil
	}
	var owners []int32
	var err error
	if len(sorted) <= libraryMembers {
		owners, err = build(sorted, cfg)
	} else {
		owners, err = assign(sorted, cfg.PartitionCount, cfg.ReplicationFactor, cfg.Load, cfg.Hasher)
	}
	if err != nil {
		return nil, fmt.Errorf("ring: building for %d members: %w", len(sorted), err)
	}
	r.owners = owners
	return r, nil
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
	return r.OwnerOfHash(r.hasher.Sum64(key))
}

// OwnerOfHash returns the owner of the key whose hash, by the ring's
// Hasher, is h: for callers that hash a key in parts without building it.
func (r *Ring) OwnerOfHash(h uint64) string {
	if len(r.owners) == 0 {
		return ""
	}
	return r.members[r.owners[partitionOf(h, r.base, uint64(len(r.owners)))]]
}

// DefaultHasher reports whether the ring hashes with xxhash (Config.Hasher
// was nil), so that callers may stream a key into an xxhash.Digest.
func (r *Ring) DefaultHasher() bool {
	_, ok := r.hasher.(xxHasher)
	return ok
}

// Members returns the members, sorted.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// Partitions returns the number of partitions keys hash into: 0 for a ring
// without members.
func (r *Ring) Partitions() int { return len(r.owners) }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Share returns the fraction of partitions member owns.
func (r *Ring) Share(member string) float64 {
	if len(r.owners) == 0 {
		return 0
	}
	m, ok := slices.BinarySearch(r.members, member)
	if !ok {
		return 0
	}
	n := 0
	for _, o := range r.owners {
		if int(o) == m {
			n++
		}
	}
	return float64(n) / float64(len(r.owners))
}

// libraryMembers is the largest ring buraksezer/consistent builds itself:
// up to it the partitions stay at BasePartitions and consistent builds
// them in a few milliseconds. Past it, assign does the same assignment
// (the same owners, partition by partition) without consistent's
// quadratic re-sorting: 3 s at 2,000 members against its 16 ms.
const libraryMembers = 63

type member string

func (m member) String() string { return string(m) }

// build assigns the partitions with consistent, turning a panic the
// guards in New did not foresee into an error: a membership change must
// never crash a node.
func build(members []string, cfg Config) (owners []int32, err error) {
	defer func() {
		if p := recover(); p != nil {
			owners, err = nil, fmt.Errorf("%v", p)
		}
	}()
	ms := make([]consistent.Member, len(members))
	for i, m := range members {
		ms[i] = member(m)
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            cfg.Hasher,
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.Load,
	})
	index := make(map[string]int32, len(members))
	for i, m := range members {
		index[m] = int32(i)
	}
	owners = make([]int32, cfg.PartitionCount)
	for p := range owners {
		owners[p] = index[c.GetPartitionOwner(p).String()]
	}
	return owners, nil
}
