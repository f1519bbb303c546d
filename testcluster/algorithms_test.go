package testcluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// TestAlgorithmsAcrossTheCluster drives one key of each algorithm through
// all five nodes for 10 seconds, far past its limit, in owner mode and in
// gossip mode (but the sliding log, which gossip cannot keep exact):
// owner mode admits at most what the algorithm promises on one node
// (bucket.Bound), gossip mode at most that plus the gossip slack; both
// use at least 95% of the rate.
func TestAlgorithmsAcrossTheCluster(t *testing.T) {
	limits := []bucket.Limit{
		{Rate: 100, Period: time.Second, Burst: 50, Algo: bucket.TokenBucket},
		{Rate: 100, Period: time.Second, Burst: 50, Algo: bucket.LeakyBucket},
		{Rate: 100, Period: time.Second, Burst: 100, Algo: bucket.FixedWindow},
		{Rate: 100, Period: time.Second, Burst: 100, Algo: bucket.SlidingWindowLog},
		{Rate: 100, Period: time.Second, Burst: 100, Algo: bucket.SlidingWindow},
	}
	for _, sync := range []rules.Sync{rules.SyncOwner, rules.SyncGossip} {
		for _, l := range limits {
			if rules.CheckSync(l.Algo, sync) != nil {
				continue
			}
			t.Run(sync.String()+"/"+l.Algo.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c := New(t, 5, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
					c.AwaitConverged(joinBound, c.All()...)
					ctx, stop := context.WithCancel(context.Background())
					start := time.Now()
					ld := driveChecks(ctx, c, func() *cluster.Request {
						return &cluster.Request{Key: "hot", Inline: l, Cost: 1, Sync: sync, SyncSet: true}
					}, c.All()...)
					time.Sleep(10 * time.Second)
					stop()
					ld.wg.Wait()
					elapsed := time.Since(start)
					bound := bucket.Bound(l, elapsed)
					if sync == rules.SyncGossip {
						perNode := float64(ld.total.Load()) / 5 / elapsed.Seconds()
						bound += gossipSlack(5, perNode, 2*syncInterval, l.Burst)
					}
					rate := int64(float64(l.Rate) * elapsed.Seconds())
					got := ld.admitted.Load()
					t.Logf("%d checks, %d admitted; rate × elapsed %d, bound %d", ld.total.Load(), got, rate, bound)
					if ld.failed.Load() != 0 || ld.fallbacks.Load() != 0 {
						t.Fatalf("%d failed checks, %d fallbacks on a healthy cluster", ld.failed.Load(), ld.fallbacks.Load())
					}
					if got > bound || got < rate*95/100 {
						t.Fatalf("admitted %d, want at most %d and at least 95%% of %d", got, bound, rate)
					}
				})
			})
		}
	}
}

// TestLeakyWaitsAcrossTheCluster: callers on every node wait on one
// leaky-bucket key in owner mode; the owner queues them all, so the
// releases, whatever node they happen on, are spaced exactly one drain
// interval apart, and none queue deeper than the bucket.
func TestLeakyWaitsAcrossTheCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := bucket.Limit{Rate: 10, Period: time.Second, Burst: 20, Algo: bucket.LeakyBucket}
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		start := time.Now()
		var mu sync.Mutex
		var released []time.Duration
		var refused, failed int
		var wg sync.WaitGroup
		for _, i := range c.All() {
			node := c.Node(i)
			for range 2 {
				wg.Go(func() {
					for ctx.Err() == nil {
						req := &cluster.Request{Key: "api", Inline: l, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
						res, err := node.Wait(ctx, req, 3*time.Second)
						mu.Lock()
						switch {
						case err != nil:
							if ctx.Err() == nil {
								failed++
							}
						case res.Allowed:
							released = append(released, time.Since(start))
						default:
							refused++
						}
						mu.Unlock()
						if err == nil && !res.Allowed {
							time.Sleep(res.RetryAfter)
						}
					}
				})
			}
		}
		wg.Wait()
		slices.Sort(released)
		t.Logf("%d released over %v, %d refused (queue full), %d failed", len(released), time.Since(start), refused, failed)
		if failed != 0 || len(released) < 90 {
			t.Fatalf("%d failed, %d released; want none failed and about 100", failed, len(released))
		}
		for i := 1; i < len(released); i++ {
			if gap := released[i] - released[i-1]; gap < 100*time.Millisecond {
				t.Fatalf("releases %d and %d only %v apart, want ≥ 100ms: %v", i-1, i, gap, released)
			}
		}
	})
}

// TestAutoKeepsTheLogOnItsOwner: in a cluster small enough for auto mode
// to gossip, a sliding-log key is still decided by its owner.
func TestAutoKeepsTheLogOnItsOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3)
		c.AwaitConverged(joinBound, c.All()...)
		l := bucket.Limit{Rate: 5, Period: time.Minute, Burst: 5, Algo: bucket.SlidingWindowLog}
		admitted := 0
		for i := range 15 {
			res, err := c.Node(i%3).Check(context.Background(), &cluster.Request{Key: "k", Inline: l, Cost: 1})
			if err != nil || res.Sync != rules.SyncOwner || res.Owner == "" {
				t.Fatalf("check %d: %+v %v; want decided by the owner", i, res, err)
			}
			if res.Allowed {
				admitted++
			}
		}
		if admitted != 5 {
			t.Fatalf("%d admitted through three nodes, want 5", admitted)
		}
	})
}
