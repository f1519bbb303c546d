package testcluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestRollingRestartAtAnyRate restarts every node of five in turn, as a
// deploy does (a graceful stop, a new life under the same name, ready,
// then 4 s), while one key is driven at 1,000 times its rate through
// every running node, in every cluster-wide mode. Over the whole run the
// cluster admits at most burst + rate × elapsed plus one burst, and at
// least 90% of it, with no failed check.
func TestRollingRestartAtAnyRate(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncGossip, rules.SyncOwner} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 5, Options{Persist: true}) // a new life finds its cluster's size stored
				c.AwaitConverged(joinBound, c.All()...)
				const run = 90 * time.Second
				var restarted time.Duration
				h := hammer(c, mode, "abuser", abuseLimit, 1000, run, 5*time.Second, c.All(), func() {
					start := time.Now()
					time.Sleep(10 * time.Second)
					for _, i := range c.All() {
						c.Stop(i)
						c.Start(i)
						c.AwaitConverged(joinBound, c.All()...)
						time.Sleep(4 * time.Second)
					}
					restarted = time.Since(start)
				})
				if restarted == 0 || restarted > run {
					t.Fatalf("the restarts took %v, longer than the run (%v)", restarted, run)
				}
				exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
				got := h.admitted.Load()
				t.Logf("rolling restart of 5 in %v, %v: %d checks, %d admitted of %d (%.3f×), %d failed; per 5 s %v",
					restarted.Round(time.Second), mode, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), h.slices)
				if n := h.failed.Load(); n > 0 {
					t.Errorf("%d checks failed", n)
				}
				if got > exact+abuseLimit.Burst {
					t.Errorf("admitted %d > burst + rate × elapsed + one burst (%d)", got, exact+abuseLimit.Burst)
				}
				if got < exact*9/10 {
					t.Errorf("admitted %d < 90%% of burst + rate × elapsed (%d)", got, exact)
				}
			})
		})
	}
}
