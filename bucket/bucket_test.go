package bucket

import (
	"math/big"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var (
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = t0.Add(100 * time.Millisecond)
	t2 = t0.Add(200 * time.Millisecond)
	t3 = t0.Add(300 * time.Millisecond)
	t5 = t0.Add(500 * time.Millisecond)
	t9 = t0.Add(900 * time.Millisecond)
	ta = t0.Add(1000 * time.Millisecond)
	tb = t0.Add(10 * time.Second)
)

type step struct {
	t         time.Time
	cost      int64
	allowed   bool
	remaining int64
	retry     time.Duration
}

// run plays a timeline against one bucket that starts full at t0.
func run(t *testing.T, l Limit, steps []step) {
	t.Helper()
	st := Full(t0, l)
	for i, s := range steps {
		d := st.AllowN(s.t, l, s.cost)
		if d.Allowed != s.allowed || d.Remaining != s.remaining || d.RetryAfter != s.retry {
			t.Fatalf("step %d (t0+%v, cost %d): got allowed=%v remaining=%d retry=%v, want %v %d %v",
				i, s.t.Sub(t0), s.cost, d.Allowed, d.Remaining, d.RetryAfter, s.allowed, s.remaining, s.retry)
		}
		if d.Limit != l.Rate {
			t.Fatalf("step %d: limit %d, want %d", i, d.Limit, l.Rate)
		}
	}
}

func TestAllowTimelines(t *testing.T) {
	tenPerSec := Limit{Rate: 10, Period: time.Second, Burst: 10}
	t.Run("burst then refill", func(t *testing.T) {
		run(t, tenPerSec, []step{
			{t0, 10, true, 0, 0},
			{t0, 1, false, 0, 100 * time.Millisecond},
			{t1, 1, true, 0, 0},
			{t1, 1, false, 0, 100 * time.Millisecond},
			{t3, 2, true, 0, 0},
			{ta, 7, true, 0, 0},
			{tb, 0, true, 10, 0}, // refilled to the burst, no further
		})
	})
	t.Run("denied spends nothing", func(t *testing.T) {
		run(t, tenPerSec, []step{
			{t0, 8, true, 2, 0},
			{t0, 3, false, 2, 100 * time.Millisecond},
			{t0, 2, true, 0, 0},
		})
	})
	t.Run("cost zero peeks", func(t *testing.T) {
		run(t, tenPerSec, []step{
			{t0, 0, true, 10, 0},
			{t0, 10, true, 0, 0},
			{t0, 0, true, 0, 0},
		})
	})
	t.Run("cost above burst never fits", func(t *testing.T) {
		st := Full(t0, tenPerSec)
		d := st.AllowN(tb, tenPerSec, 11)
		if d.Allowed || !d.TooLarge || d.Remaining != 10 {
			t.Fatalf("got %+v, want denied TooLarge with 10 remaining", d)
		}
	})
	t.Run("fractional rate accumulates exactly", func(t *testing.T) {
		// 3 per second: a token every 333,333,333.33 ns.
		l := Limit{Rate: 3, Period: time.Second, Burst: 2}
		third := time.Second / 3 // 333,333,333 ns: not quite a token
		run(t, l, []step{
			{t0, 2, true, 0, 0},
			{t0.Add(third), 1, false, 0, 1},
			{t0.Add(third + 1), 1, true, 0, 0},
			// two more thirds of a second minus 1 ns: the carried remainder
			// makes the next token due at exactly 2/3 s.
			{t0.Add(2*third + 1), 1, true, 0, 0},
		})
	})
	t.Run("burst above rate", func(t *testing.T) {
		run(t, Limit{Rate: 1, Period: time.Second, Burst: 5}, []step{
			{t0, 5, true, 0, 0},
			{t9, 1, false, 0, 100 * time.Millisecond},
			{ta, 1, true, 0, 0},
		})
	})
	t.Run("burst below rate", func(t *testing.T) {
		run(t, Limit{Rate: 100, Period: time.Second, Burst: 1}, []step{
			{t0, 1, true, 0, 0},
			{t0.Add(9 * time.Millisecond), 1, false, 0, time.Millisecond},
			{t0.Add(10 * time.Millisecond), 1, true, 0, 0},
			{tb, 1, true, 0, 0},
		})
	})
}

func TestResetAfter(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 10}
	st := Full(t0, l)
	if d := st.AllowN(t0, l, 0); d.ResetAfter != 0 {
		t.Fatalf("full bucket: reset after %v, want 0", d.ResetAfter)
	}
	if d := st.AllowN(t0, l, 4); d.ResetAfter != 400*time.Millisecond {
		t.Fatalf("4 spent: reset after %v, want 400ms", d.ResetAfter)
	}
	if d := st.AllowN(t1, l, 0); d.ResetAfter != 300*time.Millisecond {
		t.Fatalf("100ms later: reset after %v, want 300ms", d.ResetAfter)
	}
}

func TestClockJumpBackwards(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 10}
	run(t, l, []step{
		{t5, 10, true, 0, 0},
		{t1, 1, false, 0, 100 * time.Millisecond}, // 400 ms back: nothing minted
		{t2, 1, false, 0, 100 * time.Millisecond}, // still before t5: nothing earned
		{t5.Add(100 * time.Millisecond), 1, true, 0, 0},
		{t0, 1, false, 0, 100 * time.Millisecond},
		{t5.Add(time.Second), 9, true, 0, 0}, // earned from the latest time seen
		// A step back of more than a second is the clock being set back:
		// refill resumes from there (not from the latest time seen).
		{t0.Add(-time.Hour), 1, false, 0, 100 * time.Millisecond},
		{t0.Add(-time.Hour + 100*time.Millisecond), 1, true, 0, 0},
	})
}

// TestOutOfOrderTimesMintNothing: concurrent callers read the clock before
// they take the bucket's lock, so their times reach the bucket slightly out
// of order. Each must not make the bucket credit an interval twice.
func TestOutOfOrderTimesMintNothing(t *testing.T) {
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1}
	st := Full(t0, l)
	admitted := 0
	for i := range 1000 { // 1 s of checks every ms, each pair swapped
		now := t0.Add(time.Duration(i^1) * time.Millisecond)
		if st.AllowN(now, l, 1).Allowed {
			admitted++
		}
	}
	// Over 0.999 s: the burst plus 999 tokens.
	if admitted > 1000 {
		t.Fatalf("admitted %d > 1000: reordered times minted tokens", admitted)
	}
}

func TestLimitChangesUnderBucket(t *testing.T) {
	st := Full(t0, Limit{Rate: 10, Period: time.Second, Burst: 10})
	lower := Limit{Rate: 10, Period: time.Second, Burst: 3}
	if d := st.AllowN(t0, lower, 0); d.Remaining != 3 {
		t.Fatalf("after lowering the burst: %d remaining, want 3", d.Remaining)
	}
	st = Full(t0, Limit{Rate: 1, Period: time.Hour, Burst: 2})
	st.AllowN(t0, Limit{Rate: 1, Period: time.Hour, Burst: 2}, 2)
	st.AllowN(t0.Add(59*time.Minute), Limit{Rate: 1, Period: time.Hour, Burst: 2}, 0) // large remainder
	shorter := Limit{Rate: 1, Period: time.Second, Burst: 2}
	if d := st.AllowN(t0.Add(59*time.Minute), shorter, 0); d.RetryAfter != 0 || d.Remaining != 0 {
		t.Fatalf("shorter period: %+v", d)
	}
	if d := st.AllowN(t0.Add(59*time.Minute+time.Second), shorter, 1); !d.Allowed {
		t.Fatalf("shorter period: a token after one new period, got %+v", d)
	}
}

func TestExtremes(t *testing.T) {
	t.Run("tiny rate", func(t *testing.T) {
		l := Limit{Rate: 1, Period: 365 * 24 * time.Hour, Burst: 1}
		st := Full(t0, l)
		st.AllowN(t0, l, 1)
		d := st.AllowN(t0.Add(time.Hour), l, 1)
		if d.Allowed || d.RetryAfter != 365*24*time.Hour-time.Hour {
			t.Fatalf("got %+v", d)
		}
	})
	t.Run("huge rate and burst", func(t *testing.T) {
		l := Limit{Rate: MaxTokens, Period: time.Millisecond, Burst: MaxTokens}
		st := Full(t0, l)
		if d := st.AllowN(t0, l, MaxTokens); !d.Allowed {
			t.Fatalf("got %+v", d)
		}
		// A century of refill at 2^53 per ms overflows 64 bits: must saturate.
		if d := st.AllowN(t0.Add(100*365*24*time.Hour), l, 0); d.Remaining != MaxTokens {
			t.Fatalf("got %+v", d)
		}
		century := t0.Add(100 * 365 * 24 * time.Hour)
		st.AllowN(century, l, MaxTokens)
		if d := st.AllowN(century.Add(time.Nanosecond), l, 0); d.Remaining != MaxTokens/1_000_000 {
			t.Fatalf("1 ns at 2^53/ms: %d remaining, want %d", d.Remaining, MaxTokens/1_000_000)
		}
	})
	t.Run("retry after too long to represent", func(t *testing.T) {
		l := Limit{Rate: 1, Period: maxDuration, Burst: MaxTokens}
		st := Full(t0, l)
		st.AllowN(t0, l, MaxTokens)
		if d := st.AllowN(t0, l, MaxTokens); d.RetryAfter != maxDuration || d.ResetAfter != maxDuration {
			t.Fatalf("got %+v", d)
		}
	})
}

func TestReserve(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 2}
	st := Full(t0, l)
	waits := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i, want := range waits {
		d := st.ReserveN(t0, l, 1, 300*time.Millisecond)
		if !d.Allowed || d.Wait != want {
			t.Fatalf("reservation %d: %+v, want wait %v", i, d, want)
		}
	}
	d := st.ReserveN(t0, l, 1, 300*time.Millisecond)
	if d.Allowed || d.RetryAfter != 400*time.Millisecond {
		t.Fatalf("over max wait: %+v", d)
	}
	// In debt: a plain check waits behind the reservations.
	if d := st.AllowN(t2, l, 1); d.Allowed || d.RetryAfter != 200*time.Millisecond {
		t.Fatalf("check behind reservations: %+v", d)
	}
	st.RefundN(t2, l, 1) // the last waiter gave up
	if d := st.AllowN(t2, l, 1); d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("after refund: %+v", d)
	}
	st.RefundN(tb, l, 100)
	if got := st.TokensAt(tb, l); got != 2 {
		t.Fatalf("refund past burst: %d tokens, want 2", got)
	}
}

// model is the specification: a token bucket on exact rationals.
type model struct {
	tokens *big.Rat
	last   int64
}

func (m *model) allow(now int64, l Limit, cost int64) bool {
	if now > m.last {
		gain := new(big.Rat).SetFrac(big.NewInt(0).Mul(big.NewInt(now-m.last), big.NewInt(l.Rate)), big.NewInt(int64(l.Period)))
		m.tokens.Add(m.tokens, gain)
		if b := new(big.Rat).SetInt64(l.Burst); m.tokens.Cmp(b) > 0 {
			m.tokens = b
		}
		m.last = now
	} else if m.last-now > maxReorder {
		m.last = now // the clock was set back: refill resumes from now
	}
	c := new(big.Rat).SetInt64(cost)
	if cost > l.Burst || m.tokens.Cmp(c) < 0 {
		return false
	}
	m.tokens.Sub(m.tokens, c)
	return true
}

// TestMatchesExactModel checks every decision against exact rational
// arithmetic, over random limits, costs and timelines, including clock jumps
// backwards.
func TestMatchesExactModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := Limit{
			Rate:   rapid.Int64Range(1, 1000).Draw(t, "rate"),
			Period: time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Hour)).Draw(t, "period")),
			Burst:  rapid.Int64Range(1, 1000).Draw(t, "burst"),
		}
		st := Full(t0, l)
		m := model{tokens: new(big.Rat).SetInt64(l.Burst), last: t0.UnixNano()}
		now := t0
		for i := range rapid.IntRange(1, 200).Draw(t, "steps") {
			step := time.Duration(rapid.Int64Range(-int64(l.Period)/10, int64(l.Period)).Draw(t, "dt"))
			now = now.Add(step)
			cost := rapid.Int64Range(0, l.Burst+1).Draw(t, "cost")
			got := st.AllowN(now, l, cost).Allowed
			if want := m.allow(now.UnixNano(), l, cost); got != want {
				t.Fatalf("step %d: allowed=%v, model says %v (state %+v)", i, got, want, st)
			}
		}
	})
}

// TestAdmittedWithinBound drives a bucket far past its limit and checks the
// limiter's promise over every window: admitted ≤ burst + rate·window/period.
func TestAdmittedWithinBound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := Limit{
			Rate:   rapid.Int64Range(1, 50).Draw(t, "rate"),
			Period: time.Duration(rapid.Int64Range(1, 1000).Draw(t, "periodMs")) * time.Millisecond,
			Burst:  rapid.Int64Range(1, 50).Draw(t, "burst"),
		}
		st := Full(t0, l)
		var times []int64 // one entry per admitted token
		now := t0
		for range 2000 {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(l.Period)/int64(l.Rate)).Draw(t, "dt")))
			cost := rapid.Int64Range(1, l.Burst).Draw(t, "cost")
			if st.AllowN(now, l, cost).Allowed {
				for range cost {
					times = append(times, now.UnixNano())
				}
			}
		}
		// Every window [times[i], times[j]] must respect the bound.
		for i := range times {
			for j := i; j < len(times); j++ {
				admitted := big.NewInt(int64(j - i + 1))
				bound := new(big.Int).Mul(big.NewInt(times[j]-times[i]), big.NewInt(l.Rate))
				bound.Quo(bound, big.NewInt(int64(l.Period)))
				bound.Add(bound, big.NewInt(l.Burst))
				if admitted.Cmp(bound) > 0 {
					t.Fatalf("window of %v admitted %v > bound %v", time.Duration(times[j]-times[i]), admitted, bound)
				}
			}
		}
	})
}

func BenchmarkAllowN(b *testing.B) {
	l := Limit{Rate: 1_000_000, Period: time.Second, Burst: 1000}
	st := Full(t0, l)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		st.AllowN(now, l, 1)
	}
}
