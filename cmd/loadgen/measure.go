package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

func percentiles(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := min(int(math.Ceil(q*float64(len(lat))))-1, len(lat)-1)
		return float64(lat[max(i, 0)]) / float64(time.Millisecond)
	}
	return Latency{P50: at(0.5), P90: at(0.9), P99: at(0.99), P999: at(0.999), Max: at(1)}
}

func exactness(admitted map[string]int64, l bucket.Limit, elapsed time.Duration) Exactness {
	bound := bucket.Bound(l, elapsed)
	e := Exactness{Bound: bound, KeysSeen: len(admitted)}
	for k, n := range admitted {
		r := float64(n) / float64(bound)
		if r > e.WorstRatio {
			e.WorstRatio, e.WorstKey = r, k
		}
		if n > bound {
			e.Over++
		}
	}
	return e
}

func view(cfg Config, l bucket.Limit) ConfigView {
	loop := "closed"
	if cfg.Open {
		loop = "open"
	}
	return ConfigView{
		Targets: cfg.Targets, Loop: loop, Rate: cfg.Rate, Concurrency: cfg.Concurrency,
		Duration: cfg.Duration.Seconds(), Keys: cfg.Keys, Dist: cfg.Dist, Rule: cfg.Rule,
		Limit: limitView(l), Sync: cfg.Sync,
		Op: cfg.Op, Batch: cfg.Batch, Format: cfg.Format,
	}
}

// limitView describes a limit for the report.
func limitView(l bucket.Limit) string {
	switch {
	case l.Algo.Windowed():
		return fmt.Sprintf("%d per %v, %v", l.Rate, l.Period, l.Algo)
	case l.Algo == bucket.LeakyBucket:
		return fmt.Sprintf("%d per %v, leaky_bucket of depth %d", l.Rate, l.Period, l.Burst)
	}
	return fmt.Sprintf("%d per %v, burst %d", l.Rate, l.Period, l.Burst)
}

// progress prints a line a second until the returned func is called.
func progress(w io.Writer, start time.Time, requests, decisions, errs *atomic.Int64) func() {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := requests.Load()
				fmt.Fprintf(w, "%5.1fs  %8d requests  %7d/s  %9d decisions  %d errors\n",
					time.Since(start).Seconds(), n, n-last, decisions.Load(), errs.Load())
				last = n
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// summary is the human-readable result.
func summary(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s loop, %s, %d keys (%s), %s, %.1fs\n", r.Config.Loop, r.Config.Op, r.Config.Keys, r.Config.Dist, r.Config.Limit, r.Elapsed)
	fmt.Fprintf(&b, "requests   %d (%.0f/s), decisions %d (%.0f/s): %d allowed, %d denied; %d errors, %d late, %d fallbacks\n",
		r.Requests, r.RequestsPS, r.Decisions, r.DecisionsPS, r.Allowed, r.Denied, r.Errors, r.Late, r.Fallbacks)
	fmt.Fprintf(&b, "generator  %.0f%% of the machine (%d CPUs)\n", 100*r.GeneratorCPU, runtime.NumCPU())
	fmt.Fprintf(&b, "latency    p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	fmt.Fprintf(&b, "exactness  bound %d per key; worst %.4f of it (%s); %d of %d keys over\n",
		r.Exactness.Bound, r.Exactness.WorstRatio, r.Exactness.WorstKey, r.Exactness.Over, r.Exactness.KeysSeen)
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", r.FirstError)
	}
	return b.String()
}
