package testcluster

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestNewOwnerWithoutTrafficMintsNoBurst: five nodes, owner mode; a hot
// key is checked at 1,000x its rate through nodes 0 and 1 only (a sidecar
// sees only its own application's traffic). Its owner crashes; the next
// owner on the ring never checked the key, so it has no fair-share level
// to go by: it starts the key from a fair share of its burst, not a full
// bucket, and the run stays within 5% of burst + rate x elapsed.
func TestNewOwnerWithoutTrafficMintsNoBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		var key string
		for n := 0; ; n++ {
			k := "abuser" + strconv.Itoa(n)
			if ownerIn(t, c, []int{0, 1, 2, 3, 4}, k, abuseLimit) != c.Member(2).Name {
				continue
			}
			if next := ownerIn(t, c, []int{0, 1, 3, 4}, k, abuseLimit); next == c.Member(3).Name || next == c.Member(4).Name {
				key = k
				break
			}
		}
		const run = 60 * time.Second
		h := hammer(c, rules.SyncOwner, key, abuseLimit, 1000, run, 5*time.Second, []int{0, 1}, func() {
			time.Sleep(10 * time.Second)
			c.Kill(2)
		})
		// The crashed member is remembered: the survivors decide at 4/5
		// from its death on; exact at the full limit is the upper bound.
		exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
		got := h.admitted.Load()
		t.Logf("owner crash, traffic through 0 and 1, new owner idle: %d checks, %d admitted of %d (%.3fx), %d failed; per 5 s %v",
			h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), h.slices)
		if got > exact*105/100 {
			t.Errorf("admitted %d > 1.05 x burst + rate x elapsed (%d): the idle new owner started a fresh burst", got, exact)
		}
	})
}
