package testcluster

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// slowDNS answers as the cluster's DNS does, after a delay: a new life
// that takes a while to find its peers.
type slowDNS struct {
	*DNS
	delay time.Duration
}

func (d slowDNS) LookupHost(ctx context.Context, host string) ([]string, error) {
	time.Sleep(d.delay)
	return d.DNS.LookupHost(ctx, host)
}

// TestRestartedNodeWaitsForItsPeers restarts one member of five four
// times, each new life taking half a second to resolve its seed name,
// while its application and every other one drive a key at 1,000 times
// its rate. A new life alone would own every key and admit its share of
// the burst each time (four fifths of a burst over the run); it holds its
// checks until it has found a peer instead, and the run stays within 2%
// of burst + rate × elapsed, with no failed check.
func TestRestartedNodeWaitsForItsPeers(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncOwner, rules.SyncAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 5, Options{Persist: true})
				c.AwaitConverged(joinBound, c.All()...)
				owner := ownerIn(t, c, c.All(), "abuser", abuseLimit)
				j := 0
				for c.Member(j).Name == owner {
					j++
				}
				const run = time.Minute
				h := hammer(c, mode, "abuser", abuseLimit, 1000, run, 5*time.Second, c.All(), func() {
					time.Sleep(10 * time.Second)
					for range 4 {
						c.Stop(j)
						cfg := c.Config(j)
						cfg.Gossip.Resolver = slowDNS{c.DNS, 500 * time.Millisecond}
						c.StartWith(j, cfg)
						c.AwaitConverged(joinBound, c.All()...)
						time.Sleep(5 * time.Second)
					}
				})
				exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
				got := h.admitted.Load()
				t.Logf("%v: %s restarted 4 times: %d checks, %d admitted of %d (%.3f×), %d failed; per 5 s %v",
					mode, c.Member(j).Name, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), h.slices)
				if n := h.failed.Load(); n > 0 {
					t.Errorf("%d checks failed", n)
				}
				if got > exact*102/100 {
					t.Errorf("admitted %d > 1.02 × burst + rate × elapsed (%d)", got, exact)
				}
			})
		})
	}
}

// TestRestartedNodeAloneHoldsAtMostBriefly stops a whole cluster and
// starts one member again: its peers are all gone, so it holds its first
// check no longer than the boot hold (2 s, virtual time), then decides
// it at its share of the stored size. Its first join attempt finds nobody,
// which ends the hold at once.
func TestRestartedNodeAloneHoldsAtMostBriefly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		for _, i := range c.All() {
			c.Stop(i)
		}
		c.Start(0)
		start := time.Now()
		res, err := c.Node(0).Check(context.Background(), &cluster.Request{Key: "k", Inline: abuseLimit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true})
		held := time.Since(start)
		if err != nil || !res.Allowed {
			t.Fatalf("first check after a whole-cluster restart: %+v, %v; want allowed", res, err)
		}
		if held >= 2*time.Second {
			t.Fatalf("the first check was held %v, want less than the boot hold (2s): the failed join ends it", held)
		}
		local, err := c.Node(0).Check(context.Background(), &cluster.Request{Key: "k", Inline: abuseLimit, Cost: 1, Sync: rules.SyncLocal, SyncSet: true})
		if err != nil || !local.Allowed {
			t.Fatalf("local-mode check: %+v, %v", local, err)
		}
		t.Logf("held %v", held)
	})
}

// TestWholeClusterRestartStartsFull stops all five members and starts
// them again together, then drives a new key at 1,000 times its rate
// through all of them: no peer held any key while the others were down,
// so keys start from full buckets (a share of the burst for the first
// seconds, as after a single member's restart, would deny most of it),
// and the cluster admits within 5% of burst + rate × elapsed.
func TestWholeClusterRestartStartsFull(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncOwner, rules.SyncAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 5, Options{Persist: true})
				c.AwaitConverged(joinBound, c.All()...)
				for _, i := range c.All() {
					c.Stop(i)
				}
				for _, i := range c.All() {
					c.Start(i)
				}
				c.AwaitConverged(joinBound, c.All()...)
				const run = 10 * time.Second
				h := hammer(c, mode, "fresh", abuseLimit, 1000, run, 5*time.Second, c.All(), nil)
				hotKeyBand(t, "after a whole-cluster restart, "+mode.String(), h, abuseLimit, run, 5*time.Second)
			})
		})
	}
}
