package bucket

import (
	"fmt"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// windowed is one limit per windowed algorithm: 10 per second.
var windowed = []Limit{
	{Rate: 10, Period: time.Second, Burst: 10, Algo: FixedWindow},
	{Rate: 10, Period: time.Second, Burst: 10, Algo: SlidingWindowLog},
	{Rate: 10, Period: time.Second, Burst: 10, Algo: SlidingWindow},
}

// TestStoreAlgorithmsKeepTheirPromise drives one key of a store far past
// its limit with every algorithm and checks, over the admissions, the
// promise each makes: token and leaky buckets ≤ burst + rate·window over
// every window; fixed windows and the sliding counter ≤ rate per aligned
// window; the log ≤ rate over every window of one period.
func TestStoreAlgorithmsKeepTheirPromise(t *testing.T) {
	for algo := range Algorithm(len(algorithmNames)) {
		t.Run(algo.String(), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				l := Limit{
					Rate:   rapid.Int64Range(1, 30).Draw(t, "rate"),
					Period: time.Duration(rapid.Int64Range(1, 1000).Draw(t, "periodMs")) * time.Millisecond,
					Algo:   algo,
				}
				l.Burst = l.Rate
				if !algo.Windowed() {
					l.Burst = rapid.Int64Range(1, 30).Draw(t, "burst")
				}
				s := NewStore(StoreConfig{})
				id := ID{Rule: "r", Key: "k"}
				var times []int64 // one per admitted unit
				now := t0
				for range 1000 {
					now = now.Add(time.Duration(rapid.Int64Range(0, int64(l.Period)/int64(l.Rate)).Draw(t, "dt")))
					cost := rapid.Int64Range(1, min(l.Burst, l.Rate)).Draw(t, "cost")
					if s.AllowN(now, id, l, cost).Allowed {
						for range cost {
							times = append(times, now.UnixNano())
						}
					}
				}
				p := int64(l.Period)
				for i := range times {
					for j := i; j < len(times); j++ {
						n := int64(j - i + 1)
						span := times[j] - times[i]
						switch {
						case !algo.Windowed():
							if n > l.Burst+span*l.Rate/p { // span·rate < 2^63 here
								t.Fatalf("%v admitted %d in %v, bound %d", algo, n, time.Duration(span), l.Burst+span*l.Rate/p)
							}
						case algo == SlidingWindowLog:
							if span < p && n > l.Rate {
								t.Fatalf("log admitted %d within %v < period", n, time.Duration(span))
							}
						default:
							if windowStart(times[i], p) == windowStart(times[j], p) && n > l.Rate {
								t.Fatalf("%v admitted %d in one aligned window", algo, n)
							}
						}
					}
				}
			})
		})
	}
}

// TestWindowsThroughTheStore: windows are counted, debited, peeked,
// swept and handed over through the same store calls as buckets.
func TestWindowsThroughTheStore(t *testing.T) {
	for _, l := range windowed {
		t.Run(l.Algo.String(), func(t *testing.T) {
			s := NewStore(StoreConfig{})
			id := ID{Rule: "r", Key: "k"}
			start := time.Unix(0, 0).Add(time.Hour) // aligned to the period
			if d := s.AllowN(start, id, l, 11); !d.TooLarge || s.Len() != 0 {
				t.Fatalf("a cost above the rate: %+v, %d keys stored (want 0)", d, s.Len())
			}
			for range 4 {
				s.AllowN(start, id, l, 1)
			}
			s.DebitN(start, id, l, 3) // admitted by a peer
			if d := s.Peek(start, id, l, 0); d.Remaining != 3 {
				t.Fatalf("peek after 4 + 3: %+v, want 3 remaining", d)
			}
			if d := s.Peek(start, id, l, 3); !d.Allowed {
				t.Fatalf("3 more do not fit: %+v", d)
			}
			if d := s.Peek(start, id, l, 4); d.Allowed {
				t.Fatalf("4 more fit: %+v", d)
			}
			// Handed over at start: the receiver holds back as much.
			moved := s.Take(start, func(ID) bool { return true })
			if len(moved) != 1 || moved[0].Tokens != 3 || s.Len() != 0 {
				t.Fatalf("taken %+v, %d left; want one entry with 3 left", moved, s.Len())
			}
			to := NewStore(StoreConfig{})
			to.AllowN(start, id, l, 1)
			if !to.Merge(start, moved[0]) {
				t.Fatal("the receiver, with 9 left, did not take 3 left")
			}
			admitted := 0
			for to.AllowN(start, id, l, 1).Allowed {
				admitted++
			}
			if admitted != 3 {
				t.Fatalf("after the handover %d admitted, want 3", admitted)
			}
			// Two periods later nothing weighs: the key is dropped.
			if n := to.Sweep(start.Add(2 * l.Period)); n != 1 || to.Len() != 0 {
				t.Fatalf("sweep dropped %d, %d left", n, to.Len())
			}
		})
	}
}

// TestFixedWindowCarriesPeersOvershoot: what peers' admissions put past
// the rate in one window is taken from the next ones.
func TestFixedWindowCarriesPeersOvershoot(t *testing.T) {
	l := windowed[0]
	var w FixedWindowState
	start := time.Unix(0, 0).Add(time.Hour)
	w.AllowN(start, l, 8)
	w.DebitN(start, l, 25) // 33 in a window of 10: 23 over
	for i, want := range []int64{33, 23, 13, 3, 0} {
		at := start.Add(time.Duration(i) * time.Second)
		if got := w.Used(at, l); got != want {
			t.Fatalf("window %d: %d counted, want %d", i, got, want)
		}
	}
	// Each window holds back only what is still owed.
	if d := w.AllowN(start.Add(3*time.Second), l, 7); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("third window after: %+v, want 7 admitted of the 10 less 3 carried", d)
	}
}

// TestAlgorithmChangeStartsAfresh: a rule edited to another kind of
// algorithm gets a new bucket; token and leaky buckets share their state.
func TestAlgorithmChangeStartsAfresh(t *testing.T) {
	s := NewStore(StoreConfig{})
	id := ID{Rule: "r", Key: "k"}
	token := Limit{Rate: 10, Period: time.Second, Burst: 10}
	leaky := token
	leaky.Algo = LeakyBucket
	s.AllowN(t0, id, token, 10)
	if d := s.AllowN(t0, id, leaky, 1); d.Allowed {
		t.Fatalf("leaky after token drained the bucket: %+v", d)
	}
	for _, l := range windowed {
		if d := s.AllowN(t0, id, l, 10); !d.Allowed {
			t.Fatalf("%v after another algorithm: %+v, want a fresh window", l.Algo, d)
		}
	}
	if d := s.AllowN(t0, id, token, 10); !d.Allowed {
		t.Fatalf("back to a token bucket: %+v, want a full bucket", d)
	}
}

// TestWindowsSurvivePeriodEdits: a window rule whose period is edited
// keeps counting sensibly: never more than the new limit in a window,
// and never stuck denying.
func TestWindowsSurvivePeriodEdits(t *testing.T) {
	for _, l := range windowed {
		t.Run(l.Algo.String(), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				s := NewStore(StoreConfig{})
				id := ID{Rule: "r", Key: "k"}
				now := time.Unix(0, 0).Add(time.Hour)
				for range 50 {
					l.Period = time.Duration(rapid.Int64Range(1, 20).Draw(t, "periodS")) * time.Second
					now = now.Add(time.Duration(rapid.Int64Range(0, int64(3*l.Period)).Draw(t, "dt")))
					d := s.AllowN(now, id, l, 1)
					if d.Remaining < 0 || d.Remaining > l.Rate || d.RetryAfter < 0 || d.RetryAfter > 2*l.Period {
						t.Fatalf("after a period edit to %v: %+v", l.Period, d)
					}
				}
				// Left alone for two periods, the key admits again.
				now = now.Add(2*l.Period + time.Nanosecond)
				if d := s.AllowN(now, id, l, 1); !d.Allowed {
					t.Fatalf("two periods later: %+v", d)
				}
			})
		})
	}
}

// TestSlidingLogMemoryIsBounded: the ring holds at most the admissions of
// one period and gives memory back when they leave.
func TestSlidingLogMemoryIsBounded(t *testing.T) {
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000, Algo: SlidingWindowLog}
	var g SlidingLogState
	now := t0
	for range 5000 {
		now = now.Add(100 * time.Microsecond)
		g.AllowN(now, l, 1)
	}
	if g.Len() > int(l.Rate) || len(g.ring) > 2*int(l.Rate) {
		t.Fatalf("%d slots in use in a ring of %d, rate %d", g.Len(), len(g.ring), l.Rate)
	}
	for range 20 {
		now = now.Add(l.Period)
		g.AllowN(now, l, 1)
	}
	if len(g.ring) > 2*minRing {
		t.Fatalf("a ring of %d left after the load stopped", len(g.ring))
	}
}

func BenchmarkStoreAlgorithms(b *testing.B) {
	for algo := range Algorithm(len(algorithmNames)) {
		l := Limit{Rate: 1000, Period: time.Second, Burst: 1000, Algo: algo}
		b.Run(algo.String(), func(b *testing.B) {
			s := NewStore(StoreConfig{})
			ids := make([]ID, 1024)
			for i := range ids {
				ids[i] = ID{Rule: "r", Key: fmt.Sprint(i)}
			}
			now := t0
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				s.AllowN(now, ids[i&1023], l, 1)
				i++
			}
		})
	}
}

func TestBound(t *testing.T) {
	l := func(a Algorithm, burst int64) Limit {
		return Limit{Rate: 10, Period: time.Second, Burst: burst, Algo: a}
	}
	for _, c := range []struct {
		l    Limit
		d    time.Duration
		want int64
	}{
		{l(TokenBucket, 5), 2500 * time.Millisecond, 30},
		{l(LeakyBucket, 1), 2500 * time.Millisecond, 26},
		{l(SlidingWindowLog, 10), 2500 * time.Millisecond, 30},
		{l(SlidingWindowLog, 10), 999 * time.Millisecond, 10},
		{l(FixedWindow, 10), 999 * time.Millisecond, 20},
		{l(SlidingWindow, 10), 2 * time.Second, 40},
		{Limit{Rate: MaxTokens, Period: time.Nanosecond, Burst: MaxTokens}, time.Hour, math.MaxInt64},
		{Limit{Rate: MaxTokens, Period: time.Nanosecond, Burst: MaxTokens, Algo: FixedWindow}, time.Hour, math.MaxInt64},
	} {
		if got := Bound(c.l, c.d); got != c.want {
			t.Errorf("Bound(%v %+v, %v) = %d, want %d", c.l.Algo, c.l, c.d, got, c.want)
		}
	}
}
