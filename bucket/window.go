package bucket

import (
	"math/bits"
	"time"
)

// Window algorithms count admissions in windows of one Period instead of
// holding tokens. Each admits up to Limit.Rate per window (Burst is not
// used) and, like State, takes now as a parameter; a time earlier than the
// last one seen is taken as that one (concurrent callers read the clock
// before the lock).
//
//   - FixedWindowState: windows aligned to multiples of Period since the
//     Unix epoch. Exact per aligned window; up to 2·Rate can pass within
//     one Period that straddles a boundary.
//   - SlidingLogState: every admission is remembered for one Period. Exact
//     over every window of length Period; memory grows with Rate.
//   - SlidingWindowState: the previous aligned window's count weighted by
//     the part of it still inside the sliding window, plus the current
//     count (Cloudflare's approximation of the log). Two counters of
//     memory.
//
// Each also takes admissions made elsewhere (DebitN: a peer's, in gossip
// mode, or a count handed over), which count at the time they arrive and
// may push the count past Rate; nothing is admitted until it is back
// within.

// window is the state of one window algorithm, as the Store holds it.
type window interface {
	AllowN(now time.Time, l Limit, cost int64) Decision
	DebitN(now time.Time, l Limit, cost int64)
	// Used is the count that weighs against the rate at now.
	Used(now time.Time, l Limit) int64
	clone() window
}

// newWindow returns the empty state of a windowed algorithm.
func newWindow(a Algorithm) window {
	switch a {
	case FixedWindow:
		return &FixedWindowState{}
	case SlidingWindowLog:
		return &SlidingLogState{}
	default:
		return &SlidingWindowState{}
	}
}

// FixedWindowState is the state of a fixed-window counter.
type FixedWindowState struct {
	Start int64 // Unix ns at which the current window started
	Count int64 // admitted in it
}

// windowStart returns the start of the aligned window holding t.
func windowStart(t, p int64) int64 {
	s := t / p * p
	if t < 0 && s != t {
		s -= p
	}
	return s
}

// roll moves the window to the one holding now (or the latest time seen)
// and returns that time. What peers' admissions (DebitN) put past the rate
// is carried into the windows that follow, each absorbing up to the rate:
// the overshoot of one window is taken back from the next, so over many
// windows the count stays exact. On a single node the count never passes
// the rate and nothing is carried.
func (w *FixedWindowState) roll(now time.Time, l Limit) int64 {
	p := int64(l.Period)
	t := max(now.UnixNano(), w.Start)
	if s := windowStart(t, p); s > w.Start || w.Start == 0 {
		carry := int64(0)
		if w.Start != 0 && w.Count > l.Rate {
			if k := (s - w.Start) / p; k <= (w.Count-1)/l.Rate {
				carry = w.Count - k*l.Rate
			}
		}
		w.Start, w.Count = s, max(carry, 0)
	}
	return t
}

// AllowN admits cost if the current window's count stays within l.Rate.
func (w *FixedWindowState) AllowN(now time.Time, l Limit, cost int64) Decision {
	p := int64(l.Period)
	t := w.roll(now, l)
	reset := time.Duration(w.Start + p - t)
	d := Decision{Limit: l.Rate, ResetAfter: reset}
	switch {
	case cost > l.Rate:
		d.TooLarge = true
	case w.Count+cost <= l.Rate:
		w.Count += cost
		d.Allowed = true
	default:
		d.RetryAfter = reset
	}
	d.Remaining = max(l.Rate-w.Count, 0)
	return d
}

// DebitN counts cost admitted elsewhere in the current window.
func (w *FixedWindowState) DebitN(now time.Time, l Limit, cost int64) {
	w.roll(now, l)
	w.Count = min(w.Count+cost, MaxTokens)
}

// Used returns the current window's count.
func (w *FixedWindowState) Used(now time.Time, l Limit) int64 {
	c := *w
	c.roll(now, l)
	return c.Count
}

func (w *FixedWindowState) clone() window { c := *w; return &c }

// SlidingLogState is the state of an exact sliding-window log: the
// admissions of the last Period, oldest first, in a ring. Admissions at
// the same nanosecond share a slot.
type SlidingLogState struct {
	ring []stamp // a power of two long, or empty
	head int     // index of the oldest
	n    int     // slots in use
	Sum  int64   // of the costs in the ring
	Last int64   // latest time seen
}

type stamp struct{ t, cost int64 }

// minRing is the smallest ring a log allocates.
const minRing = 8

func (g *SlidingLogState) at(i int) *stamp { return &g.ring[(g.head+i)&(len(g.ring)-1)] }

// Len returns the number of slots in use.
func (g *SlidingLogState) Len() int { return g.n }

// roll drops the admissions that have left the window ending at now (or
// the latest time seen) and returns that time. A ring that has emptied to
// a quarter gives memory back.
func (g *SlidingLogState) roll(now time.Time, p int64) int64 {
	t := max(now.UnixNano(), g.Last)
	g.Last = t
	for g.n > 0 && g.at(0).t <= t-p {
		g.Sum -= g.at(0).cost
		g.head = (g.head + 1) & (len(g.ring) - 1)
		g.n--
	}
	if len(g.ring) > minRing && g.n <= len(g.ring)/4 {
		g.resize(len(g.ring) / 2)
	}
	return t
}

// push records cost at t, the latest time seen.
func (g *SlidingLogState) push(t, cost int64) {
	g.Sum += cost
	if g.n > 0 {
		if s := g.at(g.n - 1); s.t == t {
			s.cost += cost
			return
		}
	}
	if g.n == len(g.ring) {
		g.resize(max(2*len(g.ring), minRing))
	}
	*g.at(g.n) = stamp{t, cost}
	g.n++
}

func (g *SlidingLogState) resize(size int) {
	ring := make([]stamp, size)
	for i := range g.n {
		ring[i] = *g.at(i)
	}
	g.ring, g.head = ring, 0
}

// AllowN admits cost if the admissions of the last Period (the window
// (now-Period, now]) plus cost stay within l.Rate.
func (g *SlidingLogState) AllowN(now time.Time, l Limit, cost int64) Decision {
	p := int64(l.Period)
	t := g.roll(now, p)
	d := Decision{Limit: l.Rate}
	switch {
	case cost > l.Rate:
		d.TooLarge = true
	case g.Sum+cost <= l.Rate:
		if cost > 0 {
			g.push(t, cost)
		}
		d.Allowed = true
	default:
		// Wait until enough of the oldest admissions have left the window.
		need, i := g.Sum+cost-l.Rate, 0
		for freed := int64(0); freed < need; i++ {
			freed += g.at(i).cost
		}
		d.RetryAfter = time.Duration(g.at(i-1).t + p - t)
	}
	d.Remaining = max(l.Rate-g.Sum, 0)
	if g.n > 0 {
		d.ResetAfter = time.Duration(g.at(g.n-1).t + p - t)
	}
	return d
}

// DebitN records cost admitted elsewhere as admitted at now.
func (g *SlidingLogState) DebitN(now time.Time, l Limit, cost int64) {
	t := g.roll(now, int64(l.Period))
	if cost > 0 && g.Sum < MaxTokens {
		g.push(t, min(cost, MaxTokens-g.Sum))
	}
}

// Used returns the admissions in the window ending at now.
func (g *SlidingLogState) Used(now time.Time, l Limit) int64 {
	t, sum := max(now.UnixNano(), g.Last), g.Sum
	for i := 0; i < g.n && g.at(i).t <= t-int64(l.Period); i++ {
		sum -= g.at(i).cost
	}
	return sum
}

func (g *SlidingLogState) clone() window {
	c := *g
	c.resize(len(g.ring)) // a copy of the ring, for the clone alone
	return &c
}

// SlidingWindowState is the state of a sliding-window counter.
type SlidingWindowState struct {
	Start     int64 // Unix ns at which the current aligned window started
	Cur, Prev int64 // admitted in the current and the previous window
	Last      int64 // latest time seen
}

// roll moves to the aligned window holding now (or the latest time seen)
// and returns the time elapsed in it.
func (w *SlidingWindowState) roll(now time.Time, p int64) int64 {
	t := max(now.UnixNano(), w.Last)
	w.Last = t
	switch s := windowStart(t, p); {
	case s == w.Start+p && w.Start != 0:
		w.Start, w.Cur, w.Prev = s, 0, w.Cur
	case s > w.Start || w.Start == 0:
		// Two windows on, or a window that does not follow on from the
		// last (the rule's period was edited): nothing carries over.
		w.Start, w.Cur, w.Prev = s, 0, 0
	}
	// A period edited longer leaves Start after the aligned start, and
	// t − Start < Period still holds.
	return t - w.Start
}

// fits reports whether Prev·(p−e)/p + Cur + c ≤ rate, multiplied out in
// 128 bits: no rounding.
func (w *SlidingWindowState) fits(c, e, p, rate int64) bool {
	hi1, lo1 := bits.Mul64(uint64(w.Prev), uint64(p-e))
	hi2, lo2 := bits.Mul64(uint64(w.Cur+c), uint64(p))
	lo, carry := bits.Add64(lo1, lo2, 0)
	hi := hi1 + hi2 + carry
	rhi, rlo := bits.Mul64(uint64(rate), uint64(p))
	return hi < rhi || (hi == rhi && lo <= rlo)
}

// AllowN admits cost if Prev·(Period−e)/Period + Cur + cost ≤ l.Rate, e
// being the time elapsed in the current window.
func (w *SlidingWindowState) AllowN(now time.Time, l Limit, cost int64) Decision {
	p := int64(l.Period)
	e := w.roll(now, p)
	d := Decision{Limit: l.Rate, ResetAfter: time.Duration(2*p - e)}
	switch {
	case cost > l.Rate:
		d.TooLarge = true
	case w.fits(cost, e, p, l.Rate):
		w.Cur += cost
		d.Allowed = true
	default:
		// The previous window's weight falls linearly: find when it fits,
		// or the next window if only that frees enough.
		d.RetryAfter = time.Duration(p - e)
		if w.Prev > 0 && w.Cur+cost <= l.Rate {
			// Prev·(p−e')/p ≤ Rate−Cur−cost  ⇔  e' ≥ p − (Rate−Cur−cost)·p/Prev
			room := uint64(l.Rate - w.Cur - cost)
			hi, lo := bits.Mul64(room, uint64(p))
			q, _ := bits.Div64(hi%uint64(w.Prev), lo, uint64(w.Prev))
			if hi/uint64(w.Prev) == 0 && int64(q) < p {
				d.RetryAfter = time.Duration(max(p-int64(q)-e, 1))
			}
		}
	}
	// Whole tokens left at this instant: the largest c that fits.
	lo, hi := int64(0), l.Rate-w.Cur
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if w.fits(mid, e, p, l.Rate) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	d.Remaining = max(lo, 0)
	return d
}

// DebitN counts cost admitted elsewhere in the current window.
func (w *SlidingWindowState) DebitN(now time.Time, l Limit, cost int64) {
	w.roll(now, int64(l.Period))
	w.Cur = min(w.Cur+cost, MaxTokens)
}

// Used returns the weighted count at now, rounded up.
func (w *SlidingWindowState) Used(now time.Time, l Limit) int64 {
	c := *w
	p := int64(l.Period)
	e := c.roll(now, p)
	hi, lo := bits.Mul64(uint64(c.Prev), uint64(p-e))
	lo, carry := bits.Add64(lo, uint64(p-1), 0)
	q, _ := bits.Div64(hi+carry, lo, uint64(p)) // ≤ Prev: no overflow
	return int64(q) + c.Cur
}

func (w *SlidingWindowState) clone() window { c := *w; return &c }
