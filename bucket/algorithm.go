package bucket

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Algorithm is how a limit counts. The zero value is TokenBucket.
type Algorithm uint8

// The algorithms. Each admits at most Limit.Rate per Limit.Period over
// time; they differ in what they allow within one period.
const (
	// TokenBucket holds up to Burst tokens and refills continuously at
	// Rate per Period: bursts of up to Burst, then the rate.
	TokenBucket Algorithm = iota
	// LeakyBucket is a bucket of depth Burst that drains continuously at
	// Rate per Period. A check is admitted if it fits in the bucket (the
	// same count as TokenBucket); a wait (State.QueueN) is released when
	// everything queued before it has drained, so waiting callers are
	// spaced evenly at the rate.
	LeakyBucket
	// FixedWindow counts up to Rate per window aligned to multiples of
	// Period; up to 2·Rate can pass within one Period that straddles a
	// boundary.
	FixedWindow
	// SlidingWindowLog remembers every admission for one Period: exactly
	// Rate over every window of length Period.
	SlidingWindowLog
	// SlidingWindow weighs the previous aligned window by the part
	// of it still inside the sliding window, plus the current window.
	SlidingWindow
)

var algorithmNames = []string{
	TokenBucket:      "token_bucket",
	LeakyBucket:      "leaky_bucket",
	FixedWindow:      "fixed_window",
	SlidingWindowLog: "sliding_window_log",
	SlidingWindow:    "sliding_window",
}

// MaxLogRate bounds Limit.Rate for SlidingWindowLog, whose memory per key
// grows with the admissions of the last Period: at most 16 bytes per
// admission (fewer when admissions share a nanosecond), so 1.6 MB for one
// key at this bound.
const MaxLogRate = 100_000

// String returns the algorithm's name as written in rules and requests.
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("Algorithm(%d)", a)
}

// Valid reports whether a is one of the algorithms.
func (a Algorithm) Valid() bool { return int(a) < len(algorithmNames) }

// Windowed reports whether the algorithm counts in windows (it has no
// burst and no reservations) rather than holding tokens.
func (a Algorithm) Windowed() bool { return a >= FixedWindow && a.Valid() }

// Bound returns the most that one key can be admitted over any interval
// of length d, by what each algorithm promises on a single decider:
//   - the token and leaky buckets: Burst + ⌊Rate·d/Period⌋;
//   - the sliding log: Rate per window of one Period, and ⌊d/Period⌋+1
//     such windows cover the interval;
//   - fixed windows and the sliding counter: Rate per aligned window, and
//     the interval meets at most ⌊d/Period⌋+2 of them.
func Bound(l Limit, d time.Duration) int64 {
	d = max(d, 0)
	windows := uint64(d / l.Period)
	switch {
	case !l.Algo.Windowed():
		hi, lo := bits.Mul64(uint64(d), uint64(l.Rate))
		if hi >= uint64(l.Period) {
			return math.MaxInt64
		}
		q, _ := bits.Div64(hi, lo, uint64(l.Period))
		return addSat(l.Burst, q)
	case l.Algo == SlidingWindowLog:
		return mulSat(l.Rate, windows+1)
	default:
		return mulSat(l.Rate, windows+2)
	}
}

// addSat returns a+b, or MaxInt64 if that does not fit; a ≥ 0.
func addSat(a int64, b uint64) int64 {
	if b > uint64(math.MaxInt64-a) {
		return math.MaxInt64
	}
	return a + int64(b)
}

// mulSat returns a·b, or MaxInt64 if that does not fit; a ≥ 0.
func mulSat(a int64, b uint64) int64 {
	hi, lo := bits.Mul64(uint64(a), b)
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}
