package ring

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
)

// point is one of a member's places on the hash circle.
type point struct {
	hash   uint64
	member int32 // index into the sorted members
	order  int32 // the point's rank in the order consistent adds points
}

// assign gives each of partitions partitions an owner among members
// (sorted, unique) by consistent hashing with bounded loads, exactly as
// buraksezer/consistent v1.0.0 does (ring_consistent_test.go checks it
// partition by partition): each member has replicas points, "i:name"
// hashed; a partition, its number hashed as 8 little-endian bytes, goes to
// the member of the first point at or after it on the circle that owns
// fewer than ceil(partitions/members × load) partitions, walking on past
// full ones.
//
// consistent sorts every point again as each member is added, which costs
// O(N² log N): 3 s for 2,000 members. This sorts once, and counts loads in
// a slice rather than a map keyed by name (docs/design/scale.md).
func assign(members []string, partitions, replicas int, load float64, h Hasher) ([]int32, error) {
	pts := make([]point, 0, len(members)*replicas)
	var buf []byte
	for m, name := range members {
		for i := range replicas {
			buf = strconv.AppendInt(buf[:0], int64(i), 10)
			buf = append(buf, ':')
			buf = append(buf, name...)
			pts = append(pts, point{hash: h.Sum64(buf), member: int32(m), order: int32(len(pts))})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.order - b.order)
	})
	// Two points on the same hash: consistent's map from hash to member
	// keeps the one added last, for both places in its sorted list.
	for i := len(pts) - 2; i >= 0; i-- {
		if pts[i].hash == pts[i+1].hash {
			pts[i].member = pts[i+1].member
		}
	}
	// The cap, computed in consistent's floating-point steps.
	capacity := math.Ceil(float64(partitions) / float64(len(members)) * load)
	loads := make([]float64, len(members))
	owners := make([]int32, partitions)
	var b [8]byte
	for p := range owners {
		binary.LittleEndian.PutUint64(b[:], uint64(p))
		key := h.Sum64(b[:])
		i := firstAtOrAfter(pts, key)
		owners[p] = -1
		for range pts {
			if i >= len(pts) {
				i = 0
			}
			if m := pts[i].member; loads[m]+1 <= capacity {
				owners[p] = m
				loads[m]++
				break
			}
			i++
		}
		if owners[p] < 0 {
			return nil, errors.New("ring: no member has room for a partition")
		}
	}
	return owners, nil
}

// firstAtOrAfter returns the index of the first point at or after key in
// pts (sorted), or len(pts) if there is none.
func firstAtOrAfter(pts []point, key uint64) int {
	lo, hi := 0, len(pts)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if pts[mid].hash < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
