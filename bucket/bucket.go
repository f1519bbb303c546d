// Package bucket is sluice's limiter math: exact token buckets and the keyed,
// bounded store that holds them.
//
// A bucket holds up to Burst tokens and gains Rate tokens every Period,
// continuously. A check spends a cost if the bucket holds at least that many
// tokens and spends nothing otherwise. Refill is computed lazily from the time
// elapsed since the bucket was last touched: there are no timers and no
// goroutines. All arithmetic is on integers: whole tokens plus a remainder
// carried in units of 1/Period nanoseconds, with 128-bit intermediates, so
// over any interval of length d a bucket gains exactly
// floor(Rate·d/Period) tokens (plus the carried remainder) and never more.
// This is what makes "admitted ≤ Burst + Rate·window/Period" hold exactly,
// with no floating-point drift.
//
// Every method takes the current time as a parameter; the package never reads
// the clock. A time earlier than the last one seen mints no tokens.
package bucket

import (
	"math"
	"math/bits"
	"time"
)

// MaxTokens bounds Limit.Rate, Limit.Burst and a single cost. It is 2^53, the
// largest integer a JSON number carries exactly.
const MaxTokens = 1 << 53

// minTokens is the deepest debt a bucket may go into (through Reserve).
const minTokens = -(1 << 62)

// maxDuration is returned for waits too long to represent.
const maxDuration = time.Duration(math.MaxInt64)

// Decision is the answer to a check. A denial is a Decision, not an error.
type Decision struct {
	// Allowed reports whether the cost was spent.
	Allowed bool
	// Limit is the rule's Rate per Period, for the caller's headers.
	Limit int64
	// Remaining is the number of whole tokens left after the check (never
	// negative, even when the bucket is in debt).
	Remaining int64
	// ResetAfter is the time until the bucket is full again.
	ResetAfter time.Duration
	// RetryAfter is the time until the cost would fit; 0 when allowed.
	RetryAfter time.Duration
	// Wait is, for an allowed Reserve, the time until the reserved tokens
	// are available. It is 0 for Allow.
	Wait time.Duration
	// TooLarge reports that the cost exceeds the burst, so it can never fit.
	TooLarge bool
	// Granted is, for a lease an owner grants, the tokens reserved for the
	// node that asked (set by the cluster, not by the bucket).
	Granted int64
}

// State is one bucket's mutable state. Its zero value is not meaningful: a
// new bucket starts from Full. State is not safe for concurrent use; Store
// guards each State with its shard's lock.
type State struct {
	// Tokens is the whole number of tokens held; negative means debt.
	Tokens int64
	// Frac is the fractional token held, in units of 1/Period-in-nanoseconds
	// of a token: 0 ≤ Frac < Period.
	Frac int64
	// Last is the Unix nanosecond time the state was advanced to.
	Last int64
}

// Full returns the state of a new bucket at now: full.
func Full(now time.Time, l Limit) State {
	return State{Tokens: l.Burst, Last: now.UnixNano()}
}

// maxReorder is how far before s.Last a time may be and still be taken as
// reordering rather than a clock step; see advance.
const maxReorder = int64(time.Second)

// advance credits the tokens earned since s.Last and moves s.Last to now.
// A now before s.Last credits nothing. If it is less than maxReorder
// before, s.Last stays: concurrent callers read the clock before they take
// the bucket's lock, so their times reach it slightly out of order, and
// moving s.Last back would credit the same interval twice
// (golang.org/x/time/rate does, and mints tokens that way). A larger step
// back is the clock being set back: refill resumes from now, so the bucket
// neither mints tokens nor freezes until the clock catches up.
func (s *State) advance(now int64, l Limit) {
	p := int64(l.Period)
	if s.Frac >= p || s.Frac < 0 {
		s.Frac = 0 // the period changed under this bucket
	}
	elapsed := now - s.Last
	if elapsed > 0 || elapsed < -maxReorder {
		s.Last = now
	}
	if s.Tokens >= l.Burst {
		s.Tokens, s.Frac = l.Burst, 0 // also clamps a burst that was lowered
		return
	}
	if elapsed <= 0 {
		return
	}
	hi, lo := bits.Mul64(uint64(elapsed), uint64(l.Rate))
	lo, carry := bits.Add64(lo, uint64(s.Frac), 0)
	hi += carry
	if hi >= uint64(p) {
		s.Tokens, s.Frac = l.Burst, 0 // quotient ≥ 2^64: certainly full
		return
	}
	whole, frac := bits.Div64(hi, lo, uint64(p))
	if whole >= uint64(l.Burst-s.Tokens) { // Burst-Tokens > 0 and fits: Tokens ≥ minTokens
		s.Tokens, s.Frac = l.Burst, 0
		return
	}
	s.Tokens += int64(whole)
	s.Frac = int64(frac)
}

// until returns the time after which the bucket holds target tokens, or 0 if
// it already does. It rounds up, so at that instant the tokens are there.
func (s *State) until(target int64, l Limit) time.Duration {
	need := target - s.Tokens
	if need <= 0 {
		return 0
	}
	// ceil((need·Period − Frac) / Rate) nanoseconds, in 128 bits.
	r := uint64(l.Rate)
	hi, lo := bits.Mul64(uint64(need), uint64(l.Period))
	lo, borrow := bits.Sub64(lo, uint64(s.Frac), 0)
	hi -= borrow
	lo, carry := bits.Add64(lo, r-1, 0)
	hi += carry
	if hi >= r {
		return maxDuration
	}
	q, _ := bits.Div64(hi, lo, r)
	if q > math.MaxInt64 {
		return maxDuration
	}
	return time.Duration(q)
}

// decision fills in the fields every answer carries.
func (s *State) decision(allowed bool, l Limit) Decision {
	return Decision{
		Allowed:    allowed,
		Limit:      l.Rate,
		Remaining:  max(s.Tokens, 0),
		ResetAfter: s.until(l.Burst, l),
	}
}

// AllowN advances the bucket to now and spends cost tokens if it holds that
// many. A cost of 0 spends nothing and reports whether the bucket is out of
// debt. A cost above l.Burst is denied with TooLarge set.
func (s *State) AllowN(now time.Time, l Limit, cost int64) Decision {
	s.advance(now.UnixNano(), l)
	if cost > l.Burst {
		d := s.decision(false, l)
		d.TooLarge = true
		return d
	}
	if s.Tokens >= cost {
		s.Tokens -= cost
		return s.decision(true, l)
	}
	d := s.decision(false, l)
	d.RetryAfter = s.until(cost, l)
	return d
}

// ReserveN advances the bucket to now and, if cost tokens will be available
// within maxWait, spends them now, possibly into debt, and reports in Wait
// when they are available. Reservations are served in the order they are
// made: each one waits behind the debt of those before it. If the wait would
// exceed maxWait nothing is spent and RetryAfter tells the wait there would
// have been.
func (s *State) ReserveN(now time.Time, l Limit, cost int64, maxWait time.Duration) Decision {
	return s.reserve(now, l, cost, maxWait, false)
}

// QueueN is ReserveN for a leaky bucket of depth l.Burst: cost joins the
// queue if it fits in the bucket (the water queued plus cost stays within
// the depth) and what is queued before it drains within maxWait. Wait is
// when everything queued before it has drained, so callers that queue one
// after another are released evenly spaced, cost·Period/Rate apart. If
// cost does not fit, or would wait longer than maxWait, nothing is queued
// and RetryAfter tells when it would fit, or the wait there would have
// been.
func (s *State) QueueN(now time.Time, l Limit, cost int64, maxWait time.Duration) Decision {
	return s.reserve(now, l, cost, maxWait, true)
}

// reserve is ReserveN, or QueueN if queue is set.
func (s *State) reserve(now time.Time, l Limit, cost int64, maxWait time.Duration, queue bool) Decision {
	s.advance(now.UnixNano(), l)
	if cost > l.Burst {
		d := s.decision(false, l)
		d.TooLarge = true
		return d
	}
	wait := s.until(cost, l)
	if queue {
		if wait > 0 { // no room in the bucket for cost yet
			d := s.decision(false, l)
			d.RetryAfter = wait
			return d
		}
		wait = s.until(l.Burst, l) // everything queued before has drained
	}
	if wait > maxWait || s.Tokens-cost < minTokens {
		d := s.decision(false, l)
		d.RetryAfter = wait
		return d
	}
	s.Tokens -= cost
	d := s.decision(true, l)
	d.Wait = wait
	return d
}

// RefundN advances the bucket to now and gives back cost tokens that were
// reserved but not used, up to the burst.
func (s *State) RefundN(now time.Time, l Limit, cost int64) {
	s.advance(now.UnixNano(), l)
	s.Tokens = min(s.Tokens+cost, l.Burst)
	if s.Tokens == l.Burst {
		s.Frac = 0
	}
}

// DebitN advances the bucket to now and takes cost tokens out of it
// unconditionally, into debt if need be: tokens spent elsewhere (by a peer
// holding a replica of this bucket) that this bucket must account for.
// Refill pays the debt before anything can be spent again.
func (s *State) DebitN(now time.Time, l Limit, cost int64) {
	s.advance(now.UnixNano(), l)
	s.Tokens = max(s.Tokens-min(cost, MaxTokens), minTokens)
}

// FullAt reports whether the bucket has refilled completely by now, without
// changing it. A full bucket is indistinguishable from a new one.
func (s State) FullAt(now time.Time, l Limit) bool {
	s.advance(now.UnixNano(), l)
	return s.Tokens >= l.Burst
}

// TokensAt returns the whole tokens the bucket holds at now (negative in
// debt), without changing it.
func (s State) TokensAt(now time.Time, l Limit) int64 {
	s.advance(now.UnixNano(), l)
	return s.Tokens
}
