package testcluster

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// gossipCapAt caps gossip mode (and auto with it) at members.
func gossipCapAt(members int) Options {
	return Options{Configure: func(_ int, cfg *cluster.Config) { cfg.GossipSync.GossipModeMaxMembers = members }}
}

// sumOver returns metric name summed over nodes' current lives.
func sumOver(c *Cluster, name string, nodes ...int) float64 {
	var sum float64
	for _, i := range nodes {
		sum += c.Counter(i, name, "")
	}
	return sum
}

// routedToOwners returns how many of nodes say gossip mode's keys go to
// their owners, by their gauge and by their status.
func routedToOwners(c *Cluster, nodes ...int) (gauge, status int) {
	for _, i := range nodes {
		if c.Counter(i, "sluice_gossip_mode_routed_to_owners", "") == 1 {
			gauge++
		}
		if c.Node(i).Status().GossipRoute == "owner" {
			status++
		}
	}
	return gauge, status
}

// TestGossipModeAboveItsCap drives a sync: gossip key at 1,000 times its
// rate through all six nodes of a cluster whose gossip mode is capped at
// four members, for 60 s: its owner decides it, as auto mode's owners do
// above their switch. What is admitted stays within 5% of burst + rate ×
// elapsed, over the run and over every 10 s slice, no check fails, and no
// node receives a single gossip total: the N² counter traffic is gone.
func TestGossipModeAboveItsCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 6, gossipCapAt(4))
		c.AwaitConverged(joinBound, c.All()...)
		if gauge, status := routedToOwners(c, c.All()...); gauge != 6 || status != 6 {
			t.Errorf("6 members with gossip mode capped at 4: %d nodes' gauges and %d statuses say its keys go to owners, want 6", gauge, status)
		}
		updates := sumOver(c, "sluice_gossip_counter_updates_total", c.All()...)
		routed := sumOver(c, "sluice_owner_checks_total", c.All()...)
		before := c.Net.Traffic()
		h := hammer(c, rules.SyncGossip, "abuser", abuseLimit, 1000, time.Minute, 10*time.Second, c.All(), nil)
		after := c.Net.Traffic()
		updates = sumOver(c, "sluice_gossip_counter_updates_total", c.All()...) - updates
		routed = sumOver(c, "sluice_owner_checks_total", c.All()...) - routed
		t.Logf("gossip totals received %v, checks routed to owners %v; %.0f packets a second per node",
			updates, routed, float64(after.Packets-before.Packets)/6/time.Minute.Seconds())
		hotKeyBand(t, "6 nodes, gossip capped at 4, 1000×", h, abuseLimit, time.Minute, 10*time.Second)
		if updates != 0 {
			t.Errorf("the nodes received %v gossip totals above gossip mode's cap: want 0", updates)
		}
		if routed < float64(h.checks.Load()) {
			t.Errorf("%v of %d checks went the owners' way: want every one", routed, h.checks.Load())
		}
	})
}

// TestGossipModeSwitchesAtCap runs gossip mode capped at four members: 4
// nodes gossip, 2 more join (6 > 4: keys move to their owners, starting
// from the replicas), then those 2 leave (back to gossip, the replicas
// starting from the owners' buckets). A key at 1,000 times its rate is
// driven through the first four all along, and a second key, spent and
// refilling one token an hour, must stay spent on every node after each
// switch: neither switch gives a key a fresh burst, and no check fails.
func TestGossipModeSwitchesAtCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 4, gossipCapAt(4))
		c.AwaitConverged(joinBound, c.All()...)
		four := c.All()
		slow := spentKey{c, rules.SyncGossip}
		slow.spend()
		slow.await("in gossip mode", four...)
		if gauge, status := routedToOwners(c, four...); gauge != 0 || status != 0 {
			t.Fatalf("4 members with gossip mode capped at 4: %d gauges and %d statuses say its keys go to owners, want 0", gauge, status)
		}

		start := time.Now()
		var h *hotKey
		var run sync.WaitGroup
		run.Go(func() {
			h = hammer(c, rules.SyncGossip, "abuser", abuseLimit, 1000, time.Minute, 10*time.Second, four, nil)
		})
		defer run.Wait() // also when the test fails on the way: the run ends in its time
		time.Sleep(20 * time.Second)
		routed := sumOver(c, "sluice_owner_checks_total", four...)
		a, b := c.Add(), c.Add()
		c.List(c.All()...)
		c.Start(a)
		c.Start(b)
		c.AwaitConverged(joinBound, c.All()...)
		slow.await("after switching to owners", c.All()...)
		if gauge, status := routedToOwners(c, c.All()...); gauge != 6 || status != 6 {
			t.Errorf("6 members with gossip mode capped at 4: %d gauges and %d statuses say its keys go to owners, want 6", gauge, status)
		}
		time.Sleep(time.Until(start.Add(40 * time.Second)))
		routed = sumOver(c, "sluice_owner_checks_total", four...) - routed
		c.Stop(a)
		c.Stop(b)
		awaitRings(c, 5*time.Second, four...)
		slow.await("after switching back to gossip", four...)
		if gauge, status := routedToOwners(c, four...); gauge != 0 || status != 0 {
			t.Errorf("back to 4 members: %d gauges and %d statuses say gossip mode's keys go to owners, want 0", gauge, status)
		}
		run.Wait()
		t.Logf("checks routed to owners while 6 members: %v", routed)
		if routed == 0 {
			t.Error("6 members with gossip mode capped at 4 routed no check to owners")
		}
		hotKeyBand(t, "4 nodes growing to 6 and back, gossip capped at 4, 1000×", h, abuseLimit, time.Minute, 10*time.Second)
	})
}
