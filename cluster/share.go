package cluster

import (
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// A node's share of a replica. Between two syncs, every replica of a key
// holds the same tokens, and without a rule each node would spend all of
// them: N replicas would admit N times the last tokens, and at an arrival
// rate far above the limit they would do so every interval. So a node
// that knows others are spending on the key too spends at most its share
// of its replica in each epoch: the tokens the replica held when the epoch
// began, plus what it earns during it, divided by the number of nodes
// spending (this one, and each peer whose totals arrived within the last
// activeEpochs intervals). The shares of one epoch add up to what the
// bucket holds, so nodes no longer spend the same last tokens; a share a
// node does not use stays in the replicas and grows the next epoch's
// shares, so no tokens are lost when demand is uneven. A node that spends
// alone (no peer's totals heard lately) is not held to a share.
//
// Epochs are one sync interval long and fall on a grid every node shares
// (multiples of the interval since the Unix epoch), and each node sends
// its totals at the same point of every epoch (flushPhase). So when an
// epoch begins, every replica has heard what its peers spent in the one
// before, and they all start from the same level, but for what each
// admitted after its flush, which it says at the next one. So a node
// counts each peer as having spent, unsaid, what it spent itself since the
// flush that peer's last totals came from: after the last flush for a
// peer heard from then, and since an earlier one for a peer whose last
// totals were lost; its report, when it comes, is then no surprise. A
// node that has just begun to want a key cannot know yet who else does:
// until a whole interval after its first flush it counts every live member
// as spending, and each one it has not heard from as having spent what it
// did itself. A whole interval, not a fifth of one: a peer's first totals
// can arrive after the next epoch has begun (on a host short of CPU they
// took 10–14 ms, of the 10 ms a flush leaves), and a peer not yet heard
// from and not counted would have spent its first share twice.
//
// A node tells its peers it wants a key even when it admits nothing: each
// check it decides keeps its totals going out, unchanged if nothing was
// admitted, so peers count it among the spenders (an older node reads an
// unchanged total as old news).

// shareEpoch is this node's current epoch of its share of one replica,
// and what it needs to begin the next.
type shareEpoch struct {
	start int64 // Unix ns it began, on the grid
	level int64 // tokens the replica held then, less what peers spent unsaid
	spent int64 // tokens this node admitted since
	over  bool  // a check above the share was admitted in this epoch
	// leveled says level is set: it is taken at the epoch's first check
	// that needs a share.
	leveled bool
	// cum is every token this node admitted from the replica; marks hold
	// it at the last flushes, newest last.
	cum   int64
	marks [activeEpochs + 1]shareMark
}

// shareMark is cum at a flush point.
type shareMark struct{ at, cum int64 }

// activeEpochs is how long, in sync intervals, a peer counts as spending
// on a key after its last totals for it arrived: three, so that one or two
// lost packets do not drop it.
const activeEpochs = 3

// flushPhase is where in each epoch, in fifths of the interval, nodes send
// their totals: late in the epoch, so that most of what it admitted is in
// them, and early enough that they arrive before the next one begins.
const flushPhase = 4

// epochStart returns the start of the epoch that ns falls in.
func (t *totals) epochStart(ns int64) int64 { return ns - ns%t.interval }

// lastFlush returns the last flush point at or before ns.
func (t *totals) lastFlush(ns int64) int64 {
	off := t.interval * flushPhase / 5
	return ns - ((ns-off)%t.interval+t.interval)%t.interval
}

// untilFlush returns how long after ns the next flush point is.
func untilFlush(ns int64, interval time.Duration) time.Duration {
	at := int64(interval) * flushPhase / 5
	d := (at - ns%int64(interval) + int64(interval)) % int64(interval)
	if d == 0 {
		d = int64(interval)
	}
	return time.Duration(d)
}

// mark records cum at the last flush point before ns, if not yet done.
func (e *shareEpoch) mark(fp int64) {
	if last := &e.marks[len(e.marks)-1]; last.at >= fp {
		return
	}
	copy(e.marks[:], e.marks[1:])
	e.marks[len(e.marks)-1] = shareMark{at: fp, cum: e.cum}
}

// since returns what this node admitted after flush point fp (all it has
// admitted if fp is before every mark).
func (e *shareEpoch) since(fp int64) int64 {
	for i := len(e.marks) - 1; i >= 0; i-- {
		if e.marks[i].at != 0 && e.marks[i].at <= fp {
			return e.cum - e.marks[i].cum
		}
	}
	return e.cum
}

// spend decides a check of cost on this node's replica of id in store, at
// most this node's share of it when peers spend on the key too, and
// records what it admitted (or that it wanted the key) for its peers.
// The store is called under k's shard lock: the share and the replica
// move together.
func (t *totals) spend(store *bucket.Store, mode rules.Sync, id bucket.ID, l bucket.Limit, cost int64, now time.Time, members int64) bucket.Decision {
	k := totalKey{mode, id}
	sh := t.shard(&k)
	ns := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := t.record(sh, k, ns)
	r.last, r.limit = ns, l
	if cost == 0 {
		return store.AllowN(now, id, l, cost)
	}
	r.resend = max(r.resend, 1) // wanted: peers count this node as spending
	since := ns - activeEpochs*t.interval
	active := int64(sh.active(k, since))
	spenders := 1 + active
	cold := t.lastFlush(ns-t.interval-t.interval/5) <= r.wanted
	if cold {
		// Less than a flush and a whole interval since this node began to
		// want the key (and a fifth of one for packets in flight): peers
		// that began at the same time may not have said so yet.
		spenders = max(spenders, members)
	}
	e := &r.share
	e.mark(t.lastFlush(ns))
	if start := t.epochStart(ns); start != e.start {
		e.start, e.spent, e.over, e.leveled = start, 0, false, false
	}
	over := false
	if spenders > 1 {
		earned := float64(l.Rate) * float64(ns-e.start) / float64(l.Period)
		if !e.leveled {
			// The epoch's level, taken at its first check that needs it
			// (a node spending alone never does): the replica's now, less
			// what it earned and plus what this node spent since the
			// epoch began, less what peers spent and have not said yet:
			// each, as much as this node spent since the flush its last
			// totals came from; each member not heard from yet, as much
			// as this node spent at all.
			unsaid := (spenders - 1 - active) * e.cum
			for _, p := range sh.in[k] {
				if p.seen >= since {
					unsaid += e.since(t.lastFlush(p.seen))
				}
			}
			e.level = store.Peek(now, id, l, 0).Remaining + e.spent - int64(earned) - unsaid
			e.leveled = true
		}
		avail := min(float64(e.level)+earned, float64(l.Burst))
		if float64(e.spent+cost) > avail/float64(spenders) {
			// Above the share. A cost no share covers (a burst below the
			// number of spenders, or what is left of it) would never
			// pass: such a check is admitted, one per epoch, by the
			// spender whose turn it is (they take turns by name, epoch by
			// epoch), or by any node that does not know the spenders yet,
			// within what the replica holds.
			turn := (e.start/t.interval)%spenders == int64(sh.rank(k, since, t.self))
			// A node still in its cold window that has heard from every
			// live member knows the spenders: it waits for its turn too
			// (each taking the cold pass, they admitted one such check
			// each from the same tokens: 1.25× in the first 100 ms with
			// costs up to a sixth of the burst).
			unknown := cold && active+1 < spenders
			if e.over || float64(cost) <= avail/float64(spenders) || !(unknown || turn) || float64(e.spent+cost) > avail {
				d := store.Peek(now, id, l, cost)
				return bucket.Decision{Limit: d.Limit, ResetAfter: d.ResetAfter, RetryAfter: time.Duration(max(e.start+t.interval-ns, 1))}
			}
			over = true
		}
	}
	d := store.AllowN(now, id, l, cost)
	if d.Allowed {
		e.spent += cost
		e.cum += cost
		e.over = e.over || over
		r.admitted(l, cost, ns)
		// Far from empty (more than half the burst left after it): a
		// total lost on its way costs at most these tokens, and only if
		// the key is later spent to the end; no repair is sent for it.
		r.repair = r.repair && d.Remaining <= l.Burst/2
	}
	return d
}

// rank returns how many of the peers whose totals for k arrived at or
// after since are named before self: its place among the spenders. sh is
// k's shard, locked.
func (sh *totalShard) rank(k totalKey, since int64, self string) int {
	n := 0
	for _, r := range sh.in[k] {
		if r.seen >= since && r.origin < self {
			n++
		}
	}
	return n
}

// active returns the peers whose totals for k arrived at or after since.
// sh is k's shard, locked.
func (sh *totalShard) active(k totalKey, since int64) int {
	n := 0
	for _, r := range sh.in[k] {
		if r.seen >= since {
			n++
		}
	}
	return n
}
