package cluster

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// totals is the bookkeeping of gossip mode. Every node keeps a replica of
// each gossip-mode bucket and decides on it; totals records what this
// node admitted, to tell its peers, and what each peer has said it
// admitted, to apply only what is new.
//
// A node's record of a bucket holds a running total of the tokens it
// admitted, under a generation number. Each sync interval the node sends
// the totals that changed recently (each a few times, so a lost packet is
// repaired by the next), and a receiver debits its replica by the
// difference from the total it last saw for that origin and generation.
//
// A generation lasts at most maxGenAge: then the record is sealed (its
// final total is sent a few more times) and admissions go to a new
// generation, from zero, with a higher number. A record idle for a while is
// dropped, and the next admission starts a new generation too. So a
// receiver that has lost track of an origin (it forgot an idle record, or a
// partition cut it off) and applies a generation's whole total applies at
// most maxGenAge of that origin's admissions. Generations are numbered from
// the node's start time in nanoseconds, so a restarted node's generations
// are newer than its previous life's.
type totals struct {
	seed     maphash.Seed
	shards   [totalShards]totalShard
	gen      atomic.Uint64 // last generation handed out
	interval int64         // the sync interval, ns: an epoch of the share
	self     string        // this node's name, its place among spenders
	sweptIn  int64         // Unix ns flush last dropped forgotten peers' records (flush's alone)
}

const totalShards = 64

type totalShard struct {
	mu  sync.Mutex
	out map[totalKey]*outRecord
	in  map[totalKey][]inRecord // one per origin; a cluster in gossip mode is small
}

// totalKey is a gossip-mode bucket: its store (by mode) and its ID.
type totalKey struct {
	mode rules.Sync
	id   bucket.ID
}

// outRecord is this node's running total for one bucket.
type outRecord struct {
	limit  bucket.Limit
	gen    uint64
	total  int64
	resend int        // flushes that will still carry this total
	repair bool       // send the total once more when it stops changing (see share.spend)
	born   int64      // Unix ns the generation started
	last   int64      // Unix ns of the last check: admitted, or wanted (see share)
	sealed *outRecord // the previous generation, while its final total is sent
	share  shareEpoch // this node's share of the replica (share.go)
	wanted int64      // Unix ns this node began to want the bucket (share.go)
}

// inRecord is the last total seen from one peer for one bucket.
type inRecord struct {
	origin string
	gen    uint64
	total  int64
	seen   int64 // Unix ns it was last heard of
}

const (
	// resends is how many sync intervals carry a sealed generation's
	// final total: a packet lost now is repaired by one of the next. A
	// total in progress goes out at the next flush after each change,
	// and once more at the first flush after it stops changing: totals are
	// cumulative, so each send repairs any lost before it, and the repair
	// covers the last (one send per change, not three).
	resends = 3
	// maxGenAge bounds a generation; see totals.
	maxGenAge = int64(2 * time.Second)
)

func newTotals(self string, startNanos int64, interval time.Duration) *totals {
	c := &totals{seed: maphash.MakeSeed(), interval: int64(interval), self: self}
	c.gen.Store(uint64(max(startNanos, 0)))
	for i := range c.shards {
		c.shards[i].out = make(map[totalKey]*outRecord)
		c.shards[i].in = make(map[totalKey][]inRecord)
	}
	return c
}

func (c *totals) shard(k *totalKey) *totalShard {
	return &c.shards[idHash(c.seed, k.id)%totalShards]
}

// idHash hashes a bucket's rule and key, to pick a shard.
func idHash(seed maphash.Seed, id bucket.ID) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(id.Rule)
	h.WriteByte(0)
	h.WriteString(id.Key)
	return h.Sum64()
}

// add records that this node admitted cost tokens from its replica of id.
func (c *totals) add(mode rules.Sync, id bucket.ID, l bucket.Limit, cost int64, now int64) {
	k := totalKey{mode, id}
	sh := c.shard(&k)
	sh.mu.Lock()
	c.record(sh, k, now).admitted(l, cost, now)
	sh.mu.Unlock()
}

// record returns this node's record of k, made if there is none, in a new
// generation if its own is over maxGenAge old. sh is k's shard, locked.
func (c *totals) record(sh *totalShard, k totalKey, now int64) *outRecord {
	r, ok := sh.out[k]
	switch {
	case !ok:
		r = &outRecord{gen: c.gen.Add(1), born: now, wanted: now}
		sh.out[k] = r
	case now-r.born > maxGenAge && r.sealed == nil:
		old := *r
		old.resend = resends
		*r = outRecord{gen: c.gen.Add(1), born: now, sealed: &old, limit: old.limit, share: old.share, last: old.last, wanted: old.wanted}
	}
	return r
}

// admitted records cost tokens admitted at now.
func (r *outRecord) admitted(l bucket.Limit, cost int64, now int64) {
	r.limit = l
	r.total += cost
	r.resend = 1
	r.repair = true
	r.last = now
}

// flush returns the updates to send now, and drops records that have been
// idle for longer than idle: the next admission starts a new generation.
// Peers' records idle for longer than forget are dropped too.
func (c *totals) flush(now, idle, forget int64, out []totalUpdate) []totalUpdate {
	// Peers' records are looked over a thirtieth of forget apart, not at
	// every flush: there is one per key and peer, and forget is long.
	sweepIn := now-c.sweptIn >= forget/30 || now < c.sweptIn
	if sweepIn {
		c.sweptIn = now
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, r := range sh.out {
			if s := r.sealed; s != nil {
				out = append(out, totalUpdate{Sync: k.mode, ID: k.id, Limit: s.limit, Gen: s.gen, Total: s.total})
				if s.resend--; s.resend <= 0 {
					r.sealed = nil
				}
			}
			switch {
			case r.resend > 0:
				r.resend--
				out = append(out, totalUpdate{Sync: k.mode, ID: k.id, Limit: r.limit, Gen: r.gen, Total: r.total})
			case r.repair:
				r.repair = false
				out = append(out, totalUpdate{Sync: k.mode, ID: k.id, Limit: r.limit, Gen: r.gen, Total: r.total})
			case r.sealed == nil && now-r.last > idle:
				delete(sh.out, k)
			}
		}
		for k, rs := range sh.in {
			if !sweepIn {
				break
			}
			rs = slices.DeleteFunc(rs, func(r inRecord) bool { return now-r.seen > forget })
			if len(rs) == 0 {
				delete(sh.in, k)
			} else {
				sh.in[k] = rs
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// apply takes in a peer's update and returns the tokens that are new: what
// the replica must be debited. An update of an older generation than the
// one seen, or not above the total seen, is old news.
func (c *totals) apply(origin string, u *totalUpdate, now int64) int64 {
	k := totalKey{u.Sync, u.ID}
	sh := c.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.origin(k, origin)
	switch {
	case r == nil:
		sh.in[k] = append(sh.in[k], inRecord{origin: origin, gen: u.Gen, total: u.Total, seen: now})
		return u.Total
	case u.Gen > r.gen:
		r.gen, r.total, r.seen = u.Gen, u.Total, now
		return u.Total
	case u.Gen == r.gen && u.Total > r.total:
		d := u.Total - r.total
		r.total, r.seen = u.Total, now
		return d
	default:
		r.seen = now
		return 0
	}
}

// origin returns the record of origin for k, or nil.
func (sh *totalShard) origin(k totalKey, origin string) *inRecord {
	rs := sh.in[k]
	for i := range rs {
		if rs[i].origin == origin {
			return &rs[i]
		}
	}
	return nil
}

// heard reports whether any peer's total for the bucket is known here: if
// so, this node's replica is already kept in step with its peers.
func (c *totals) heard(mode rules.Sync, id bucket.ID) bool {
	k := totalKey{mode, id}
	sh := c.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.in[k]) > 0
}

// originTotal is a total seen from one origin, as carried in a full state
// exchange with a joining node.
type originTotal struct {
	Origin string `msgpack:"o"`
	Gen    uint64 `msgpack:"g"`
	Total  int64  `msgpack:"t"`
}

// seen returns every total this node knows for the bucket, its own
// included (under self): what a replica's level already accounts for.
func (c *totals) seen(self string, mode rules.Sync, id bucket.ID) []originTotal {
	k := totalKey{mode, id}
	sh := c.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []originTotal
	if r, ok := sh.out[k]; ok {
		out = append(out, originTotal{Origin: self, Gen: r.gen, Total: r.total})
	}
	for _, r := range sh.in[k] {
		out = append(out, originTotal{Origin: r.origin, Gen: r.gen, Total: r.total})
	}
	return out
}

// adopt records totals that a replica level taken from a peer already
// accounts for, so that the same tokens are not debited again when their
// origin's next update arrives. Totals of this node itself are skipped: its
// own record is the authority.
func (c *totals) adopt(self string, mode rules.Sync, id bucket.ID, totals []originTotal, now int64) {
	k := totalKey{mode, id}
	sh := c.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, t := range totals {
		if t.Origin == self || t.Origin == "" {
			continue
		}
		r := sh.origin(k, t.Origin)
		if r == nil {
			sh.in[k] = append(sh.in[k], inRecord{origin: t.Origin, gen: t.Gen, total: t.Total, seen: now})
			continue
		}
		if t.Gen > r.gen || (t.Gen == r.gen && t.Total > r.total) {
			r.gen, r.total, r.seen = t.Gen, t.Total, now
		}
	}
}
