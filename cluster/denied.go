package cluster

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// deniedKeys counts the keys this node denies most, in bounded memory,
// without ever making a key a metric label: the space-saving algorithm
// (Metwally, Agrawal and El Abbadi, 2005) keeps deniedCap counters; a
// denied key that has none takes over the smallest, inheriting its count
// as its possible overcount. Any key denied more than 1/deniedCap of all
// denials in a window is certain to be held, and no count is ever below the
// truth. Counts run over two alternating windows of deniedWindow, so the
// table shows the last one to two minutes, not the node's whole life.
//
// Every denial is counted: under the lock, an existing key is an increment
// and a short sift down a heap of deniedCap entries, with no allocation; a
// new key replaces the root. It is safe for concurrent use.
type deniedKeys struct {
	mu       sync.Mutex // guards the fields below
	cur, old spaceSaving
	at       time.Time // start of cur
}

const (
	deniedCap    = 128
	deniedWindow = time.Minute
)

// DeniedKey is a key this node denied often lately.
type DeniedKey struct {
	// Rule is the rule's name; "" for an inline limit.
	Rule string
	// Key is the key within the rule.
	Key string
	// Inline is an inline limit's limit (part of its bucket's identity);
	// zero for a named rule.
	Inline bucket.Limit
	// Denied counts the denials over the last one to two windows; it may
	// be over the truth by up to Overcount, never under.
	Denied, Overcount uint64
}

func newDeniedKeys(now time.Time) *deniedKeys {
	return &deniedKeys{cur: newSpaceSaving(deniedCap), old: newSpaceSaving(deniedCap), at: now}
}

// record counts one denial of id at now.
func (d *deniedKeys) record(id bucket.ID, now time.Time) {
	d.mu.Lock()
	if now.Sub(d.at) >= deniedWindow {
		d.old, d.cur = d.cur, d.old
		d.cur.reset()
		d.at = now
	}
	d.cur.add(id)
	d.mu.Unlock()
}

// top returns the n keys denied most over the last one to two windows,
// most first.
func (d *deniedKeys) top(n int, now time.Time) []DeniedKey {
	d.mu.Lock()
	if now.Sub(d.at) >= 2*deniedWindow { // nothing denied for two windows
		d.old.reset()
		d.cur.reset()
		d.at = now
	}
	merged := make(map[bucket.ID]DeniedKey, len(d.cur.heap)+len(d.old.heap))
	for _, s := range []*spaceSaving{&d.old, &d.cur} {
		for _, e := range s.heap {
			k := merged[e.id]
			k.Rule, k.Key, k.Inline = e.id.Rule, e.id.Key, e.id.Inline
			k.Denied += e.count
			k.Overcount += e.over
			merged[e.id] = k
		}
	}
	d.mu.Unlock()
	out := make([]DeniedKey, 0, len(merged))
	for _, k := range merged {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b DeniedKey) int {
		if c := cmp.Compare(b.Denied, a.Denied); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out[:min(n, len(out))]
}

// spaceSaving is one window's counters: a min-heap by count, and where
// each key sits in it. Not safe for concurrent use.
type spaceSaving struct {
	heap  []ssEntry
	index map[bucket.ID]int
}

type ssEntry struct {
	id          bucket.ID
	count, over uint64
}

func newSpaceSaving(capacity int) spaceSaving {
	return spaceSaving{heap: make([]ssEntry, 0, capacity), index: make(map[bucket.ID]int, capacity)}
}

func (s *spaceSaving) reset() {
	s.heap = s.heap[:0]
	clear(s.index)
}

// add counts one occurrence of id.
func (s *spaceSaving) add(id bucket.ID) {
	if i, ok := s.index[id]; ok {
		s.heap[i].count++
		s.down(i)
		return
	}
	if len(s.heap) < cap(s.heap) {
		s.heap = append(s.heap, ssEntry{id: id, count: 1})
		s.index[id] = len(s.heap) - 1
		s.up(len(s.heap) - 1)
		return
	}
	least := s.heap[0].count
	delete(s.index, s.heap[0].id)
	s.heap[0] = ssEntry{id: id, count: least + 1, over: least}
	s.index[id] = 0
	s.down(0)
}

func (s *spaceSaving) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.index[s.heap[i].id] = i
	s.index[s.heap[j].id] = j
}

func (s *spaceSaving) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].count <= s.heap[i].count {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *spaceSaving) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.heap[r].count < s.heap[l].count {
			m = r
		}
		if s.heap[i].count <= s.heap[m].count {
			return
		}
		s.swap(i, m)
		i = m
	}
}
