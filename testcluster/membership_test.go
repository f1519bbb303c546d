package testcluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/gossip"
)

// Bounds the scenarios are held to, in virtual time, at memberlist's LAN
// timings with sluice's 10s push/pull and 30s rejoin interval
// (docs/design/membership.md).
const (
	// joinBound: a node that misses every retransmission of a join learns
	// it at a push/pull. memberlist starts a node's own push/pulls a random
	// stagger plus a full interval after it starts, so at a cold start that
	// can be up to two intervals (200 cold starts of nine nodes under -race:
	// 7 past 10 s, the slowest 18.6 s); the p100 is two push/pull intervals
	// plus a few seconds.
	joinBound = 25 * time.Second
	// detectBound: 4s of suspicion plus probing, up to 24s for a suspicion
	// no one confirms.
	detectBound = 30 * time.Second
	// partitionDetectBound: on the minority side of a partition, Lifeguard
	// sees its own probes failing and slows down (up to 8x), and suspicions
	// get at most one confirmation, so declaring the far side dead takes
	// longer than a single crash.
	partitionDetectBound = 90 * time.Second
	leaveBound           = 2 * time.Second
)

// TestColdStartThroughOneSeed starts five nodes before the seed name exists;
// then it lists a single node. Every node must find every other through it.
func TestColdStartThroughOneSeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5, Options{Listed: []int{}})
		time.Sleep(5 * time.Second)
		for _, i := range c.All() {
			if got := c.Alive(i); len(got) != 1 {
				t.Fatalf("node %d sees %v before any seed resolves", i, got)
			}
		}
		c.List(2)
		took := c.AwaitConverged(joinBound, c.All()...)
		t.Logf("converged %v after the seed name appeared", took)
	})
}

func TestCrashIsDetected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		c.Kill(4)
		took := c.AwaitState(detectBound, 4, gossip.StateDead, 0, 1, 2, 3)
		c.AwaitConverged(detectBound, 0, 1, 2, 3)
		t.Logf("crash seen by all survivors after %v", took)
	})
}

func TestGracefulLeaveIsSeenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		c.Stop(3)
		took := c.AwaitState(leaveBound, 3, gossip.StateLeft, 0, 1, 2, 4)
		for _, i := range c.Running() {
			if n := c.Counter(i, "sluice_gossip_member_events_total", "fail"); n != 0 {
				t.Fatalf("node %d counted %v failures for a graceful leave", i, n)
			}
		}
		t.Logf("leave seen by all after %v", took)
	})
}

// TestRestartIsANewIncarnation restarts a node under its name and address:
// it is accepted as a new life, with its new incarnation.
func TestRestartIsANewIncarnation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		before := incarnation(c, 0, 4)
		c.Kill(4)
		time.Sleep(time.Second)
		c.Start(4)
		took := c.AwaitConverged(15*time.Second, c.All()...)
		c.Await(15*time.Second, "survivors learn node 4's new incarnation", func() bool {
			for _, i := range []int{0, 1, 2, 3} {
				if incarnation(c, i, 4) <= before {
					return false
				}
			}
			return true
		})
		t.Logf("restart accepted by all after %v", took)
	})
}

// TestRestartAtNewAddress moves a crashed node to a new address under the
// same name, as a rescheduled pod: it must be accepted once its old life is
// declared dead.
func TestRestartAtNewAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		c.Kill(4)
		c.Relocate(4)
		c.List(0, 1, 2, 3, 4)
		c.Start(4)
		took := c.Await(detectBound+15*time.Second, "every node has node-4 alive at its new address", func() bool {
			for _, i := range c.All() {
				i := slices.IndexFunc(c.Node(i).Members(), func(m gossip.Member) bool { return m.Name == "node-4" })
				if i < 0 {
					return false
				}
			}
			for _, obs := range c.All() {
				for _, m := range c.Node(obs).Members() {
					if m.Name == "node-4" && (m.Addr != c.Member(4).Addr || m.State != gossip.StateAlive) {
						return false
					}
				}
			}
			return true
		})
		c.AwaitConverged(time.Second, c.All()...)
		t.Logf("relocated node accepted by all after %v", took)
	})
}

// TestLongPartitionHealsThroughRejoin splits the cluster for longer than
// memberlist remembers dead nodes. memberlist alone never merges the halves
// again; the rejoin loop (re-resolving the seed name) must.
func TestLongPartitionHealsThroughRejoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		c.Partition([]int{0, 1}, []int{2, 3, 4})
		c.AwaitConverged(partitionDetectBound, 0, 1)
		c.AwaitConverged(partitionDetectBound, 2, 3, 4)
		time.Sleep(90 * time.Second) // past GossipToTheDeadTime: memberlist forgets the other side
		c.Heal()
		took := c.AwaitConverged(45*time.Second, c.All()...)
		t.Logf("healed %v after the partition ended", took)
	})
}

// TestLongPartitionStaysSplitWithoutRejoin is the control for the test
// above: with the rejoin loop effectively off, the halves stay apart. It
// shows that the loop, not memberlist, does the healing.
func TestLongPartitionStaysSplitWithoutRejoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 4, Options{Configure: func(_ int, cfg *cluster.Config) {
			cfg.Gossip.RejoinInterval = 24 * time.Hour
		}})
		c.AwaitConverged(joinBound, c.All()...)
		c.Partition([]int{0, 1}, []int{2, 3})
		c.AwaitConverged(partitionDetectBound, 0, 1)
		c.AwaitConverged(partitionDetectBound, 2, 3)
		time.Sleep(90 * time.Second)
		c.Heal()
		time.Sleep(2 * time.Minute)
		if c.Converged(c.All()...) {
			t.Fatal("the halves merged without the rejoin loop; the healing test proves nothing")
		}
	})
}

func TestWrongKeyCannotJoin(t *testing.T) {
	assertCannotJoin(t, Options{}, "key", func(cfg *cluster.Config) {
		cfg.Gossip.Keys = [][]byte{[]byte("another-key-of-thirty-two-bytes!")}
	})
}

func TestWrongLabelCannotJoin(t *testing.T) {
	assertCannotJoin(t, Options{Label: "prod"}, "label", func(cfg *cluster.Config) {
		cfg.Gossip.Label = "staging"
	})
}

// assertCannotJoin starts a 4-node cluster and an intruder configured by
// mutate: for 30s the intruder must see no one, the members must not change,
// and the members must count the rejection under reason.
func assertCannotJoin(t *testing.T, opts Options, reason string, mutate func(*cluster.Config)) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 4, opts)
		c.AwaitConverged(joinBound, c.All()...)
		intruder := c.Add()
		cfg := c.Config(intruder)
		mutate(&cfg)
		c.StartWith(intruder, cfg)
		time.Sleep(30 * time.Second)
		if got := c.Alive(intruder); len(got) != 1 {
			t.Fatalf("the intruder sees %v", got)
		}
		if !c.Converged(0, 1, 2, 3) {
			t.Fatalf("the members changed:\n%s", c.Describe())
		}
		assertRejected(t, c, reason, 0, 1, 2, 3)
	})
}

func assertRejected(t *testing.T, c *Cluster, reason string, nodes ...int) {
	t.Helper()
	var total float64
	for _, i := range nodes {
		total += c.Counter(i, "sluice_gossip_rejected_total", reason)
	}
	if total == 0 {
		t.Fatalf("no node counted a rejection for reason %q", reason)
	}
}

// TestKeyRotationWithoutFalseDeaths rotates the gossip key node by node
// (install everywhere, then use everywhere, then remove the old one
// everywhere) while the nodes gossip and serve checks: no member may be
// declared dead, and afterwards the old key no longer admits anyone.
func TestKeyRotationWithoutFalseDeaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stopTraffic := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, i := range c.All() {
			node := c.Node(i)
			wg.Go(func() { checkUntil(ctx, node) })
		}
		newKey := []byte("the-new-gossip-key-is-32-bytes!!")
		step := func(what string, op func(*cluster.Node) error) {
			for _, i := range c.All() {
				if err := op(c.Node(i)); err != nil {
					t.Fatalf("%s on node %d: %v", what, i, err)
				}
				time.Sleep(2 * time.Second)
			}
		}
		step("install", func(n *cluster.Node) error { return n.InstallKey(newKey) })
		step("use", func(n *cluster.Node) error { return n.UseKey(newKey) })
		step("remove", func(n *cluster.Node) error { return n.RemoveKey(DefaultKey) })
		time.Sleep(30 * time.Second) // long enough for any false suspicion to become a death
		stopTraffic()
		wg.Wait()
		for _, i := range c.All() {
			if n := c.Counter(i, "sluice_gossip_member_events_total", "fail"); n != 0 {
				t.Fatalf("node %d declared %v members dead during rotation:\n%s", i, n, c.Describe())
			}
			keys, err := c.Node(i).Keys()
			if err != nil || len(keys) != 1 || string(keys[0]) != string(newKey) {
				t.Fatalf("node %d keys after rotation: %q, %v", i, keys, err)
			}
		}
		if !c.Converged(c.All()...) {
			t.Fatalf("membership changed during rotation:\n%s", c.Describe())
		}
		old := c.Add()
		cfg := c.Config(old)
		cfg.Gossip.Keys = [][]byte{DefaultKey}
		c.StartWith(old, cfg)
		time.Sleep(20 * time.Second)
		if got := c.Alive(old); len(got) != 1 {
			t.Fatalf("a node with the removed key joined: it sees %v", got)
		}
	})
}

// TestLossyNetworkNoFalseDeaths runs the cluster for five minutes on a
// network that loses 10% of datagrams and delays every one by 50ms: SWIM's
// indirect probes and Lifeguard must keep every node alive.
func TestLossyNetworkNoFalseDeaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		c.Net.SetDrop(0.10)
		c.Net.SetDelay(50 * time.Millisecond)
		time.Sleep(5 * time.Minute)
		for _, i := range c.All() {
			if n := c.Counter(i, "sluice_gossip_member_events_total", "fail"); n != 0 {
				t.Fatalf("node %d declared %v live members dead:\n%s", i, n, c.Describe())
			}
		}
		if !c.Converged(c.All()...) {
			t.Fatalf("not converged:\n%s", c.Describe())
		}
	})
}

// checkUntil sends checks to node every 10ms until ctx ends.
func checkUntil(ctx context.Context, node *cluster.Node) {
	req := &cluster.Request{Key: "k", Inline: bucket.Limit{Rate: 100, Period: time.Second, Burst: 100}, Cost: 1}
	for ctx.Err() == nil {
		node.Check(ctx, req)
		time.Sleep(10 * time.Millisecond)
	}
}

func incarnation(c *Cluster, observer, target int) int64 {
	i := slices.IndexFunc(c.Node(observer).Members(), func(m gossip.Member) bool { return m.Name == c.Member(target).Name })
	if i < 0 {
		return 0
	}
	return c.Node(observer).Members()[i].Meta.Incarnation
}
