package testcluster

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// routesOf sums sluice_owner_checks_total{route} over the running nodes.
func routesOf(c *Cluster, route string) float64 {
	var n float64
	for _, i := range c.Running() {
		n += c.Counter(i, "sluice_owner_checks_total", route)
	}
	return n
}

// ownerRequests sums what the nodes answered as owners, by op.
func ownerRequests(c *Cluster, op string) float64 {
	var n float64
	for _, i := range c.Running() {
		n += c.Counter(i, "sluice_owner_requests_total", op)
	}
	return n
}

// TestLeasesExact drives one hot key through all five nodes for 60 seconds,
// far past its limit, in owner mode with leases: no more than burst + rate ×
// elapsed is admitted, at least 95% of it is, and most checks at the other
// nodes are decided there, from leases, without a round trip.
func TestLeasesExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithCancel(context.Background())
		start := time.Now()
		l := drive(ctx, c, "hot", c.All()...)
		time.Sleep(time.Minute)
		stop()
		l.wg.Wait()
		bound := exact(time.Since(start))
		got := l.admitted.Load()
		leased, denied, forwarded := routesOf(c, "leased"), routesOf(c, "lease_denied"), routesOf(c, "forwarded")
		t.Logf("%d checks, %d admitted of bound %d (%.1f%%); at non-owners: %.0f from leases, %.0f denied locally, %.0f forwarded; owner answered %.0f checks, %.0f lease requests, %.0f returns",
			l.total.Load(), got, bound, 100*float64(got)/float64(bound), leased, denied, forwarded,
			ownerRequests(c, "check"), ownerRequests(c, "lease"), ownerRequests(c, "return"))
		if got > bound {
			t.Fatalf("admitted %d > bound %d", got, bound)
		}
		if float64(got) < 0.95*float64(bound) {
			t.Fatalf("admitted %d, under 95%% of %d: leased tokens sat idle", got, bound)
		}
		if l.failed.Load() != 0 || l.fallbacks.Load() != 0 {
			t.Fatalf("%d failed, %d fallbacks", l.failed.Load(), l.fallbacks.Load())
		}
		if leased+denied < 10*forwarded {
			t.Fatalf("only %.0f checks decided from leases against %.0f forwarded", leased+denied, forwarded)
		}
	})
}

// TestLeasesZipf drives 100,000 keys, Zipf-distributed, through all five
// nodes: the few hot keys get leases, and every key stays within its own
// bound.
func TestLeasesZipf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		const keys = 100_000
		limit := bucket.Limit{Rate: 20, Period: time.Second, Burst: 10}
		zipf := func(rng *rand.Rand, n uint64) func() uint64 { return rand.NewZipf(rng, 1.2, 1, n-1).Uint64 }
		_, admitted, elapsed := driveKeys(t, c, keys, limit, 20*time.Second, time.Millisecond, zipf)
		bound := limit.Burst + int64(float64(limit.Rate)*elapsed.Seconds())
		hottest, used := slices.Max(admitted), 0
		for k, n := range admitted {
			if n > bound {
				t.Fatalf("key %d: admitted %d > bound %d", k, n, bound)
			}
			if n > 0 {
				used++
			}
		}
		t.Logf("%d keys admitted something; hottest %d of bound %d; %.0f checks from leases, %.0f forwarded",
			used, hottest, bound, routesOf(c, "leased"), routesOf(c, "forwarded"))
		if routesOf(c, "leased") == 0 {
			t.Fatal("no hot key got a lease")
		}
		if float64(hottest) < 0.95*float64(bound) {
			t.Fatalf("the hottest key got %d of %d", hottest, bound)
		}
	})
}

// TestLeaseHolderKilled kills a node while it holds leases on a hot key:
// its unspent tokens never come back (the owner does not mint them again),
// so the limit holds, and the others go on without failures.
func TestLeaseHolderKilled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		res, _ := c.Node(0).Check(context.Background(), &cluster.Request{Key: "hot", Inline: hotLimit, Sync: rules.SyncOwner, SyncSet: true})
		var holder int
		var others []int
		for _, i := range c.All() {
			if c.Member(i).Name != res.Owner && holder == 0 {
				holder = i
				continue
			}
			others = append(others, i)
		}
		ctx, stop := context.WithCancel(context.Background())
		start := time.Now()
		l := drive(ctx, c, "hot", c.All()...)
		time.Sleep(10 * time.Second)
		if c.Counter(holder, "sluice_lease_tokens_total", "granted") == 0 {
			t.Fatal("the node to be killed holds no lease")
		}
		// Killed mid-term (the load stops a few milliseconds before, so
		// that no check reaches the dead node): what it holds is neither
		// spent nor returned.
		stop()
		l.wg.Wait()
		c.Kill(holder)
		ctx, stop = context.WithCancel(context.Background())
		l2 := drive(ctx, c, "hot", others...)
		time.Sleep(20 * time.Second)
		stop()
		l2.wg.Wait()
		bound := exact(time.Since(start))
		admitted := l.admitted.Load() + l2.admitted.Load()
		t.Logf("lease holder killed: %d admitted, bound %d; %d failed", admitted, bound, l2.failed.Load())
		if admitted > bound {
			t.Fatalf("admitted %d > bound %d", admitted, bound)
		}
		if l2.failed.Load() != 0 || l2.fallbacks.Load() != 0 {
			t.Fatalf("the other nodes: %d failed, %d fallbacks", l2.failed.Load(), l2.fallbacks.Load())
		}
	})
}

// TestLeasesOff: with leases turned off every check at a non-owner is
// forwarded.
func TestLeasesOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithCancel(context.Background())
		l := drive(ctx, c, "hot", c.All()...)
		time.Sleep(5 * time.Second)
		stop()
		l.wg.Wait()
		if routesOf(c, "leased") != 0 || ownerRequests(c, "lease") != 0 {
			t.Fatal("leases were used although turned off")
		}
	})
}
