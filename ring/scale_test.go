package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i)
	}
	return out
}

// TestAnySizeFrom1To5000 builds rings of every size to 80 members, then a
// sample up to 5,000: each has an owner for every partition and derives
// its partition count from its size alone.
func TestAnySizeFrom1To5000(t *testing.T) {
	all := names(5000)
	for n := 1; n <= 5000; n++ {
		if n > 80 && n%997 != 0 && n != 800 && n != 5000 {
			continue
		}
		r, err := New(all[:n], Config{})
		if err != nil {
			t.Fatalf("%d members: %v", n, err)
		}
		if want := max(BasePartitions, PartitionsPerMember*n); r.Partitions() != want {
			t.Fatalf("%d members: %d partitions, want %d", n, r.Partitions(), want)
		}
		if r.Owner("k") == "" {
			t.Fatalf("%d members: no owner", n)
		}
	}
}

// TestShareBoundedAt5000 checks that no member owns more than Load times
// the average, rounded up to whole partitions, at 800 and 5,000 members
// (800 members on a fixed 1021 partitions could own 2 of 1.28: 1.57 times).
func TestShareBoundedAt5000(t *testing.T) {
	for _, n := range []int{800, 5000} {
		members := names(n)
		r, err := New(members, Config{})
		if err != nil {
			t.Fatal(err)
		}
		p := float64(r.Partitions())
		limit := math.Ceil(p/float64(n)*1.25) / p
		most := 0.0
		for _, m := range members {
			most = max(most, r.Share(m))
		}
		t.Logf("%d members, %v partitions: the largest share is %.3f times the average", n, p, most*float64(n))
		if most > limit || most*float64(n) > 1.25+1/PartitionsPerMember {
			t.Fatalf("%d members: a member owns %.5f of the partitions, cap %.5f", n, most, limit)
		}
	}
}

// TestMovementAtScale checks that a join or a leave moves few keys at
// sizes around where the partition count starts to grow (63 → 64) and up
// to 5,000 members. The bound is 4/N: bounded loads move about 1.5/N on a
// fixed count, and keys of the partitions added or removed with the member
// about 1/N more (measured 1.4/N to 3.3/N, docs/design/scale.md).
func TestMovementAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rings of up to 5,000 members")
	}
	keys := make([]uint64, 1_000_000)
	for i := range keys {
		keys[i] = xxHasher{}.Sum64([]byte("tenant-" + strconv.Itoa(i) + ":/api/v1/items"))
	}
	moved := func(a, b *Ring) float64 {
		n := 0
		for _, h := range keys {
			if a.OwnerOfHash(h) != b.OwnerOfHash(h) {
				n++
			}
		}
		return float64(n) / float64(len(keys))
	}
	for _, n := range []int{62, 63, 64, 65, 128, 500, 2000, 4999} {
		members := names(n)
		base, _ := New(members, Config{})
		grown, _ := New(append(slices.Clone(members), "node-new"), Config{})
		shrunk, _ := New(members[1:], Config{})
		join, leave := moved(base, grown)*float64(n+1), moved(base, shrunk)*float64(n)
		t.Logf("N=%d (%d partitions): a join moves %.2f/(N+1), a leave %.2f/N", n, base.Partitions(), join, leave)
		if join > 4 || leave > 4 || join == 0 || leave == 0 {
			t.Fatalf("N=%d: a join moved %.2f/(N+1), a leave %.2f/N of the keys; want under 4", n, join, leave)
		}
	}
}

// TestSameOwnersWhateverTheOrderAt2000 is TestSameOwnersWhateverTheOrder
// on a grown ring.
func TestSameOwnersWhateverTheOrderAt2000(t *testing.T) {
	members := names(2000)
	a, _ := New(members, Config{})
	shuffled := slices.Clone(members)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, _ := New(shuffled, Config{})
	for i := range 100_000 {
		k := "key-" + strconv.Itoa(i)
		if a.Owner(k) != b.Owner(k) {
			t.Fatalf("key %s: owner %s or %s depending on member order", k, a.Owner(k), b.Owner(k))
		}
	}
}

// TestPartitionOfGrowsByOne checks the key mapping's two properties: at
// the base count it is the hash modulo the base, and when the count grows
// by one a key either stays or moves to the new partition, which receives
// about 1/(count) of the keys.
func TestPartitionOfGrowsByOne(t *testing.T) {
	const base = BasePartitions
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, n := range []uint64{base, base + 1, 2048, 80_000} {
		var into int
		const keys = 200_000
		for range keys {
			h := rnd.Uint64()
			if n == base && partitionOf(h, base, n) != h%base {
				t.Fatalf("hash %d: partition %d at the base count, want %d", h, partitionOf(h, base, n), h%base)
			}
			before, after := partitionOf(h, base, n), partitionOf(h, base, n+1)
			if before >= n || (after != before && after != n) {
				t.Fatalf("hash %d: partition %d of %d, then %d of %d", h, before, n, after, n+1)
			}
			if after == n {
				into++
			}
		}
		if got, want := float64(into)/keys, 1/float64(n+1); math.Abs(got-want) > 5*math.Sqrt(want/keys) {
			t.Fatalf("%d → %d partitions: %.5f of the keys moved, want %.5f", n, n+1, got, want)
		}
	}
}

// TestPartitionOfIsUniform checks that keys spread evenly over a grown
// count: each tenth of the partitions receives a tenth of the keys.
func TestPartitionOfIsUniform(t *testing.T) {
	const n, keys = 80_000, 1_000_000
	rnd := rand.New(rand.NewPCG(7, 8))
	var tenths [10]int
	for range keys {
		tenths[partitionOf(rnd.Uint64(), BasePartitions, n)*10/n]++
	}
	for i, c := range tenths {
		if math.Abs(float64(c)-keys/10) > 5*math.Sqrt(keys/10) {
			t.Fatalf("tenth %d of the partitions has %d of %d keys: %v", i, c, keys, tenths)
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	r, err := New(names(2000), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { r.OwnerOfHash(12345); r.Owner("tenant-1") }); n != 0 {
		t.Fatalf("a lookup allocates %v times", n)
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{8, 128, 512, 2000, 5000} {
		members := names(n)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(members, Config{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOwnerOfHash(b *testing.B) {
	for _, n := range []int{10, 128, 2000, 5000} {
		r, _ := New(names(n), Config{})
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			h := uint64(0x9e3779b97f4a7c15)
			for b.Loop() {
				r.OwnerOfHash(h)
				h += 0x9e3779b97f4a7c15
			}
		})
	}
}
