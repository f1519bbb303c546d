package ring

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/buraksezer/consistent"
)

type consistentMember string

func (m consistentMember) String() string { return string(m) }

// coarseHasher keeps 10 bits of xxhash, so that members' points collide.
type coarseHasher struct{}

func (coarseHasher) Sum64(b []byte) uint64 { return xxHasher{}.Sum64(b) >> 54 << 54 }

func referenceRing(members []string, cfg consistent.Config) *consistent.Consistent {
	ms := make([]consistent.Member, len(members))
	for i, m := range members {
		ms[i] = consistentMember(m)
	}
	return consistent.New(ms, cfg)
}

// TestSameOwnersAsConsistent checks assign against buraksezer/consistent
// v1.0.0, whose algorithm it implements, partition by partition, for
// several sizes and settings, and with points that collide.
func TestSameOwnersAsConsistent(t *testing.T) {
	for _, tc := range []struct {
		sizes      []int
		partitions int
		replicas   int
		load       float64
		hasher     Hasher
	}{
		{[]int{1, 2, 3, 5, 10, 31, 63}, 1021, 20, 1.25, xxHasher{}},
		{[]int{64, 100, 200}, 0, 20, 1.25, xxHasher{}},
		{[]int{1, 7, 40}, 271, 2, 1.01, xxHasher{}},
		{[]int{3, 50}, 97, 5, 3, xxHasher{}},
		{[]int{2, 9, 60}, 1021, 20, 1.25, coarseHasher{}},
	} {
		for _, n := range tc.sizes {
			members := names(n)
			p := tc.partitions
			if p == 0 {
				p = partitionCount(n, 0)
			}
			t.Run(fmt.Sprintf("n=%d/p=%d/rf=%d/load=%v/%T", n, p, tc.replicas, tc.load, tc.hasher), func(t *testing.T) {
				r, err := New(members, Config{PartitionCount: p, ReplicationFactor: tc.replicas, Load: tc.load, Hasher: tc.hasher})
				if err != nil {
					t.Fatal(err)
				}
				ref := referenceRing(r.Members(), consistent.Config{PartitionCount: p, ReplicationFactor: tc.replicas, Load: tc.load, Hasher: tc.hasher})
				for part := range p {
					if got, want := r.members[r.owners[part]], ref.GetPartitionOwner(part).String(); got != want {
						t.Fatalf("partition %d: owner %s, consistent says %s", part, got, want)
					}
				}
			})
		}
	}
}

// TestOwnersUnchangedUpTo63Members checks that a ring of up to 63 members
// with the default Config gives every key the owner that consistent's
// LocateKey gives on 1021 partitions: the owners of the rings built before
// the partition count followed the membership.
func TestOwnersUnchangedUpTo63Members(t *testing.T) {
	for n := 1; n <= 63; n++ {
		r, err := New(names(n), Config{})
		if err != nil {
			t.Fatal(err)
		}
		ref := referenceRing(r.Members(), consistent.Config{PartitionCount: 1021, ReplicationFactor: 20, Load: 1.25, Hasher: xxHasher{}})
		for i := range 2000 {
			k := "tenant-" + strconv.Itoa(i)
			if got, want := r.Owner(k), ref.LocateKey([]byte(k)).String(); got != want {
				t.Fatalf("%d members, key %s: owner %s, before %s", n, k, got, want)
			}
		}
	}
}
