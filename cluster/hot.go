package cluster

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// hotKeys estimates which keys this node checks most, for the status page:
// one check in hotSample is counted, in a table of at most hotCap keys (the
// least counted goes when a new key needs room), over two alternating
// windows of hotWindow. Cheap enough for the check path: an atomic add, and
// a lock one time in hotSample.
type hotKeys struct {
	n   atomic.Uint64
	mu  sync.Mutex
	cur map[bucket.ID]uint64
	old map[bucket.ID]uint64
	at  time.Time // start of cur
}

const (
	hotSample = 16
	hotCap    = 512
	hotWindow = 10 * time.Second
)

// HotKey is a key this node checks often, with its estimated rate here.
type HotKey struct {
	Rule string
	Key  string
	Rate float64 // checks per second
}

func newHotKeys(now time.Time) *hotKeys {
	return &hotKeys{cur: map[bucket.ID]uint64{}, old: map[bucket.ID]uint64{}, at: now}
}

// sampled reports whether this check is one of the counted ones.
func (h *hotKeys) sampled() bool { return h.n.Add(1)%hotSample == 0 }

// record counts a sampled check of id.
func (h *hotKeys) record(id bucket.ID, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.at) >= hotWindow {
		h.old, h.cur, h.at = h.cur, make(map[bucket.ID]uint64, len(h.cur)), now
	}
	if _, ok := h.cur[id]; !ok && len(h.cur) >= hotCap {
		var least bucket.ID
		fewest := uint64(1<<64 - 1)
		for k, c := range h.cur {
			if c < fewest {
				least, fewest = k, c
			}
		}
		delete(h.cur, least)
	}
	h.cur[id]++
}

// top returns the n hottest keys.
func (h *hotKeys) top(n int, now time.Time) []HotKey {
	h.mu.Lock()
	span := now.Sub(h.at) + hotWindow // cur's age plus old's full window
	counts := make(map[bucket.ID]uint64, len(h.cur)+len(h.old))
	for k, c := range h.old {
		counts[k] += c
	}
	for k, c := range h.cur {
		counts[k] += c
	}
	h.mu.Unlock()
	out := make([]HotKey, 0, len(counts))
	for id, c := range counts {
		out = append(out, HotKey{Rule: id.Rule, Key: id.Key, Rate: float64(c*hotSample) / span.Seconds()})
	}
	slices.SortFunc(out, func(a, b HotKey) int { return cmp.Compare(b.Rate, a.Rate) })
	return out[:min(n, len(out))]
}
