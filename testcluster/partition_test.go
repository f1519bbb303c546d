package testcluster

import (
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
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
// It also splits twelve nodes 3 | 9 with the key's rule set to gossip
// mode, in a cluster too large for auto mode to gossip: the rule makes the
// nodes heartbeat, so that each side hears the other fall silent. With
// SLUICE_HOTKEY_MATRIX=1 it also runs a 120 s split.
func TestPartitionAtAnyRate(t *testing.T) {
	splits := []time.Duration{45 * time.Second}
	if os.Getenv("SLUICE_HOTKEY_MATRIX") != "" {
		splits = append(splits, 120*time.Second)
	}
	type split struct {
		nodes int
		a, b  []int
		modes []rules.Sync
	}
	cases := []split{
		{5, []int{0, 1}, []int{2, 3, 4}, []rules.Sync{rules.SyncAuto, rules.SyncGossip, rules.SyncOwner}},
		{12, []int{0, 1, 2}, []int{3, 4, 5, 6, 7, 8, 9, 10, 11}, []rules.Sync{rules.SyncGossip}},
	}
	for _, d := range splits {
		for _, sp := range cases {
			for _, mode := range sp.modes {
				t.Run(fmt.Sprintf("%v/%d/%v", d, sp.nodes, mode), func(t *testing.T) {
					partitionAtRate(t, sp.nodes, sp.a, sp.b, mode, d)
				})
			}
		}
	}
}

// partitionAtRate runs one case of TestPartitionAtAnyRate: nodes nodes, the
// key hammered through all of them, split a | b for split.
func partitionAtRate(t *testing.T, nodes int, a, b []int, mode rules.Sync, split time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		byRule := mode == rules.SyncGossip && nodes > 8
		c := New(t, nodes, Options{Persist: byRule})
		c.AwaitConverged(joinBound, c.All()...)
		req := cluster.Request{Key: "abuser", Inline: abuseLimit, Cost: 1, Sync: mode, SyncSet: true}
		if byRule {
			req = abuserRule(c, mode)
		}
		const before, after = 10 * time.Second, 20 * time.Second
		run := before + split + after
		var reduced float64
		h := hammerWith(c, req, abuseLimit, 1000, run, 5*time.Second, c.All(), func() {
			time.Sleep(before)
			c.Partition(a, b)
			time.Sleep(split)
			for _, i := range c.All() {
				reduced += 1 - c.Counter(i, "sluice_partition_share", "")
			}
			c.Heal()
		})
		exact := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*run.Seconds()/abuseLimit.Period.Seconds())
		got := h.admitted.Load()
		t.Logf("%v split of %d, %v: %d checks, %d admitted of %d (%.3f×), %d failed; per 5 s %v",
			split, nodes, mode, h.checks.Load(), got, exact, float64(got)/float64(exact), h.failed.Load(), h.slices)
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
}

// abuserRule sets a rule of abuseLimit in mode on node 0, waits until every
// node has it in force, and returns a request for it.
func abuserRule(c *Cluster, mode rules.Sync) cluster.Request {
	c.t.Helper()
	const name = "abuser"
	s := rules.Spec{Name: name, Limit: abuseLimit.Rate, Period: abuseLimit.Period.String(), Burst: abuseLimit.Burst, Sync: mode.String()}
	if _, err := c.Node(0).PutRules([]rules.Spec{s}); err != nil {
		c.t.Fatal(err)
	}
	c.Await(5*time.Second, "the rule is in force everywhere", func() bool {
		for _, i := range c.All() {
			if r, err := c.Node(i).Rules().Get(name); err != nil || r.Sync != mode {
				return false
			}
		}
		return true
	})
	return cluster.Request{Key: name, Rule: name, Cost: 1}
}
