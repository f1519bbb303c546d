package cluster

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestRateRing runs the ring through timelines of samples at fixed
// instants and checks the per-second counts it reports.
func TestRateRing(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0) // the start of a second
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type sample struct {
		at     time.Time
		totals rateTotals
	}
	tests := []struct {
		name    string
		samples []sample
		end     time.Time
		// last are the newest counts (checks, denied, fallbacks), oldest first.
		last [][3]uint64
	}{
		{name: "no sample", end: time.Time{}},
		{name: "one sample is a baseline", samples: []sample{{at(300 * time.Millisecond), rateTotals{5, 1, 0}}},
			end: t0, last: [][3]uint64{{0, 0, 0}}},
		{name: "a sample a second", samples: []sample{
			{at(300 * time.Millisecond), rateTotals{5, 1, 0}},
			{at(1300 * time.Millisecond), rateTotals{15, 4, 1}},
			{at(2300 * time.Millisecond), rateTotals{16, 4, 3}},
		}, end: at(2 * time.Second), last: [][3]uint64{{0, 0, 0}, {10, 3, 1}, {1, 0, 2}}},
		{name: "a late sample is spread over its seconds", samples: []sample{
			{at(0), rateTotals{0, 0, 0}},
			{at(3900 * time.Millisecond), rateTotals{10, 3, 0}},
		}, end: at(3 * time.Second), last: [][3]uint64{{0, 0, 0}, {3, 1, 0}, {3, 1, 0}, {4, 1, 0}}},
		{name: "a second sample in the same second waits for the next", samples: []sample{
			{at(100 * time.Millisecond), rateTotals{0, 0, 0}},
			{at(1100 * time.Millisecond), rateTotals{2, 0, 0}},
			{at(1900 * time.Millisecond), rateTotals{7, 0, 0}},
			{at(2100 * time.Millisecond), rateTotals{9, 0, 0}},
		}, end: at(2 * time.Second), last: [][3]uint64{{2, 0, 0}, {7, 0, 0}}},
		{name: "a clock that goes back counts nothing twice", samples: []sample{
			{at(5 * time.Second), rateTotals{0, 0, 0}},
			{at(6 * time.Second), rateTotals{4, 0, 0}},
			{at(2 * time.Second), rateTotals{6, 0, 0}},
			{at(7 * time.Second), rateTotals{9, 0, 0}},
		}, end: at(7 * time.Second), last: [][3]uint64{{4, 0, 0}, {5, 0, 0}}},
		{name: "a clock at 1970 or before", samples: []sample{
			{time.Unix(-2, 0), rateTotals{0, 0, 0}},
			{time.Unix(-1, 0), rateTotals{3, 1, 0}},
			{time.Unix(0, 0), rateTotals{5, 1, 1}},
		}, end: time.Unix(0, 0), last: [][3]uint64{{0, 0, 0}, {3, 1, 0}, {2, 0, 1}}},
		{name: "a gap longer than the ring fills it all", samples: []sample{
			{at(0), rateTotals{0, 0, 0}},
			{at(time.Second), rateTotals{1000, 0, 0}},
			{at(601 * time.Second), rateTotals{1600, 0, 0}},
		}, end: at(601 * time.Second), last: [][3]uint64{{1, 0, 0}, {1, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r rateRing
			for _, s := range tt.samples {
				r.observe(s.at, s.totals)
			}
			rs := r.rates()
			if !rs.End.Equal(tt.end) {
				t.Fatalf("end %v, want %v", rs.End, tt.end)
			}
			if len(rs.Checks) != RateSeconds || len(rs.Denied) != RateSeconds || len(rs.Fallbacks) != RateSeconds {
				t.Fatalf("%d, %d, %d seconds; want %d", len(rs.Checks), len(rs.Denied), len(rs.Fallbacks), RateSeconds)
			}
			var got [][3]uint64
			for i := RateSeconds - len(tt.last); i < RateSeconds; i++ {
				got = append(got, [3]uint64{rs.Checks[i], rs.Denied[i], rs.Fallbacks[i]})
			}
			if !slices.Equal(got, tt.last) {
				t.Fatalf("last seconds %v, want %v", got, tt.last)
			}
			if tt.name == "a gap longer than the ring fills it all" {
				for i, c := range rs.Checks {
					if c != 1 {
						t.Fatalf("second %d counts %d: the 1,000 of the first second should be gone", i, c)
					}
				}
			}
		})
	}
}

// TestNodeRates: checks and denials decided by a node appear in its rates
// once their second has passed, also those decided before Run started.
func TestNodeRates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := readyNode(t, Config{})
		n.Check(context.Background(), inline("k", 3, time.Hour, 3))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- n.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		for range 4 {
			n.Check(context.Background(), inline("k", 3, time.Hour, 3))
		}
		time.Sleep(2 * time.Second) // virtual: two samples
		synctest.Wait()
		rs := n.Rates()
		var checks, denied uint64
		for i := range rs.Checks {
			checks += rs.Checks[i]
			denied += rs.Denied[i]
		}
		if checks != 5 || denied != 2 {
			t.Fatalf("rates count %d checks, %d denied; want 5 and 2", checks, denied)
		}
		if st := n.Status(); st.Rates.End.IsZero() || !slices.Equal(st.Rates.Checks, rs.Checks) {
			t.Fatalf("the status carries no rates: %+v", st.Rates)
		}
	})
}
