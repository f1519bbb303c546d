package bucket

import (
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type admission struct{ t, cost int64 }

// windowTimeline draws a timeline of checks: mostly forward steps, some
// backward (which every algorithm takes as the latest time seen).
func windowTimeline(t *rapid.T, l Limit) (steps []admission) {
	now := t0.UnixNano()
	for range rapid.IntRange(1, 300).Draw(t, "checks") {
		now += rapid.Int64Range(-int64(l.Period)/20, int64(l.Period)/3).Draw(t, "dt")
		steps = append(steps, admission{now, rapid.Int64Range(0, l.Rate+1).Draw(t, "cost")})
	}
	return steps
}

func windowLimit(t *rapid.T) Limit {
	rate := rapid.Int64Range(1, 50).Draw(t, "rate")
	period := time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Hour)).Draw(t, "period"))
	return Limit{Rate: rate, Period: period, Burst: rate} // a window's burst is its rate
}

// checkDefinition runs a random timeline through allow and compares every
// decision with fits, which says from the definition whether cost fits at
// now given the admissions so far (at the times the algorithm took them: a
// time before the latest seen counts as the latest). check, if set, looks
// further at each decision.
func checkDefinition(t *rapid.T, l Limit, allow func(time.Time, int64) Decision,
	fits func(done []admission, now, cost int64) bool, check func(done []admission, now, cost int64, d Decision)) {
	var done []admission
	last := int64(0)
	for i, s := range windowTimeline(t, l) {
		now := max(s.t, last)
		last = now
		want := s.cost <= l.Rate && fits(done, now, s.cost)
		d := allow(time.Unix(0, s.t), s.cost)
		if d.Allowed != want {
			t.Fatalf("check %d: allowed %v, the definition says %v", i, d.Allowed, want)
		}
		if check != nil {
			check(done, now, s.cost, d)
		}
		if want && s.cost > 0 {
			done = append(done, admission{now, s.cost})
		}
	}
}

// sumWhere adds the costs of the admissions for which in holds.
func sumWhere(done []admission, in func(a admission) bool) int64 {
	var sum int64
	for _, a := range done {
		if in(a) {
			sum += a.cost
		}
	}
	return sum
}

// TestFixedWindowMatchesModel: the admissions whose time falls in the same
// aligned window, plus cost, within the rate.
func TestFixedWindowMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := windowLimit(t)
		p := int64(l.Period)
		var w FixedWindowState
		checkDefinition(t, l, func(now time.Time, cost int64) Decision { return w.AllowN(now, l, cost) },
			func(done []admission, now, cost int64) bool {
				return sumWhere(done, func(a admission) bool { return windowStart(a.t, p) == windowStart(now, p) })+cost <= l.Rate
			}, nil)
	})
}

// TestSlidingLogIsExact: the admissions of (now−Period, now] plus cost within
// the rate, so no window of one Period ever holds more; and RetryAfter is
// exactly when a denied check would fit.
func TestSlidingLogIsExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := windowLimit(t)
		p := int64(l.Period)
		var g SlidingLogState
		inWindow := func(done []admission, at int64) int64 {
			return sumWhere(done, func(a admission) bool { return a.t > at-p })
		}
		checkDefinition(t, l, func(now time.Time, cost int64) Decision { return g.AllowN(now, l, cost) },
			func(done []admission, now, cost int64) bool { return inWindow(done, now)+cost <= l.Rate },
			func(done []admission, now, cost int64, d Decision) {
				if !d.Allowed && !d.TooLarge && inWindow(done, now+int64(d.RetryAfter))+cost > l.Rate {
					t.Fatalf("retry after %v, and it still does not fit", d.RetryAfter)
				}
			})
	})
}

// TestSlidingWindowMatchesModel: in exact rationals, prev·(P−e)/P + cur +
// cost ≤ rate.
func TestSlidingWindowMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := windowLimit(t)
		p := int64(l.Period)
		var w SlidingWindowState
		checkDefinition(t, l, func(now time.Time, cost int64) Decision { return w.AllowN(now, l, cost) },
			func(done []admission, now, cost int64) bool {
				start := windowStart(now, p)
				prev := sumWhere(done, func(a admission) bool { return windowStart(a.t, p) == start-p })
				cur := sumWhere(done, func(a admission) bool { return windowStart(a.t, p) == start })
				est := new(big.Rat).Mul(big.NewRat(prev, 1), big.NewRat(p-(now-start), p))
				est.Add(est, big.NewRat(cur+cost, 1))
				return est.Cmp(big.NewRat(l.Rate, 1)) <= 0
			}, nil)
	})
}

// TestWindowErrors measures, over random traffic, the most any window of
// one Period admitted, as a multiple of the rate: 1 for the log (exact),
// up to 2 for fixed windows, in between for the sliding counter.
func TestWindowErrors(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 10}
	worst := func(allow func(now time.Time) bool) float64 {
		var times []int64
		now := t0.UnixNano()
		for i := range 20000 {
			if i%30 == 0 { // bursts of 30 checks, 0.73 periods apart
				now += int64(730 * time.Millisecond)
			}
			if allow(time.Unix(0, now)) {
				times = append(times, now)
			}
		}
		most, j := 0, 0
		for i := range times {
			for times[i]-times[j] >= int64(l.Period) {
				j++
			}
			most = max(most, i-j+1)
		}
		return float64(most) / float64(l.Rate)
	}
	var fw FixedWindowState
	var sl SlidingLogState
	var sw SlidingWindowState
	fixed := worst(func(n time.Time) bool { return fw.AllowN(n, l, 1).Allowed })
	log := worst(func(n time.Time) bool { return sl.AllowN(n, l, 1).Allowed })
	slide := worst(func(n time.Time) bool { return sw.AllowN(n, l, 1).Allowed })
	t.Logf("most admitted in any window of one period, × rate: fixed %.2f, sliding log %.2f, sliding counter %.2f", fixed, log, slide)
	if log != 1 || fixed > 2 || slide > 2 {
		t.Fatalf("fixed %.2f (≤ 2), log %.2f (= 1), sliding counter %.2f (≤ 2)", fixed, log, slide)
	}
}

func BenchmarkWindows(b *testing.B) {
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	for _, c := range []struct {
		name string
		w    window
	}{
		{"fixed", &FixedWindowState{}},
		{"sliding-counter", &SlidingWindowState{}},
		{"sliding-log", &SlidingLogState{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Millisecond)
				c.w.AllowN(now, l, 1)
			}
		})
	}
}

// TestSlidingCounterAgainstLog runs the same random traffic (exponential
// gaps, at 1, 2 and 5 times the rate) through the sliding counter and the
// exact log, and reports how often their decisions differ and the most
// the counter admits in any window of one period. The counter can admit
// more than the log in some windows and less in others; it never admits
// more than the rate in an aligned window, so never more than twice the
// rate in any window.
func TestSlidingCounterAgainstLog(t *testing.T) {
	l := Limit{Rate: 100, Period: time.Second, Burst: 100}
	for _, load := range []float64{1, 2, 5} {
		rng := rand.New(rand.NewPCG(1, uint64(load)))
		var sw SlidingWindowState
		var sl SlidingLogState
		now := t0.UnixNano()
		var differ, admittedSW, admittedSL, checks int
		var times []int64
		for range 200_000 {
			now += int64(rng.ExpFloat64() * float64(l.Period) / (load * float64(l.Rate)))
			a := sw.AllowN(time.Unix(0, now), l, 1).Allowed
			b := sl.AllowN(time.Unix(0, now), l, 1).Allowed
			checks++
			if a != b {
				differ++
			}
			if a {
				admittedSW++
				times = append(times, now)
			}
			if b {
				admittedSL++
			}
		}
		most, j := 0, 0
		for i := range times {
			for times[i]-times[j] >= int64(l.Period) {
				j++
			}
			most = max(most, i-j+1)
		}
		t.Logf("load %.0f× the rate: decisions differ on %.2f%% of %d checks; admitted counter/log %.4f; most in any window %.2f× the rate",
			load, 100*float64(differ)/float64(checks), checks, float64(admittedSW)/float64(admittedSL), float64(most)/float64(l.Rate))
		if most > 2*int(l.Rate) {
			t.Fatalf("the counter admitted %d in one window, more than twice the rate", most)
		}
	}
}

// TestWindowTimelines plays short timelines through each window
// algorithm, from a time aligned to the period, and checks every answer.
func TestWindowTimelines(t *testing.T) {
	ms := time.Millisecond
	T := time.Unix(0, 0).Add(time.Hour)
	type step struct {
		at        time.Duration // after T
		cost      int64
		allowed   bool
		remaining int64
		retry     time.Duration
		tooLarge  bool
	}
	for _, tc := range []struct {
		name  string
		l     Limit
		allow func(time.Time, Limit, int64) Decision
		steps []step
	}{
		{"fixed", Limit{Rate: 3, Period: time.Second, Burst: 3}, new(FixedWindowState).AllowN, []step{
			{0, 1, true, 2, 0, false},
			{0, 2, true, 0, 0, false},
			{500 * ms, 1, false, 0, 500 * ms, false},
			{999 * ms, 1, false, 0, 1 * ms, false},
			{time.Second, 3, true, 0, 0, false}, // a new window: 6 within one second
			{1200 * ms, 4, false, 0, 0, true},
		}},
		{"sliding log", Limit{Rate: 3, Period: time.Second, Burst: 3}, new(SlidingLogState).AllowN, []step{
			{0, 1, true, 2, 0, false},
			{100 * ms, 1, true, 1, 0, false},
			{200 * ms, 1, true, 0, 0, false},
			{500 * ms, 1, false, 0, 500 * ms, false}, // the first leaves at 1s
			{time.Second, 1, true, 0, 0, false},
			{1050 * ms, 2, false, 0, 150 * ms, false}, // the second and third must leave
			{1200 * ms, 2, true, 0, 0, false},
		}},
		{"sliding counter", Limit{Rate: 10, Period: time.Second, Burst: 10}, new(SlidingWindowState).AllowN, []step{
			{0, 10, true, 0, 0, false},
			{1500 * ms, 5, true, 0, 0, false},         // 10 × 0.5 weighs: room for 5
			{1500 * ms, 1, false, 0, 100 * ms, false}, // 10 × 0.4 + 5 + 1 fits at 1.6s
			{1600 * ms, 1, true, 0, 0, false},
			{2 * time.Second, 4, true, 0, 0, false},          // prev 6 weighs fully, 4 fits
			{2 * time.Second, 1, false, 0, 166666667, false}, // 6 × (1 − e) ≤ 5: e ≥ 1/6 s, rounded up
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				d := tc.allow(T.Add(s.at), tc.l, s.cost)
				if d.Allowed != s.allowed || d.Remaining != s.remaining || d.RetryAfter != s.retry || d.TooLarge != s.tooLarge {
					t.Fatalf("step %d (T+%v cost %d): %+v, want allowed=%v remaining=%d retry=%v tooLarge=%v",
						i, s.at, s.cost, d, s.allowed, s.remaining, s.retry, s.tooLarge)
				}
			}
		})
	}
}
