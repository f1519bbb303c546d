package testcluster

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// syncInterval is gossip mode's default sync interval.
const syncInterval = 50 * time.Millisecond

// driveMode drives checks of key in mode sync (see driveChecks).
func driveMode(ctx context.Context, c *Cluster, sync rules.Sync, key string, nodes ...int) *load {
	return driveChecks(ctx, c, func() *cluster.Request {
		return &cluster.Request{Key: key, Inline: hotLimit, Cost: 1, Sync: sync, SyncSet: true}
	}, nodes...)
}

// exact is burst + rate × elapsed for hotLimit.
func exact(elapsed time.Duration) int64 {
	return hotLimit.Burst + int64(float64(hotLimit.Rate)*elapsed.Seconds())
}

// gossipSlack is the documented bound on what gossip mode admits beyond
// exact (docs/design/gossip.md): the other nodes' admissions within one
// lag L (a sync interval plus delivery), at most their arrivals in that
// time and at most a burst each (a window's limit for the windows).
// perNodeRate is the arrival rate at each node, checks per second.
func gossipSlack(nodes int, perNodeRate float64, lag time.Duration, burst int64) int64 {
	a := min(int64(perNodeRate*lag.Seconds())+1, burst)
	return int64(nodes-1) * a
}

// within5 fails the test unless got is within 5% of want, either way.
func within5(t *testing.T, when string, got, want int64) {
	t.Helper()
	if d := float64(got-want) / float64(want); d > 0.05 || d < -0.05 {
		t.Fatalf("%s: admitted %d, %+.1f%% off %d: want within 5%%", when, got, 100*d, want)
	}
}

// TestGossipModeAccuracy drives one hot key through all five nodes in
// gossip mode for 60 seconds, far past its limit: what is admitted stays
// within the mode's bound, within 5% of burst + rate × elapsed, and not far
// under it either (peers' debts are not counted twice).
func TestGossipModeAccuracy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithCancel(context.Background())
		start := time.Now()
		l := driveMode(ctx, c, rules.SyncGossip, "hot", c.All()...)
		time.Sleep(time.Minute)
		stop()
		l.wg.Wait()
		elapsed := time.Since(start)
		want := exact(elapsed)
		perNode := float64(l.total.Load()) / 5 / elapsed.Seconds()
		bound := want + gossipSlack(5, perNode, 2*syncInterval, hotLimit.Burst)
		got := l.admitted.Load()
		t.Logf("%d checks (%.0f/s per node), %d admitted; exact %d, bound %d (%+.2f%% of exact)",
			l.total.Load(), perNode, got, want, bound, 100*float64(got-want)/float64(want))
		if l.failed.Load() != 0 {
			t.Fatalf("%d checks failed", l.failed.Load())
		}
		if got > bound {
			t.Fatalf("admitted %d > bound %d", got, bound)
		}
		within5(t, "over the run", got, want)
		if c.Counter(0, "sluice_gossip_counter_updates_total", "") == 0 {
			t.Fatal("no counter update arrived at node 0")
		}
	})
}

// TestGossipModeUnderLoss loses 20% of all datagrams for 30 seconds, then
// none for 30: a lost packet delays what peers learn by an interval or
// two, so the overshoot stays within the bound for that longer lag, and
// once the loss ends the mode is as accurate as before.
func TestGossipModeUnderLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithCancel(context.Background())
		start := time.Now()
		l := driveMode(ctx, c, rules.SyncGossip, "hot", c.All()...)
		c.Net.SetDrop(0.2)
		time.Sleep(30 * time.Second)
		lossy, lossyTotal := l.admitted.Load(), l.total.Load()
		lossyElapsed := time.Since(start)
		c.Net.SetDrop(0)
		time.Sleep(30 * time.Second)
		stop()
		l.wg.Wait()
		elapsed := time.Since(start)
		perNode := float64(lossyTotal) / 5 / lossyElapsed.Seconds()
		// With 20% loss, an update and its two resends are all lost with
		// probability 0.8%; the lag that covers all but that is three
		// intervals, plus one for the flush.
		lossyBound := exact(lossyElapsed) + gossipSlack(5, perNode, 4*syncInterval, hotLimit.Burst)
		after := l.admitted.Load() - lossy
		afterWant := int64(float64(hotLimit.Rate) * (elapsed - lossyElapsed).Seconds())
		t.Logf("20%% loss for %v: %d admitted, exact %d, bound %d; then no loss for %v: %d admitted, rate × time %d",
			lossyElapsed.Round(time.Second), lossy, exact(lossyElapsed), lossyBound,
			(elapsed - lossyElapsed).Round(time.Second), after, afterWant)
		if l.failed.Load() != 0 {
			t.Fatalf("%d checks failed", l.failed.Load())
		}
		if lossy > lossyBound {
			t.Fatalf("under loss: admitted %d > bound %d", lossy, lossyBound)
		}
		within5(t, "after the loss", after, afterWant)
	})
}

// TestGossipJoinStartsFromReplicas empties a key's bucket on a running
// cluster, then starts a new node: its replica comes from its peers, so
// the key gets no fresh burst there.
func TestGossipJoinStartsFromReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3)
		c.AwaitConverged(joinBound, c.All()...)
		slow := &cluster.Request{Key: "k", Inline: hotLimitSlow, Cost: 1, Sync: rules.SyncGossip, SyncSet: true}
		// A key no node wanted lately gets 1/N of its burst through one
		// node until a flush has been heard (docs/design/gossip.md, the
		// share): want it first.
		c.Node(0).Check(context.Background(), &cluster.Request{Key: "k", Inline: hotLimitSlow, Cost: 0, Sync: rules.SyncGossip, SyncSet: true})
		time.Sleep(2 * syncInterval)
		spent := 0
		for range hotLimitSlow.Burst + 10 {
			if res, _ := c.Node(0).Check(context.Background(), slow); res.Allowed {
				spent++
			}
		}
		if spent != int(hotLimitSlow.Burst) {
			t.Fatalf("node 0 admitted %d, want its burst %d", spent, hotLimitSlow.Burst)
		}
		// Node 1 learns of it within a few intervals.
		c.Await(time.Second, "node 1's replica is empty", func() bool {
			res, _ := c.Node(1).Check(context.Background(), &cluster.Request{Key: "k", Inline: hotLimitSlow, Cost: 0, Sync: rules.SyncGossip, SyncSet: true})
			return res.Remaining == 0
		})
		n := c.Add()
		c.List(c.All()...)
		c.Start(n)
		c.AwaitConverged(joinBound, c.All()...)
		admitted := 0
		for range 10 {
			if res, _ := c.Node(n).Check(context.Background(), slow); res.Allowed {
				admitted++
			}
		}
		if admitted != 0 {
			t.Fatalf("the new node admitted %d of an exhausted key: it started from a full bucket", admitted)
		}
	})
}

// hotLimitSlow refills one token an hour: a spent burst stays spent.
var hotLimitSlow = bucket.Limit{Rate: 1, Period: time.Hour, Burst: 20}

// spentKey is the key "slow" checked in mode at hotLimitSlow: once its
// burst is spent it stays spent, so whether it still is on every node
// after a switch between gossip and owners shows whether the switch
// carried its buckets over.
type spentKey struct {
	c    *Cluster
	mode rules.Sync
}

// check checks the key on node i at cost; an error fails the test.
func (k spentKey) check(i int, cost int64) cluster.Result {
	k.c.t.Helper()
	res, err := k.c.Node(i).Check(context.Background(), &cluster.Request{Key: "slow", Inline: hotLimitSlow, Cost: cost, Sync: k.mode, SyncSet: true})
	if err != nil {
		k.c.t.Fatal(err)
	}
	return res
}

// spend spends the key's burst through node 0. A key no node wanted
// lately gets 1/N of its burst through one node until a flush has been
// heard (docs/design/gossip.md, the share): it is wanted first.
func (k spentKey) spend() {
	k.check(0, 0)
	time.Sleep(2 * syncInterval)
	for range hotLimitSlow.Burst {
		k.check(0, 1)
	}
}

// await waits until the key is spent on every one of nodes.
func (k spentKey) await(when string, nodes ...int) {
	k.c.t.Helper()
	k.c.Await(time.Second, "the slow key is spent on every node "+when, func() bool {
		for _, i := range nodes {
			if k.check(i, 0).Remaining != 0 {
				return false
			}
		}
		return true
	})
}

// TestAutoModeSwitches runs auto mode with the switch at 3 members: 3
// nodes gossip, 2 more join (5 > 3: keys move to their owners, starting
// from the replicas), then those 2 leave (back to gossip, replicas starting
// from the owners' buckets). A hot key is driven through every running node
// all along: no check fails and no switch gives the key a fresh burst.
func TestAutoModeSwitches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.GossipSync.MaxMembers = 3 }})
		c.AwaitConverged(joinBound, c.All()...)
		start := time.Now()
		var admitted, failed, total int64
		phase := func(d time.Duration, nodes []int, during func()) {
			ctx, stop := context.WithCancel(context.Background())
			l := driveMode(ctx, c, rules.SyncAuto, "hot", nodes...)
			defer l.wg.Wait() // also when during fails the test
			defer stop()
			if during != nil {
				during()
			}
			time.Sleep(d)
			stop()
			l.wg.Wait()
			admitted += l.admitted.Load()
			failed += l.failed.Load()
			total += l.total.Load()
		}
		routes := func() float64 {
			var n float64
			for _, i := range c.Running() {
				n += c.Counter(i, "sluice_owner_checks_total", "")
			}
			return n
		}
		// A second key, spent and refilling one token an hour, shows
		// whether each switch carried its state over.
		slow := spentKey{c, rules.SyncAuto}
		slow.spend()
		slow.await("in gossip mode", 0, 1, 2)
		phase(20*time.Second, []int{0, 1, 2}, nil)
		if routes() != 0 {
			t.Fatal("3 members with the switch at 3 routed checks to owners")
		}
		phase(20*time.Second, []int{0, 1, 2}, func() {
			c.Add()
			c.Add()
			c.List(c.All()...)
			c.Start(3)
			c.Start(4)
			c.AwaitConverged(joinBound, c.All()...)
			slow.await("after switching to owners", c.All()...)
		})
		owned := routes()
		if owned == 0 {
			t.Fatal("5 members with the switch at 3 did not route to owners")
		}
		phase(20*time.Second, []int{0, 1, 2}, func() {
			c.Stop(3)
			c.Stop(4)
			awaitRings(c, 5*time.Second, 0, 1, 2)
			slow.await("after switching back to gossip", 0, 1, 2)
		})
		elapsed := time.Since(start)
		want := exact(elapsed)
		perNode := float64(total) / 3 / elapsed.Seconds()
		bound := want + 3*gossipSlack(3, perNode, 2*syncInterval, hotLimit.Burst)
		t.Logf("auto mode over %v, switching at 3 members: %d checks, %d admitted, exact %d, bound %d (%+.2f%%); %v checks routed to owners",
			elapsed.Round(time.Second), total, admitted, want, bound, 100*float64(admitted-want)/float64(want), owned)
		if failed != 0 {
			t.Fatalf("%d checks failed", failed)
		}
		if admitted > bound {
			t.Fatalf("admitted %d > bound %d", admitted, bound)
		}
	})
}

// TestGossipAfterPartition cuts one node off for 90 seconds (long enough
// that the halves merge again by joining, with a join's state exchange)
// while a hot key is driven through all five, then heals: during the cut
// each side limits on its own (documented), and once healed the cluster is
// as accurate as before.
func TestGossipAfterPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		ctx, stop := context.WithCancel(context.Background())
		l := driveMode(ctx, c, rules.SyncGossip, "hot", c.All()...)
		defer l.wg.Wait() // runs after stop
		defer stop()
		time.Sleep(10 * time.Second)
		c.Partition([]int{0, 1, 2, 3}, []int{4})
		time.Sleep(90 * time.Second)
		c.Heal()
		c.AwaitConverged(time.Minute, c.All()...)
		time.Sleep(5 * time.Second) // the rejoin's exchanges are over
		before, start := l.admitted.Load(), time.Now()
		time.Sleep(30 * time.Second)
		after := l.admitted.Load() - before
		want := int64(float64(hotLimit.Rate) * time.Since(start).Seconds())
		t.Logf("after the heal: %d admitted in %v, rate × time %d", after, time.Since(start), want)
		within5(t, "after the heal", after, want)
		if l.failed.Load() != 0 {
			t.Fatalf("%d checks failed", l.failed.Load())
		}
	})
}
