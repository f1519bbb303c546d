package bucket

// Handing buckets between stores: when ownership moves, when auto mode
// switches, and when a store takes over a key another could not hand on.

import "time"

// Entry is one bucket taken out of a Store, to hand to another store.
type Entry struct {
	ID    ID
	Limit Limit
	// Tokens and Frac are the bucket's level at the time it was taken
	// out; see State. For a window, Tokens is the count left before the
	// rate (Rate minus what weighed at that time) and Frac is 0. No time
	// travels with them: the receiver's clock is the only one trusted for
	// refill.
	Tokens int64
	Frac   int64
}

// Take removes the buckets for which move reports true and returns their
// levels at now. Full buckets are dropped, not returned: they carry no
// state. It locks one shard at a time.
func (s *Store) Take(now time.Time, move func(ID) bool) []Entry {
	var out []Entry
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for e := sh.lru.prev; e != &sh.lru; {
			prev := e.prev
			if move(e.id) {
				if tokens, frac, idle := e.level(now); !idle {
					out = append(out, Entry{ID: e.id, Limit: e.limit, Tokens: tokens, Frac: frac})
				}
				sh.remove(e)
			}
			e = prev
		}
		sh.mu.Unlock()
	}
	return out
}

// Levels returns the levels at now of up to max buckets that are not full,
// most recently used first in each shard, without changing the store: a
// copy of its state for a peer that starts from it.
func (s *Store) Levels(now time.Time, max int) []Entry {
	var out []Entry
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for e := sh.lru.next; e != &sh.lru && len(out) < max; e = e.next {
			if tokens, frac, idle := e.level(now); !idle {
				out = append(out, Entry{ID: e.id, Limit: e.limit, Tokens: tokens, Frac: frac})
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// Level returns the tokens bucket id holds at now (for a window, the count
// left before the rate), and whether the store holds it at all.
func (s *Store) Level(now time.Time, id ID) (int64, bool) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[id]
	if !ok {
		return 0, false
	}
	tokens, _, _ := e.level(now)
	return tokens, true
}

// Holds reports whether the store holds bucket id.
func (s *Store) Holds(id ID) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	_, held := sh.entries[id]
	sh.mu.Unlock()
	return held
}

// Seed puts bucket id in at now holding tokens (at most the burst; for a
// window, the count left before the rate), unless the store already holds
// it: a bucket that exists keeps its level. It reports whether it put one
// in. It is how a bucket that takes over from another store that could not
// hand its level over starts from an estimate of it rather than full.
func (s *Store) Seed(now time.Time, id ID, l Limit, tokens int64) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	_, held := sh.entries[id]
	sh.mu.Unlock()
	if held {
		return false
	}
	// Made meanwhile by another caller: Merge keeps the lower level,
	// which errs on the side of the limit.
	return s.Merge(now, Entry{ID: id, Limit: l, Tokens: max(tokens, 0)})
}

// Merge puts a bucket handed over by another store in at now. If the store
// already holds that bucket, the lower of the two levels stays, so a
// handover never mints tokens. It reports whether the level handed over
// was taken.
func (s *Store) Merge(now time.Time, in Entry) bool {
	in.Tokens = min(in.Tokens, in.Limit.Burst)
	if in.Frac < 0 || in.Frac >= int64(in.Limit.Period) {
		in.Frac = 0
	}
	taken := false
	s.update(now, in.ID, in.Limit, func(e *entry) Decision {
		if e.win != nil {
			// A window's count arrives as admitted now: it can only hold
			// back more than the sender would have, never mint.
			if left := in.Limit.Rate - e.win.Used(now, in.Limit); in.Tokens < left {
				e.win.DebitN(now, in.Limit, left-in.Tokens)
				taken = true
			}
			return Decision{}
		}
		st := &e.state
		st.advance(now.UnixNano(), in.Limit)
		if in.Tokens < st.Tokens || (in.Tokens == st.Tokens && in.Frac < st.Frac) {
			st.Tokens, st.Frac = in.Tokens, in.Frac
			taken = true
		}
		return Decision{}
	})
	return taken
}
