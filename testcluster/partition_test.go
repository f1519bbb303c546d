package testcluster

import (
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestPartitionAtAnyRate splits five nodes 2 | 3 while one key is driven
// at 1,000 times its rate through all of them, for longer than failure
// detection, then heals. Each side decides at its share of the limit
// (2/5 and 3/5 of the members it remembers; from the first second, when
// the other side falls silent, well before it is declared dead), so the
// sides together stay within the limit however long the split lasts: over
// the whole run admitted is within 5% of burst + rate × elapsed, from
// above and from below (each side is saturated, so it spends its share).
// With SLUICE_HOTKEY_MATRIX=1 it also runs a 120 s split.
func TestPartitionAtAnyRate(t *testing.T) {
	splits := []time.Duration{45 * time.Second}
	if os.Getenv("SLUICE_HOTKEY_MATRIX") != "" {
		splits = append(splits, 120*time.Second)
	}
	for _, split := range splits {
		for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncGossip, rules.SyncOwner} {
			t.Run(fmt.Sprintf("%v/%v", split, mode), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c := New(t, 5)
					c.AwaitConverged(joinBound, c.All()...)
					const before, after = 10 * time.Second, 20 * time.Second
					run := before + split + after
					var reduced float64
					h := hammer(c, mode, "abuser", abuseLimit, 1000, run, 5*time.Second, c.All(), func() {
						time.Sleep(before)
						c.Partition([]int{0, 1}, []int{2, 3, 4})
						time.Sleep(split)
						for _, i := range c.All() {
							reduced += 1 - c.Counter(i, "sluice_partition_share", "")
						}
						c.Heal()
					})
					exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
					got := h.admitted.Load()
					t.Logf("%v split, %v: %d checks, %d admitted of %d (%.3f×), %d failed; per 5 s %v",
						split, mode, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), h.slices)
					if reduced == 0 {
						t.Error("no node decided at a reduced share during the split")
					}
					if n := h.failed.Load(); n > 0 {
						t.Errorf("%d checks failed", n)
					}
					if r := float64(got) / float64(exact); r < 0.95 || r > 1.05 {
						t.Errorf("admitted %d, %.3f× burst + rate × elapsed (%d): want within [0.95, 1.05]", got, r, exact)
					}
				})
			})
		}
	}
}
