package bucket

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// ID names one bucket in a Store.
type ID struct {
	// Rule is the name of a named rule, or "" for an inline limit.
	Rule string
	// Inline is the limit of an inline rule; it is part of the identity so
	// that callers using different inline limits on one key do not share a
	// bucket. It is the zero Limit for named rules, whose buckets keep their
	// state when the rule is edited.
	Inline Limit
	// Key is the caller's key within the rule.
	Key string
}

// StoreConfig configures a Store. Zero fields mean defaults.
type StoreConfig struct {
	// MaxKeys bounds the number of buckets held. If zero, defaults to
	// 1,000,000.
	MaxKeys int
	// Shards is the number of independently locked shards, rounded up to a
	// power of two. If zero, defaults to 256.
	Shards int
}

// evictScan is how many entries from the cold end of a shard's LRU list are
// searched for a full bucket before the coldest one is evicted.
const evictScan = 8

// Store maps IDs to buckets. It is safe for concurrent use: IDs are spread
// over shards, each with its own lock, so there is no global lock on the
// check path, and no lock is ever held across I/O.
//
// The store is bounded. A bucket that has refilled completely is the same as
// a new one and is dropped first (by Sweep, and when a shard is at its bound);
// past the bound the least recently used bucket is evicted and counted.
type Store struct {
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	evictions atomic.Uint64
}

type shard struct {
	mu      sync.Mutex // guards the fields below and every entry's fields
	entries map[ID]*entry
	lru     entry // sentinel: lru.next is the most recent, lru.prev the least
	max     int
}

type entry struct {
	id         ID
	limit      Limit
	state      State  // for the bucket algorithms
	win        window // for the windowed ones, else nil
	prev, next *entry
}

// reset makes e a new bucket for l at now: full, or an empty window.
func (e *entry) reset(now time.Time, l Limit) {
	e.limit = l
	if l.Algo.Windowed() {
		e.win, e.state = newWindow(l.Algo), State{}
	} else {
		e.win, e.state = nil, Full(now, l)
	}
}

// use sets the limit e is used with. A change of algorithm, other than
// between the token and leaky buckets (which share their state), starts
// e afresh.
func (e *entry) use(now time.Time, l Limit) {
	if l.Algo != e.limit.Algo && (l.Algo.Windowed() || e.limit.Algo.Windowed()) {
		e.reset(now, l)
	}
	e.limit = l
}

// idle reports whether e at now is the same as a new bucket: full, or a
// window with nothing counted.
func (e *entry) idle(now time.Time) bool {
	_, _, idle := e.level(now)
	return idle
}

// level returns the tokens e holds at now, or for a window the count left
// before the rate, the fractional token, and whether e is idle.
func (e *entry) level(now time.Time) (tokens, frac int64, idle bool) {
	if e.win != nil {
		used := e.win.Used(now, e.limit)
		return e.limit.Rate - used, 0, used == 0
	}
	st := e.state
	st.advance(now.UnixNano(), e.limit)
	return st.Tokens, st.Frac, st.Tokens >= e.limit.Burst
}

func (e *entry) allowN(now time.Time, l Limit, cost int64) Decision {
	if e.win != nil {
		return e.win.AllowN(now, l, cost)
	}
	return e.state.AllowN(now, l, cost)
}

func (e *entry) debitN(now time.Time, l Limit, cost int64) {
	if e.win != nil {
		e.win.DebitN(now, l, cost)
		return
	}
	e.state.DebitN(now, l, cost)
}

// NewStore returns an empty Store.
func NewStore(cfg StoreConfig) *Store {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1_000_000
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 256
	}
	n := 1 << bits.Len(uint(cfg.Shards-1))
	for n > 1 && cfg.MaxKeys/n < evictScan {
		n /= 2 // a tiny bound gets few shards, so it is not rounded away
	}
	s := &Store{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	per, extra := cfg.MaxKeys/n, cfg.MaxKeys%n
	for i := range s.shards {
		sh := &s.shards[i]
		sh.entries = make(map[ID]*entry)
		sh.lru.next, sh.lru.prev = &sh.lru, &sh.lru
		sh.max = per
		if i < extra {
			sh.max++
		}
	}
	return s
}

func (s *Store) shard(id ID) *shard {
	return &s.shards[maphash.String(s.seed, id.Key)&s.mask]
}

// AllowN spends cost from the bucket id if it fits at now; see
// State.AllowN and the window algorithms' AllowN.
func (s *Store) AllowN(now time.Time, id ID, l Limit, cost int64) Decision {
	// The common case, a bucket that exists, without update's closure,
	// and with entry.allowN written out: it is not inlined, and the call
	// costs 5% of a whole Node.Check (221 against 233 ns).
	sh := s.shard(id)
	sh.mu.Lock()
	if e, ok := sh.entries[id]; ok {
		e.use(now, l)
		sh.touch(e)
		var d Decision
		if e.win != nil {
			d = e.win.AllowN(now, l, cost)
		} else {
			d = e.state.AllowN(now, l, cost)
		}
		sh.mu.Unlock()
		return d
	}
	sh.mu.Unlock()
	return s.update(now, id, l, func(e *entry) Decision { return e.allowN(now, l, cost) })
}

// ReserveN reserves cost tokens from the bucket id if they are available
// within maxWait: State.ReserveN for a token bucket, State.QueueN for a
// leaky bucket. A window algorithm reserves nothing: it admits cost only if
// it fits now (see Algorithm.Windowed; callers reject waits on windows).
func (s *Store) ReserveN(now time.Time, id ID, l Limit, cost int64, maxWait time.Duration) Decision {
	return s.update(now, id, l, func(e *entry) Decision {
		switch {
		case e.win != nil:
			return e.win.AllowN(now, l, cost)
		case l.Algo == LeakyBucket:
			return e.state.QueueN(now, l, cost, maxWait)
		}
		return e.state.ReserveN(now, l, cost, maxWait)
	})
}

// RefundN gives back cost reserved tokens to the bucket id. If the bucket is
// gone (evicted, or full and dropped) there is nothing to give back to; a
// window takes nothing back.
func (s *Store) RefundN(now time.Time, id ID, l Limit, cost int64) {
	sh := s.shard(id)
	sh.mu.Lock()
	if e, ok := sh.entries[id]; ok {
		e.use(now, l)
		if e.win == nil {
			e.state.RefundN(now, l, cost)
		}
	}
	sh.mu.Unlock()
}

// DebitN takes cost tokens out of the bucket id, into debt if need be (see
// State.DebitN), or counts cost in a window. A bucket that does not exist
// is created new first.
func (s *Store) DebitN(now time.Time, id ID, l Limit, cost int64) {
	s.update(now, id, l, func(e *entry) Decision {
		e.debitN(now, l, cost)
		return Decision{}
	})
}

// Peek returns the bucket's decision for cost at now without changing it.
func (s *Store) Peek(now time.Time, id ID, l Limit, cost int64) Decision {
	sh := s.shard(id)
	sh.mu.Lock()
	var e entry
	if found, ok := sh.entries[id]; ok {
		e.state, e.limit = found.state, found.limit
		if found.win != nil {
			e.win = found.win.clone()
		}
		e.use(now, l)
	} else {
		e.reset(now, l)
	}
	sh.mu.Unlock()
	return e.allowN(now, l, cost) // on a copy
}

// update runs op on the bucket id, creating it new if absent. A new bucket
// that op leaves as it was (a peek, a denial) is not stored.
func (s *Store) update(now time.Time, id ID, l Limit, op func(*entry) Decision) Decision {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[id]; ok {
		e.use(now, l)
		sh.touch(e)
		return op(e)
	}
	e := &entry{id: id}
	e.reset(now, l)
	d := op(e)
	if e.idle(now) {
		return d
	}
	if len(sh.entries) >= sh.max {
		if !sh.dropFull(now) {
			sh.remove(sh.lru.prev)
			s.evictions.Add(1)
		}
	}
	sh.entries[id] = e
	sh.pushFront(e)
	return d
}

// dropFull removes one full bucket among the coldest few and reports whether
// it found one.
func (sh *shard) dropFull(now time.Time) bool {
	e := sh.lru.prev
	for i := 0; i < evictScan && e != &sh.lru; i++ {
		if e.idle(now) {
			sh.remove(e)
			return true
		}
		e = e.prev
	}
	return false
}

func (sh *shard) touch(e *entry) {
	if sh.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	sh.pushFront(e)
}

func (sh *shard) pushFront(e *entry) {
	e.prev, e.next = &sh.lru, sh.lru.next
	sh.lru.next.prev = e
	sh.lru.next = e
}

func (sh *shard) remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(sh.entries, e.id)
}

// Delete drops the bucket id, so that its key starts again from a full
// bucket, and reports whether the store held it.
func (s *Store) Delete(id ID) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[id]
	if ok {
		sh.remove(e)
	}
	return ok
}

// Sweep drops every bucket that has refilled completely by now and returns
// how many it dropped. It locks one shard at a time, so checks on other
// shards go on meanwhile. Dropping a full bucket changes no decision.
func (s *Store) Sweep(now time.Time) int {
	dropped := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for e := sh.lru.prev; e != &sh.lru; {
			prev := e.prev
			if e.idle(now) {
				sh.remove(e)
				dropped++
			}
			e = prev
		}
		sh.mu.Unlock()
	}
	return dropped
}

// Len returns the number of buckets held.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns how many buckets that were not full have been evicted
// to stay within MaxKeys since the store was made.
func (s *Store) Evictions() uint64 { return s.evictions.Load() }
