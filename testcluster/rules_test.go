package testcluster

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// apiRules returns the API rules in force on node i, with their versions,
// as "name@clock/node" strings in name order.
func apiRules(c *Cluster, i int) []string {
	var out []string
	for _, r := range c.Node(i).RulesInForce() {
		if r.Version != nil {
			out = append(out, fmt.Sprintf("%s@%d/%s:%d", r.Name, r.Version.Clock, r.Version.Node, r.Limit.Rate))
		}
	}
	slices.Sort(out)
	return out
}

// agree reports whether the given nodes hold the same API rules, and
// returns node's view.
func agree(c *Cluster, nodes ...int) ([]string, bool) {
	first := apiRules(c, nodes[0])
	for _, i := range nodes[1:] {
		if !slices.Equal(apiRules(c, i), first) {
			return first, false
		}
	}
	return first, true
}

func spec(name string, limit int64) rules.Spec {
	return rules.Spec{Name: name, Limit: limit, Period: "1s"}
}

// TestRulesConvergeAfterPartition changes rules on both sides of a
// partition, including the same rule on both: while it lasts each side
// agrees with itself; after it heals every node holds the same rules, and
// the same winner for the rule changed on both sides.
func TestRulesConvergeAfterPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		if _, err := c.Node(0).PutRules([]rules.Spec{spec("before", 1)}); err != nil {
			t.Fatal(err)
		}
		spread := c.Await(5*time.Second, "a rule set before the partition reaches every node", func() bool {
			v, ok := agree(c, c.All()...)
			return ok && len(v) == 1
		})
		t.Logf("a rule set on one node reached all 5 in %v", spread)
		c.Partition([]int{0, 1, 2, 3}, []int{4})
		mustPut := func(i int, specs ...rules.Spec) {
			t.Helper()
			if _, err := c.Node(i).PutRules(specs); err != nil {
				t.Fatal(err)
			}
		}
		mustPut(0, spec("a", 10))
		mustPut(1, spec("both", 1))
		mustPut(1, spec("both", 2)) // node 1's clock is ahead: its version wins
		mustPut(4, spec("both", 3), spec("lonely", 4))
		if _, err := c.Node(2).DeleteRule("before"); err != nil {
			t.Fatal(err)
		}
		c.Await(5*time.Second, "the majority side agrees", func() bool {
			v, ok := agree(c, 0, 1, 2, 3)
			return ok && len(v) == 2
		})
		if v := apiRules(c, 4); len(v) != 3 {
			t.Fatalf("the isolated node holds %v", v)
		}
		time.Sleep(90 * time.Second)
		c.Heal()
		took := c.Await(2*time.Minute, "every node holds the same rules after the heal", func() bool {
			_, ok := agree(c, c.All()...)
			return ok
		})
		v, _ := agree(c, c.All()...)
		t.Logf("converged %v after a 90s partition healed: %v", took, v)
		want := map[string]int64{"a": 10, "both": 2, "lonely": 4}
		got := map[string]int64{}
		for _, r := range c.Node(4).RulesInForce() {
			got[r.Name] = r.Limit.Rate
		}
		if !maps.Equal(got, want) {
			t.Fatalf("rules in force %v, want %v", got, want)
		}
	})
}

// TestRulesSurviveFullRestart sets rules on one node, stops the whole
// cluster, and starts each node alone: every node has them from its own
// data directory, including the nodes that only heard of them by gossip.
func TestRulesSurviveFullRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		if _, err := c.Node(0).PutRules([]rules.Spec{spec("x", 1), spec("y", 2)}); err != nil {
			t.Fatal(err)
		}
		c.Await(5*time.Second, "x and y reach every node", func() bool {
			v, ok := agree(c, c.All()...)
			return ok && len(v) == 2
		})
		if _, err := c.Node(1).DeleteRule("x"); err != nil {
			t.Fatal(err)
		}
		c.Await(5*time.Second, "every node holds y alone", func() bool {
			v, ok := agree(c, c.All()...)
			return ok && len(v) == 1
		})
		want := apiRules(c, 0)
		for _, i := range c.All() {
			c.Stop(i)
		}
		c.List() // nobody to join: each node starts alone
		for _, i := range c.All() {
			c.Start(i)
			if got := apiRules(c, i); !slices.Equal(got, want) {
				t.Fatalf("node %d after a full restart holds %v, want %v", i, got, want)
			}
			c.Stop(i)
		}
	})
}
