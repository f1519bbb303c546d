package testcluster

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// TestReplacementDuringPartition: five nodes split 2 | 3 at 10 s while a
// key is driven at 1,000x its rate through every running node, owner
// mode. 20 s into the split node 1 crashes and a replacement under a new
// name (node-5: a Deployment's new pod) starts on the same side once node
// 1 is declared dead. The replacement learns the members missing on its
// side from its peer's state, so it decides at the side's share as node 0
// does, and the cluster stays within the limit.
func TestReplacementDuringPartition(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncOwner} {
		t.Run(mode.String(), func(t *testing.T) { replacementDuringPartition(t, mode) })
	}
}

func replacementDuringPartition(t *testing.T, mode rules.Sync) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		repl := c.Add() // not started, not listed yet
		var key string
		for n := 0; ; n++ {
			k := "abuser" + strconv.Itoa(n)
			if ownerIn(t, c, []int{0, repl}, k, abuseLimit) == c.Member(repl).Name {
				key = k
				break
			}
		}
		const run = 130 * time.Second
		var share0, share5 float64
		h := hammer(c, mode, key, abuseLimit, 1000, run, 5*time.Second, []int{0, 1, 2, 3, 4, repl}, func() {
			time.Sleep(10 * time.Second)
			c.Partition([]int{0, 1, repl}, []int{2, 3, 4})
			time.Sleep(20 * time.Second)
			c.Kill(1)
			c.AwaitState(30*time.Second, 1, gossip.StateDead, 0)
			c.List(0, 2, 3, 4, repl)
			c.Start(repl) // once node 1 is declared dead, as a replacement pod is
			time.Sleep(40 * time.Second)
			share0 = c.Counter(0, "sluice_partition_share", "")
			share5 = c.Counter(repl, "sluice_partition_share", "")
			c.Heal()
		})
		exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
		got := h.admitted.Load()
		t.Logf("replacement under a new name 20 s into a 2 | 3 split, %v: %d checks, %d admitted of %d (%.3fx), %d failed; before heal node 0 share %.2f, replacement %.2f; per 5 s %v",
			mode, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), share0, share5, h.slices)
		if r := float64(got) / float64(exact); r > 1.05 {
			t.Errorf("admitted %d, %.3fx burst + rate x elapsed (%d): want at most 1.05", got, r, exact)
		}
	})
}
