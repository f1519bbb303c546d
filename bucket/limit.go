package bucket

import (
	"fmt"
	"time"
)

// Limit is a rule's numbers and how they are counted: Rate per Period,
// and for the bucket algorithms up to Burst tokens (the depth of a leaky
// bucket). Validate says whether a Limit is one the package may be given;
// the store and the algorithms assume it.
type Limit struct {
	Rate   int64
	Period time.Duration
	Burst  int64
	Algo   Algorithm
}

// MinPeriod is the shortest period a limit may have.
const MinPeriod = time.Millisecond

// MaxPeriod bounds a limit's period. A longer period is almost certainly a
// mistake in the rule (and keeps every duration the API reports finite).
const MaxPeriod = 366 * 24 * time.Hour

// LimitError is a Limit that is not valid. Field names the field at fault:
// "rate", "period", "burst" or "algorithm".
type LimitError struct {
	Field string
	Msg   string
}

func (e *LimitError) Error() string { return e.Field + ": " + e.Msg }

// Validate returns a *LimitError if l is not a limit sluice counts:
// 0 < Rate ≤ MaxTokens (≤ MaxLogRate for SlidingWindowLog), MinPeriod ≤
// Period ≤ MaxPeriod, 0 < Burst ≤ MaxTokens, a known Algo, and Burst =
// Rate for a windowed algorithm. It is the one check of a limit, whether
// it comes from a rules file, a request, a peer or a gossiped replica.
func (l Limit) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &LimitError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case !l.Algo.Valid():
		return bad("algorithm", "unknown algorithm %d", uint8(l.Algo))
	case l.Rate <= 0:
		return bad("rate", "must be a positive integer, got %d", l.Rate)
	case l.Rate > MaxTokens:
		return bad("rate", "must be at most %d, got %d", int64(MaxTokens), l.Rate)
	case l.Algo == SlidingWindowLog && l.Rate > MaxLogRate:
		return bad("rate", "must be at most %d for %v, which keeps every admission of a period, got %d (sliding_window approximates it in two counters)", MaxLogRate, l.Algo, l.Rate)
	case l.Period < MinPeriod:
		return bad("period", "must be at least %v, got %v", MinPeriod, l.Period)
	case l.Period > MaxPeriod:
		return bad("period", "must be at most %v, got %v", MaxPeriod, l.Period)
	case l.Burst <= 0:
		return bad("burst", "must be positive, got %d", l.Burst)
	case l.Burst > MaxTokens:
		return bad("burst", "must be at most %d, got %d", int64(MaxTokens), l.Burst)
	case l.Algo.Windowed() && l.Burst != l.Rate:
		return bad("burst", "must equal the rate for %v, got %d for %d", l.Algo, l.Burst, l.Rate)
	}
	return nil
}
