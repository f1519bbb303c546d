package bucket

import (
	"math/big"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestLeakyQueueTimeline: waiting callers of a leaky bucket are released
// one drain interval apart, and no more queue than the depth holds.
func TestLeakyQueueTimeline(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 3, Algo: LeakyBucket}
	ms := time.Millisecond
	st := Full(t0, l)
	steps := []struct {
		at      time.Time
		cost    int64
		maxWait time.Duration
		allowed bool
		wait    time.Duration // when allowed
		retry   time.Duration // when denied
	}{
		{t0, 1, time.Second, true, 0, 0},
		{t0, 1, time.Second, true, 100 * ms, 0},
		{t0, 1, time.Second, true, 200 * ms, 0},
		{t0, 1, time.Second, false, 0, 100 * ms}, // the bucket is full: no room
		{t1, 1, 100 * ms, false, 0, 200 * ms},    // room, but released later than max wait
		{t1, 1, time.Second, true, 200 * ms, 0},  // released at t0+300ms
		{t1, 2, time.Second, false, 0, 200 * ms}, // full again: room for 2 in 200ms
		{t5, 2, time.Second, true, 0, 0},         // drained by t0+400ms: at once
		{t5, 1, time.Second, true, 200 * ms, 0},  // behind 2 units
		{t5, 4, time.Second, false, 0, 0},        // deeper than the bucket
	}
	for i, s := range steps {
		d := st.QueueN(s.at, l, s.cost, s.maxWait)
		if d.Allowed != s.allowed || (s.allowed && d.Wait != s.wait) || (!s.allowed && d.RetryAfter != s.retry) {
			t.Fatalf("step %d (t0+%v cost %d): %+v, want allowed=%v wait=%v retry=%v", i, s.at.Sub(t0), s.cost, d, s.allowed, s.wait, s.retry)
		}
	}
	if d := st.QueueN(t5, l, 4, time.Second); !d.TooLarge {
		t.Fatalf("cost above the depth: %+v, want TooLarge", d)
	}
}

// leakyModel is the specification of the leaky bucket as a queue: water
// on exact rationals, draining at the rate; a unit joins if it fits and
// is released when the water before it has drained.
type leakyModel struct {
	water *big.Rat
	last  int64
}

func (m *leakyModel) queue(now int64, l Limit, cost int64, maxWait time.Duration) (bool, time.Duration) {
	drained := new(big.Rat).SetFrac(big.NewInt(0).Mul(big.NewInt(now-m.last), big.NewInt(l.Rate)), big.NewInt(int64(l.Period)))
	m.water.Sub(m.water, drained)
	if m.water.Sign() < 0 {
		m.water.SetInt64(0)
	}
	m.last = now
	if new(big.Rat).Add(m.water, new(big.Rat).SetInt64(cost)).Cmp(new(big.Rat).SetInt64(l.Burst)) > 0 {
		return false, 0
	}
	// wait = ceil(water·Period/Rate) ns
	w := new(big.Rat).Mul(m.water, new(big.Rat).SetFrac(big.NewInt(int64(l.Period)), big.NewInt(l.Rate)))
	q, r := new(big.Int).QuoRem(w.Num(), w.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	wait := time.Duration(q.Int64())
	if wait > maxWait {
		return false, 0
	}
	m.water.Add(m.water, new(big.Rat).SetInt64(cost))
	return true, wait
}

// TestLeakyMatchesModel checks every queueing decision and wait against
// the model, and that released units are spaced by the drain interval.
func TestLeakyMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := Limit{
			Rate:   rapid.Int64Range(1, 1000).Draw(t, "rate"),
			Period: time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Hour)).Draw(t, "period")),
			Burst:  rapid.Int64Range(1, 50).Draw(t, "depth"),
			Algo:   LeakyBucket,
		}
		maxWait := time.Duration(rapid.Int64Range(0, 3*int64(l.Period)).Draw(t, "maxWait"))
		st := Full(t0, l)
		m := leakyModel{water: new(big.Rat), last: t0.UnixNano()}
		now := t0
		var prevRelease time.Time
		var prevCost int64
		for i := range rapid.IntRange(1, 200).Draw(t, "steps") {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(l.Period)/int64(l.Rate)*2).Draw(t, "dt")))
			cost := rapid.Int64Range(1, l.Burst).Draw(t, "cost")
			d := st.QueueN(now, l, cost, maxWait)
			ok, wait := m.queue(now.UnixNano(), l, cost, maxWait)
			if d.Allowed != ok || (ok && d.Wait != wait) {
				t.Fatalf("step %d: %+v, model says allowed=%v wait=%v", i, d, ok, wait)
			}
			if !ok {
				continue
			}
			release := now.Add(d.Wait)
			if !prevRelease.IsZero() {
				// The previous release's units must have drained first
				// (less the rounding of both waits up to a nanosecond).
				gap := release.Sub(prevRelease)
				least := time.Duration(prevCost*int64(l.Period)/l.Rate) - 1
				if gap < least {
					t.Fatalf("step %d: released %v after the previous release of %d, want ≥ %v", i, gap, prevCost, least)
				}
			}
			prevRelease, prevCost = release, cost
		}
	})
}

func BenchmarkQueueN(b *testing.B) {
	l := Limit{Rate: 1_000_000, Period: time.Second, Burst: 1000, Algo: LeakyBucket}
	st := Full(t0, l)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		st.QueueN(now, l, 1, time.Second)
	}
}
