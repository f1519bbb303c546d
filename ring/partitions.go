package ring

// The partition count grows with the membership, so that every member
// owns about PartitionsPerMember partitions and the load cap can hold each
// member's share near Load times the average at any size. Up to
// BasePartitions/PartitionsPerMember members (63) the count is
// BasePartitions and a key's partition is its hash modulo that, as before
// the count grew. Past that, the count is PartitionsPerMember × members and
// a key's partition extends the modulo by jump consistent hashing (Lamping
// and Veach, 2014): when the count grows from P to P+1, a key moves only
// with probability 1/(P+1), and then to the new partition P. So a count
// that follows the membership moves about as many keys as the member that
// changed it (docs/design/scale.md).
const (
	// BasePartitions is the partition count of a ring of up to 63 members
	// and the base the key mapping extends.
	BasePartitions = 1021
	// PartitionsPerMember is how many partitions a member owns on average
	// in a ring of more than 63 members.
	PartitionsPerMember = 16
)

// partitionCount returns the number of partitions for n members: fixed if
// not zero, else BasePartitions or PartitionsPerMember × n, the larger.
// It depends on nothing else, so every node derives the same count.
func partitionCount(n, fixed int) int {
	if fixed != 0 {
		return fixed
	}
	return max(BasePartitions, PartitionsPerMember*n)
}

// partitionOf returns the partition, of n, of the key whose hash is h, for
// a ring whose key mapping extends h mod base (base ≤ n). A key keeps its
// partition b since the count was m; at each later count i it moves to
// partition i-1 with probability 1/i: the next count at which it moves is
// found in one step as m/u with u uniform in (0, 1], drawn from h by jump
// hash's linear congruential generator. It takes O(log(n/base)) steps.
func partitionOf(h, base, n uint64) uint64 {
	b := h % base
	if base == n {
		return b
	}
	m := base
	for key := h; ; {
		key = key*2862933555777941757 + 1
		j := m << 31 / (key>>33 + 1) // floor(m/u), u = (key>>33 + 1)/2³¹
		if j >= n {
			return b
		}
		b, m = j, j+1
	}
}
