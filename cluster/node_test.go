package cluster

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

func inline(key string, rate int64, period time.Duration, burst int64) *Request {
	return &Request{Key: key, Inline: bucket.Limit{Rate: rate, Period: period, Burst: burst}, Cost: 1}
}

func newNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readyNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n := newNode(t, cfg)
	n.SetRules(&rules.Set{})
	return n
}

// TestExactUnderConcurrency drives one key from 16 goroutines, each checking
// at its own irregular pace, for 60 virtual seconds, and checks the
// promise: admitted ≤ burst + rate·elapsed, with every token used.
func TestExactUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := readyNode(t, Config{})
		const rate, burst = 50, 20
		req := inline("hot", rate, time.Second, burst)
		start := time.Now()
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				step := time.Duration(3+g) * time.Millisecond
				for time.Since(start) < time.Minute {
					res, err := n.Check(context.Background(), req)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						admitted.Add(1)
					}
					time.Sleep(step)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		bound := burst + int64(rate*elapsed.Seconds())
		got := admitted.Load()
		if got > bound {
			t.Fatalf("admitted %d > bound %d over %v", got, bound, elapsed)
		}
		// Demand is ~3,000/s against 50/s: all but the last token's worth of
		// refill must have been used.
		if got < bound-1 {
			t.Fatalf("admitted %d, want the whole bound %d: tokens were lost", got, bound)
		}
	})
}

// TestClockStepBackwardMintsNothing steps an injected wall clock back an hour
// and forward again: the bucket earns only for time that really passed.
func TestClockStepBackwardMintsNothing(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	n := readyNode(t, Config{Now: func() time.Time { return now }})
	req := inline("k", 1, time.Second, 1)
	check := func() bool {
		res, err := n.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res.Allowed
	}
	if !check() {
		t.Fatal("first check denied")
	}
	now = now.Add(-time.Hour)
	if check() {
		t.Fatal("a step back minted a token")
	}
	now = now.Add(999 * time.Millisecond)
	if check() {
		t.Fatal("a token before a full period had passed")
	}
	now = now.Add(time.Millisecond)
	if !check() {
		t.Fatal("no token after a full period")
	}
}

func TestNotReadyBeforeRules(t *testing.T) {
	n := newNode(t, Config{})
	if n.Ready() {
		t.Fatal("ready with no rules loaded")
	}
	if _, err := n.Check(context.Background(), inline("k", 1, time.Second, 1)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("check before rules: %v, want ErrNotReady", err)
	}
	n.SetRules(&rules.Set{})
	if !n.Ready() {
		t.Fatal("not ready after SetRules")
	}
}

func TestRuleEditKeepsBucketState(t *testing.T) {
	n := readyNode(t, Config{})
	set := func(doc string) {
		s, err := rules.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		n.SetRules(s)
	}
	set("rules: [{name: r, limit: 5, period: 1h}]")
	req := &Request{Rule: "r", Key: "k", Cost: 5}
	if res, _ := n.Check(context.Background(), req); !res.Allowed {
		t.Fatalf("spend the burst: %+v", res)
	}
	set("rules: [{name: r, limit: 10, period: 1h}]") // a higher limit is no fresh burst
	req.Cost = 1
	if res, _ := n.Check(context.Background(), req); res.Allowed {
		t.Fatalf("editing the rule refilled the bucket: %+v", res)
	}
}

func TestRunSweepsFullBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := readyNode(t, Config{SweepInterval: time.Second, Metrics: reg})
		for _, k := range []string{"a", "b", "c"} {
			n.Check(context.Background(), inline(k, 10, 100*time.Millisecond, 10))
		}
		n.Check(context.Background(), inline("slow", 1, time.Hour, 1))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- n.Run(ctx) }()
		time.Sleep(time.Second)
		synctest.Wait() // the sweep at 1s has run
		if got := n.replicas.store(rules.SyncAuto).Len(); got != 1 {
			t.Fatalf("%d buckets after the sweep, want 1 (the slow one)", got)
		}
		if got := testutil.ToFloat64(n.metrics.swept); got != 3 {
			t.Fatalf("swept counter %v, want 3", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestMetricsCountDecisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := readyNode(t, Config{Metrics: reg})
	for range 3 {
		n.Check(context.Background(), inline("k", 2, time.Hour, 2))
	}
	within := counterValue(t, reg, "sluice_checks_total", "inline", "auto", "within_limit")
	over := counterValue(t, reg, "sluice_checks_total", "inline", "auto", "over_limit")
	near := counterValue(t, reg, "sluice_near_limit_total", "inline", "auto")
	if within != 2 || over != 1 || near != 1 {
		t.Fatalf("within %v over %v near %v; want 2 1 1", within, over, near)
	}
	if c, err := testutil.GatherAndCount(reg, "sluice_store_keys"); err != nil || c != 5 { // one per store
		t.Fatalf("sluice_store_keys: %d series, %v", c, err)
	}
}

func BenchmarkCheck(b *testing.B) {
	n := readyNode(b, Config{})
	req := inline("user:12345", 1_000_000_000, time.Second, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n.Check(ctx, req)
	}
}

// TestStreamedRingKeyMatches checks that the streamed digest places a key
// exactly where hashing the whole ring key does.
func TestStreamedRingKeyMatches(t *testing.T) {
	r, err := ring.New([]string{"a", "b", "c", "d"}, ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	topo := &topology{ring: r}
	for i := range 2000 {
		id := bucket.ID{Rule: "r" + strconv.Itoa(i%7), Key: "k" + strconv.Itoa(i)}
		if i%3 == 0 {
			id = bucket.ID{Inline: bucket.Limit{Rate: int64(i), Period: time.Second, Burst: 3}, Key: "k" + strconv.Itoa(i)}
		}
		if got, want := topo.ownerOf(id), r.OwnerBytes(ringKey(nil, id)); got != want {
			t.Fatalf("%+v: streamed owner %s, whole-key owner %s", id, got, want)
		}
	}
}

// TestShadowNode: a node in shadow mode allows every check and counts the
// ones its limits would have denied.
func TestShadowNode(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := readyNode(t, Config{Shadow: true, Metrics: reg})
	denied := 0
	for range 5 {
		res, err := n.Check(context.Background(), inline("k", 2, time.Hour, 2))
		if err != nil || !res.Allowed || !res.Shadow {
			t.Fatalf("%+v %v", res, err)
		}
		if res.ShadowDenied {
			denied++
		}
	}
	if denied != 3 {
		t.Fatalf("%d shadow denials, want 3", denied)
	}
	if got := counterValue(t, reg, "sluice_shadow_allowed_total", "inline"); got != 3 {
		t.Fatalf("sluice_shadow_allowed_total %v, want 3", got)
	}
	if got := counterValue(t, reg, "sluice_checks_total", "inline", "auto", "over_limit"); got != 3 {
		t.Fatalf("over_limit %v, want 3: shadow checks are counted as decided", got)
	}
}

// counterValue returns the counter name whose label values are exactly
// the ones given (in any order) from reg; 0 if there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for _, l := range m.GetLabel() {
				if !slices.Contains(values, l.GetValue()) {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// BenchmarkCheckDenied checks a key that is always denied: the path that
// counts the top denied keys.
func BenchmarkCheckDenied(b *testing.B) {
	n := readyNode(b, Config{})
	req := inline("user:12345", 1, time.Hour, 1)
	ctx := context.Background()
	n.Check(ctx, req)
	b.ReportAllocs()
	for b.Loop() {
		n.Check(ctx, req)
	}
}
