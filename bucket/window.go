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
//   - FixedWindow: windows aligned to multiples of Period since the Unix
//     epoch. Exact per aligned window; up to 2·Rate can pass within one
//     Period that straddles a boundary.
//   - SlidingLog: every admission is remembered for one Period. Exact over
//     every window of length Period; memory grows with Rate.
//   - SlidingWindow: the previous aligned window's count weighted by the
//     part of it still inside the sliding window, plus the current count
//     (Cloudflare's approximation of the log). Two counters of memory.

// FixedWindow is the state of a fixed-window counter.
type FixedWindow struct {
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

// AllowN admits cost if the current window's count stays within l.Rate.
func (w *FixedWindow) AllowN(now time.Time, l Limit, cost int64) Decision {
	p, t := int64(l.Period), max(now.UnixNano(), w.Start)
	if s := windowStart(t, p); s > w.Start || w.Start == 0 {
		w.Start, w.Count = s, 0
	}
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
	d.Remaining = l.Rate - w.Count
	return d
}

// SlidingLog is the state of an exact sliding-window log: the admissions
// of the last Period, oldest first, with their costs.
type SlidingLog struct {
	Times []int64
	Costs []int64
	Sum   int64 // of Costs
	Last  int64 // latest time seen
}

// AllowN admits cost if the admissions of the last Period (the window
// (now-Period, now]) plus cost stay within l.Rate.
func (g *SlidingLog) AllowN(now time.Time, l Limit, cost int64) Decision {
	p := int64(l.Period)
	t := max(now.UnixNano(), g.Last)
	g.Last = t
	drop := 0
	for drop < len(g.Times) && g.Times[drop] <= t-p {
		g.Sum -= g.Costs[drop]
		drop++
	}
	g.Times, g.Costs = g.Times[drop:], g.Costs[drop:]
	d := Decision{Limit: l.Rate}
	switch {
	case cost > l.Rate:
		d.TooLarge = true
	case g.Sum+cost <= l.Rate:
		if cost > 0 {
			g.Times, g.Costs = append(g.Times, t), append(g.Costs, cost)
			g.Sum += cost
		}
		d.Allowed = true
	default:
		// Wait until enough of the oldest admissions have left the window.
		need, i := g.Sum+cost-l.Rate, 0
		for freed := int64(0); freed < need; i++ {
			freed += g.Costs[i]
		}
		d.RetryAfter = time.Duration(g.Times[i-1] + p - t)
	}
	d.Remaining = l.Rate - g.Sum
	if len(g.Times) > 0 {
		d.ResetAfter = time.Duration(g.Times[len(g.Times)-1] + p - t)
	}
	return d
}

// SlidingWindow is the state of a sliding-window counter.
type SlidingWindow struct {
	Start     int64 // Unix ns at which the current aligned window started
	Cur, Prev int64 // admitted in the current and the previous window
	Last      int64 // latest time seen
}

// AllowN admits cost if Prev·(Period−e)/Period + Cur + cost ≤ l.Rate, e
// being the time elapsed in the current window. The comparison is done
// multiplied out, in 128 bits: no rounding.
func (w *SlidingWindow) AllowN(now time.Time, l Limit, cost int64) Decision {
	p, t := int64(l.Period), max(now.UnixNano(), w.Last)
	w.Last = t
	switch s := windowStart(t, p); {
	case w.Start == 0 || s > w.Start+p:
		w.Start, w.Cur, w.Prev = s, 0, 0
	case s == w.Start+p:
		w.Start, w.Cur, w.Prev = s, 0, w.Cur
	}
	e := t - w.Start
	d := Decision{Limit: l.Rate, ResetAfter: time.Duration(2*p - e)}
	// weighted·p = Prev·(p−e) + (Cur+cost)·p, against Rate·p.
	fits := func(c int64) bool {
		hi1, lo1 := bits.Mul64(uint64(w.Prev), uint64(p-e))
		hi2, lo2 := bits.Mul64(uint64(w.Cur+c), uint64(p))
		lo, carry := bits.Add64(lo1, lo2, 0)
		hi := hi1 + hi2 + carry
		rhi, rlo := bits.Mul64(uint64(l.Rate), uint64(p))
		return hi < rhi || (hi == rhi && lo <= rlo)
	}
	switch {
	case cost > l.Rate:
		d.TooLarge = true
	case fits(cost):
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
	// Whole tokens left at this instant.
	lo, hi := int64(0), l.Rate-w.Cur
	for lo < hi { // largest c with fits(c)
		mid := (lo + hi + 1) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	d.Remaining = max(lo, 0)
	return d
}
