package cluster

import (
	"context"
	"sync"
	"time"
)

// RateSeconds is how many seconds of per-second counts a node keeps for
// its status page: five minutes.
const RateSeconds = 300

// Rates are this node's checks, denials and fallbacks per second over the
// last RateSeconds seconds, oldest first: element i counts the second that
// starts RateSeconds-i seconds before End. Seconds before the node started
// count zero.
type Rates struct {
	// End is the end of the last whole second counted (zero before the
	// first second has passed).
	End time.Time
	// Checks are checks decided here, Denied those of them denied (shadow
	// denials included), and Fallbacks owner-mode checks decided from
	// this node's fair share because their owner could not be reached.
	Checks, Denied, Fallbacks []uint64
}

// rateTotals are cumulative counts at one instant.
type rateTotals struct{ checks, denied, fallbacks uint64 }

// since returns t minus prev, field by field, never below zero.
func (t rateTotals) since(prev rateTotals) rateTotals {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return rateTotals{sub(t.checks, prev.checks), sub(t.denied, prev.denied), sub(t.fallbacks, prev.fallbacks)}
}

// part returns the share of t that falls in the i-th of n equal seconds:
// the shares of all n sum to t.
func (t rateTotals) part(i, n uint64) rateTotals {
	f := func(v uint64) uint64 { return v*(i+1)/n - v*i/n }
	return rateTotals{f(t.checks), f(t.denied), f(t.fallbacks)}
}

// rateRing keeps per-second counts of the last RateSeconds seconds in a
// ring, from the node's cumulative counters sampled about once a second:
// a check costs nothing more than the counters it already adds to. What
// was counted between two samples is spread evenly over the seconds
// between them, so a late sample makes no spike. The zero value is ready;
// it is safe for concurrent use.
type rateRing struct {
	mu      sync.Mutex              // guards the fields below
	slots   [RateSeconds]rateTotals // second s at slot(s)
	started bool                    // a sample has been taken
	last    int64                   // Unix second of the last sample
	prev    rateTotals              // the totals at the last sample
}

// slot returns the index of Unix second s in the ring (also for a clock
// before 1970).
func slot(s int64) int { return int((s%RateSeconds + RateSeconds) % RateSeconds) }

// observe records totals t, read at now. The counts since the last sample
// go to the whole seconds from the last sample's to now's. A sample in
// the same second as the last one, or earlier (the clock went back),
// changes nothing: its counts go to the next sample in a later second.
func (r *rateRing) observe(now time.Time, t rateTotals) {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.started, r.last, r.prev = true, sec, t
		return
	}
	if sec <= r.last {
		return
	}
	d, span := t.since(r.prev), uint64(sec-r.last)
	for s := max(r.last, sec-RateSeconds); s < sec; s++ {
		r.slots[slot(s)] = d.part(uint64(s-r.last), span)
	}
	r.last, r.prev = sec, t
}

// rates returns the counts of the last RateSeconds whole seconds.
func (r *rateRing) rates() Rates {
	rs := Rates{Checks: make([]uint64, RateSeconds), Denied: make([]uint64, RateSeconds), Fallbacks: make([]uint64, RateSeconds)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return rs
	}
	rs.End = time.Unix(r.last, 0)
	for i := range RateSeconds {
		v := r.slots[slot(r.last-RateSeconds+int64(i))]
		rs.Checks[i], rs.Denied[i], rs.Fallbacks[i] = v.checks, v.denied, v.fallbacks
	}
	return rs
}

// rateTotals returns the node's cumulative counts.
func (n *Node) rateTotals() rateTotals {
	checks, denied := n.metrics.totals()
	return rateTotals{checks: checks, denied: denied, fallbacks: n.owners.fallbacks.Load()}
}

// rateLoop samples the node's counters into its rate ring every second
// (New took the first sample, of zero counts).
func (n *Node) rateLoop(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n.rates.observe(n.now(), n.rateTotals())
		}
	}
}

// Rates returns this node's checks, denials and fallbacks per second over
// the last RateSeconds seconds. It does not block on the network.
func (n *Node) Rates() Rates { return n.rates.rates() }
