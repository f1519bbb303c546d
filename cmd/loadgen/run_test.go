package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// serve runs a real node behind the real API.
func serve(t *testing.T) string {
	t.Helper()
	node, err := cluster.New(cluster.Config{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Parse([]byte("rules:\n  - {name: r, limit: 50, period: 1s, burst: 20}\n"))
	if err != nil {
		t.Fatal(err)
	}
	node.SetRules(set)
	srv := httptest.NewServer(transport.NewServer(transport.ServerConfig{Limiter: node, Rules: node, Registerer: prometheus.NewRegistry()}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// serveUnix runs a real node behind the real API on a Unix socket, and
// returns its target.
func serveUnix(t *testing.T) string {
	t.Helper()
	node, err := cluster.New(cluster.Config{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Parse([]byte("rules:\n  - {name: r, limit: 50, period: 1s, burst: 20}\n"))
	if err != nil {
		t.Fatal(err)
	}
	node.SetRules(set)
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewHTTPServer(transport.NewServer(transport.ServerConfig{Limiter: node, Rules: node, Registerer: prometheus.NewRegistry()}), slog.New(slog.DiscardHandler))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return transport.UnixPrefix + path
}

// TestRunCountsAndExactness drives one hot key far past its limit against a
// real node: every decision is counted, and the key's admissions are within
// its bound and close to it.
func TestRunCountsAndExactness(t *testing.T) {
	target := serve(t)
	window := func(a bucket.Algorithm) bucket.Limit {
		return bucket.Limit{Rate: 5, Period: 100 * time.Millisecond, Burst: 5, Algo: a}
	}
	unixTarget := serveUnix(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		unix bool
	}{
		{"closed, named rule", Config{Rule: "r", Concurrency: 4, Op: "check"}, false},
		{"open, inline", Config{Open: true, Rate: 2000, Concurrency: 8, Limit: bucket.Limit{Rate: 50, Period: time.Second, Burst: 20}, Op: "check"}, false},
		{"batches", Config{Rule: "r", Concurrency: 2, Op: "batch", Batch: 10}, false},
		{"batches, msgpack, over a Unix socket", Config{Rule: "r", Concurrency: 2, Op: "batch", Batch: 10, Format: "msgpack"}, true},
		{"checks, msgpack", Config{Concurrency: 4, Limit: bucket.Limit{Rate: 50, Period: time.Second, Burst: 20}, Op: "check", Format: "msgpack"}, false},
		{"leaky bucket, waits", Config{Concurrency: 4, Limit: bucket.Limit{Rate: 50, Period: time.Second, Burst: 5, Algo: bucket.LeakyBucket}, Op: "wait"}, false},
		{"fixed window", Config{Concurrency: 4, Limit: window(bucket.FixedWindow), Op: "check"}, false},
		{"sliding window log", Config{Concurrency: 4, Limit: window(bucket.SlidingWindowLog), Op: "check"}, false},
		{"sliding window", Config{Concurrency: 4, Limit: window(bucket.SlidingWindow), Op: "check"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Targets, cfg.Duration, cfg.Keys, cfg.Dist = []string{target}, time.Second, 1, "hot"
			if tc.unix {
				cfg.Targets = []string{unixTarget}
			}
			if cfg.Limit == (bucket.Limit{}) && cfg.Rule == "" {
				t.Fatal("no limit")
			}
			cfg.Sync = "local"
			if tc.name == "open, inline" {
				cfg.Dist = "hot"
				cfg.Keys = 1
			}
			res, err := run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Decisions != res.Allowed+res.Denied || res.Decisions == 0 {
				t.Fatalf("%+v", res)
			}
			if cfg.Op == "batch" && res.Decisions != res.Requests*10 {
				t.Fatalf("%d decisions for %d batches of 10", res.Decisions, res.Requests)
			}
			e := res.Exactness
			least := 0.8
			if cfg.Limit.Algo.Windowed() {
				// The bound counts a window at either end of the run that
				// the run may barely touch, and the sliding counter
				// admits less than a full window after a full one.
				least = 0.6
			}
			if e.Over != 0 || e.WorstRatio > 1 || e.WorstRatio < least {
				t.Fatalf("exactness %+v: the hot key should be admitted up to, not past, its bound", e)
			}
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P99 {
				t.Fatalf("latency %+v", res.Latency)
			}
		})
	}
}

func TestPercentilesAndFlags(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(lat)
	if p.P50 != 500 || p.P90 != 900 || p.P99 != 990 || p.P999 != 999 || p.Max != 1000 {
		t.Fatalf("%+v", p)
	}
	got := allowedFlags([]byte(`{"results":[{"allowed":true,"limit":1},{"allowed":false},{"allowed":true}]}`))
	if len(got) != 3 || !got[0] || got[1] || !got[2] {
		t.Fatalf("%v", got)
	}
	got, fb := verdicts([]byte("\x81\xa7results\x93\x82\xa7allowed\xc3\xa5limit\x01\x82\xa7allowed\xc2\xa8fallback\xc3\x81\xa7allowed\xc3"), "msgpack")
	if len(got) != 3 || !got[0] || got[1] || !got[2] || fb != 1 {
		t.Fatalf("msgpack: %v, %d fallbacks", got, fb)
	}
}
