package testcluster

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// Heartbeats above auto's cap (cluster/silence.go): nodes with rules set to
// gossip mode beat within gossip mode's cap and say so in their metadata;
// a peer is counted silent only if it said it beats. A node expecting
// beats that never come would decide every cluster-wide key at a reduced
// share. Keys here run at 100 times their rate, saturated, which is all a
// share needs to show (the hot-key tests take 1,000 times), in twelve
// nodes under the race detector.

// shareLog samples sluice_partition_share on nodes.
type shareLog struct {
	mu      sync.Mutex
	samples int
	low     map[int]int     // samples below 1, by node
	min     map[int]float64 // lowest share seen, by node
}

// sampleShares samples every node's share each every for d.
func sampleShares(c *Cluster, nodes []int, every, d time.Duration) *shareLog {
	s := &shareLog{low: map[int]int{}, min: map[int]float64{}}
	for range d / every {
		time.Sleep(every)
		s.mu.Lock()
		s.samples++
		for _, i := range nodes {
			v := c.Counter(i, "sluice_partition_share", "")
			if v < 1 {
				s.low[i]++
			}
			if m, ok := s.min[i]; !ok || v < m {
				s.min[i] = v
			}
		}
		s.mu.Unlock()
	}
	return s
}

// String summarises the samples.
func (s *shareLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d samples; below 1 by node %v; min by node %v", s.samples, s.low, s.min)
}

// anyLow reports whether any sample was below 1.
func (s *shareLog) anyLow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.low) > 0
}

// gossipRuleYAML is a rules file with a gossip-mode rule of abuseLimit.
const gossipRuleYAML = "rules:\n  - {name: abuser, limit: 600, period: 1m, burst: 600, sync: gossip}\n"

// TestBeatsExpectedOnlyOfNodesThatSaySo puts a gossip-mode rule in the
// rules file of some of twelve nodes only (a rolling deploy of a new file,
// a ConfigMap reaching pods at different times; an upgrade from a release
// that never beat above auto's cap looks the same): no node counts a live
// peer silent, and both that rule's key, hot on a node with the rule, and
// an owner-mode key hot everywhere get what they earn. When the nodes
// with the rule expected beats of every peer, they decided at 1/12 and
// 11/12: 0.082× and 0.914×.
func TestBeatsExpectedOnlyOfNodesThatSaySo(t *testing.T) {
	for _, tc := range []struct {
		name string
		with []int
	}{
		{"one", []int{0}},
		{"all-but-one", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 12)
				c.AwaitConverged(joinBound, c.All()...)
				set, err := rules.Parse([]byte(gossipRuleYAML))
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range tc.with {
					c.Node(i).SetRules(set)
				}
				s := sampleShares(c, c.All(), 250*time.Millisecond, 5*time.Second)
				t.Logf("after the file rule on nodes %v: %v", tc.with, s)
				if s.anyLow() {
					t.Errorf("live, connected peers counted silent: %v", s)
				}
				// The gossip rule's key, hot on node 0 (which has the rule).
				req := cluster.Request{Key: "k", Rule: "abuser", Cost: 1}
				h := hammerWith(c, req, abuseLimit, 100, 30*time.Second, 10*time.Second, []int{0}, nil)
				hotKeyBand(t, "gossip rule key hot on node 0", h, abuseLimit, 30*time.Second, 10*time.Second)
				// An unrelated owner-mode key, hot on every node.
				h = hammer(c, rules.SyncOwner, "owned", abuseLimit, 100, 30*time.Second, 10*time.Second, c.All(), nil)
				hotKeyBand(t, "owner-mode key hot on all nodes", h, abuseLimit, 30*time.Second, 10*time.Second)
			})
		})
	}
}

// TestBeatsWhileAGossipRuleComesAndGoes drives an inline sync-gossip key
// on one node of twelve while a gossip-mode rule is put in force at 15 s
// (heartbeats start, and are advertised) and deleted at 40 s (advertised
// as stopping, then stopped): no peer is counted silent, and the key gets
// what it earns.
func TestBeatsWhileAGossipRuleComesAndGoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 12, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		req := cluster.Request{Key: "hot", Inline: abuseLimit, Cost: 1, Sync: rules.SyncGossip, SyncSet: true}
		var s1, s2 *shareLog
		h := hammerWith(c, req, abuseLimit, 100, time.Minute, 10*time.Second, []int{3}, func() {
			time.Sleep(15 * time.Second)
			spec := rules.Spec{Name: "other", Limit: 10, Period: "1s", Burst: 10, Sync: "gossip"}
			if _, err := c.Node(7).PutRules([]rules.Spec{spec}); err != nil {
				t.Error(err)
				return
			}
			s1 = sampleShares(c, c.All(), 100*time.Millisecond, 25*time.Second)
			if _, err := c.Node(9).DeleteRule("other"); err != nil {
				t.Error(err)
				return
			}
			s2 = sampleShares(c, c.All(), 100*time.Millisecond, 15*time.Second)
		})
		t.Logf("shares while rule in force: %v", s1)
		t.Logf("shares after delete: %v", s2)
		hotKeyBand(t, "12 nodes, inline gossip key hot on node 3, rule added 15 s, deleted 40 s", h, abuseLimit, time.Minute, 10*time.Second)
		if s1.anyLow() || s2.anyLow() {
			t.Errorf("peers counted silent")
		}
	})
}

// TestBeatsAcrossAJoinAndARestart runs twelve nodes with a gossip-mode
// rule; a thirteenth joins (it learns the rule from its peers, and begins
// to beat), then node 11 restarts (its new life says nothing until its
// rules are in force): no peer is counted silent, and the rule's key, hot
// on half the nodes, gets what it earns.
func TestBeatsAcrossAJoinAndARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 12, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		req := abuserRule(c, rules.SyncGossip)
		twelve := c.All()
		joiner := c.Add()
		c.List(append(twelve, joiner)...)
		var s1, s2 *shareLog
		h := hammerWith(c, req, abuseLimit, 100, time.Minute, 10*time.Second, twelve[:6], func() {
			time.Sleep(10 * time.Second)
			c.Start(joiner)
			s1 = sampleShares(c, twelve, 100*time.Millisecond, 20*time.Second)
			c.Stop(11)
			c.Start(11)
			s2 = sampleShares(c, twelve[:11], 100*time.Millisecond, 20*time.Second)
		})
		t.Logf("shares after the join: %v", s1)
		t.Logf("shares after the restart: %v", s2)
		hotKeyBand(t, "12+1 nodes, gossip rule, join and restart", h, abuseLimit, time.Minute, 10*time.Second)
		if s1.anyLow() || s2.anyLow() {
			t.Errorf("peers counted silent")
		}
	})
}
