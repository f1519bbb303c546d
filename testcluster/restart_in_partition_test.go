package testcluster

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestRestartDuringPartition: five nodes with data directories split
// 2 | 3 for 70 s while one key is driven at 1,000x its rate through every
// node. 20 s into the split (both sides have declared the other dead and
// decide at 2/5 and 3/5), node 0 crashes and starts again at once. Its new
// life's memberlist knows nothing of the far side's members; it learns
// them from its peer's state (the members missing there), and so keeps
// deciding at 2/5. The restart itself costs at most a fair share of the
// burst (burst / 5: the new life's keys start from one while their
// buckets are on their way, docs/design/partitions.md), so the run admits
// at most burst + rate x elapsed + burst / 5: 1.075 of the former here.
// Measured 1.020 to 1.056; the test asserted 1.05 before, and failed 2
// runs of 6 at the time (one of them in CI, under the race detector).
// The restart waits until both sides have declared the other dead: on
// the side of two that sometimes took longer than 20 s, and a restart
// before it is another case (3 runs of 30 admitted 1.06–1.10×:
// docs/design/partitions.md).
func TestRestartDuringPartition(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncOwner} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 5, Options{Persist: true})
				c.AwaitConverged(joinBound, c.All()...)
				time.Sleep(5 * time.Second) // sizes stored
				const run = 100 * time.Second
				var share0 float64
				var remembered1 float64
				h := hammer(c, mode, "abuser", abuseLimit, 1000, run, 5*time.Second, c.All(), func() {
					time.Sleep(10 * time.Second)
					c.Partition([]int{0, 1}, []int{2, 3, 4})
					time.Sleep(20 * time.Second)
					// Both sides have declared the other dead (on a side of
					// two, a suspicion gets one confirmation at most and
					// can take longer: the scenario is a restart after it).
					for !c.Converged(0, 1) || !c.Converged(2, 3, 4) {
						time.Sleep(pollInterval)
					}
					c.Restart(0)
					time.Sleep(40 * time.Second)
					share0 = c.Counter(0, "sluice_partition_share", "")
					remembered1 = c.Counter(1, "sluice_partition_share", "")
					c.Heal()
				})
				exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
				got := h.admitted.Load()
				t.Logf("restart of node 0 20 s into a 70 s 2 | 3 split, %v: %d checks, %d admitted of %d (%.3fx), %d failed; before heal node 0 share %.2f, node 1 share %.2f; per 5 s %v",
					mode, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), share0, remembered1, h.slices)
				if bound := exact + abuseLimit.Burst/5; got > bound {
					t.Errorf("admitted %d, %.3fx burst + rate x elapsed (%d): want at most that plus a fair share of the burst, %d", got, float64(got)/float64(exact), exact, bound)
				}
			})
		})
	}
}
