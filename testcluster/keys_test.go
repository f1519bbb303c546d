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

// TestInspectAndResetOwnerMode spends an owner-mode key through every
// node, inspects it from a node that does not own it (the owner's bucket
// is read over the peer protocol), resets it from that node, and finds
// the whole burst available again through every node.
func TestInspectAndResetOwnerMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
		c.AwaitConverged(joinBound, c.All()...)
		limit := bucket.Limit{Rate: 5, Period: time.Hour, Burst: 5}
		req := func() *cluster.Request {
			return &cluster.Request{Key: "k", Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
		}
		ctx := context.Background()
		admitted := 0
		for i := range 8 {
			if res, err := c.Node(i%3).Check(ctx, req()); err == nil && res.Allowed {
				admitted++
			}
		}
		if admitted != 5 {
			t.Fatalf("admitted %d of the burst of 5", admitted)
		}
		res, _ := c.Node(0).Check(ctx, &cluster.Request{Key: "k", Inline: limit, Sync: rules.SyncOwner, SyncSet: true})
		asker := 0
		if c.Member(0).Name == res.Owner {
			asker = 1
		}
		in, err := c.Node(asker).Inspect(ctx, req())
		if err != nil {
			t.Fatal(err)
		}
		if in.Owner != res.Owner || in.DecidedBy != res.Owner || in.Route != "owner" || in.Remaining != 0 || in.Unreachable ||
			in.ResetAfter < 59*time.Minute || in.RetryAfter < 11*time.Minute || in.Level > 0.01 {
			t.Fatalf("inspection %+v: want the owner %s's empty bucket, full in an hour, one token in 12 minutes", in, res.Owner)
		}

		rep, err := c.Node(asker).Reset(ctx, req())
		if err != nil || len(rep.Members) != 3 || rep.Owner != res.Owner {
			t.Fatalf("reset: %+v, %v; want 3 members acknowledging, owner %s", rep, err, res.Owner)
		}
		if in, _ := c.Node(asker).Inspect(ctx, req()); in.Remaining != 5 || in.ResetAfter != 0 {
			t.Fatalf("after the reset: %+v, want a full bucket", in)
		}
		admitted = 0
		for i := range 8 {
			if res, err := c.Node(i%3).Check(ctx, req()); err == nil && res.Allowed {
				admitted++
			}
		}
		if admitted != 5 {
			t.Fatalf("after the reset, admitted %d, want the burst of 5 again, and no more", admitted)
		}
	})
}

// TestResetGossipMode spends a gossip-mode key until every replica knows
// it is spent, resets it from one node, and finds every replica full.
func TestResetGossipMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3)
		c.AwaitConverged(joinBound, c.All()...)
		limit := bucket.Limit{Rate: 6, Period: time.Hour, Burst: 6}
		req := func(cost int64) *cluster.Request {
			return &cluster.Request{Key: "g", Inline: limit, Cost: cost, Sync: rules.SyncGossip, SyncSet: true}
		}
		ctx := context.Background()
		c.Await(5*time.Second, "the burst spent", func() bool {
			c.Node(0).Check(ctx, req(1))
			res, _ := c.Node(0).Check(ctx, req(0))
			return res.Remaining == 0
		})
		c.Await(5*time.Second, "every replica spent", func() bool {
			for _, i := range c.All() {
				if in, _ := c.Node(i).Inspect(ctx, req(0)); in.Remaining != 0 || in.Route != "gossip" {
					return false
				}
			}
			return true
		})
		rep, err := c.Node(2).Reset(ctx, req(0))
		if err != nil || len(rep.Members) != 3 || !rep.Complete() {
			t.Fatalf("reset: %+v, %v", rep, err)
		}
		for _, i := range c.All() {
			if in, _ := c.Node(i).Inspect(ctx, req(0)); in.Remaining != 6 {
				t.Fatalf("node %d after the reset: %+v, want a full replica", i, in)
			}
		}
	})
}

// TestInspectShowsLeasesOut drives a hot owner-mode key through a node
// that does not own it, until that node takes token leases from the
// owner: an inspection from a third node counts the tokens leased out.
func TestInspectShowsLeasesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3)
		c.AwaitConverged(joinBound, c.All()...)
		limit := bucket.Limit{Rate: 1000, Period: time.Second, Burst: 1000}
		req := &cluster.Request{Key: "hot", Inline: limit, Sync: rules.SyncOwner, SyncSet: true}
		ctx, stop := context.WithCancel(context.Background())
		res, _ := c.Node(0).Check(ctx, req)
		var others []int
		for _, i := range c.All() {
			if c.Member(i).Name != res.Owner {
				others = append(others, i)
			}
		}
		holder, asker := others[0], others[1]
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				c.Node(holder).Check(ctx, &cluster.Request{Key: "hot", Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true})
				time.Sleep(2 * time.Millisecond)
			}
		}()
		var in cluster.Inspection
		c.Await(5*time.Second, "leases out seen from another node", func() bool {
			in, _ = c.Node(asker).Inspect(ctx, req)
			return in.LeasedOut > 0
		})
		stop()
		<-done
		if in.LeasedHere != 0 || len(in.LeasesUnknown) != 0 || in.DecidedBy != res.Owner {
			t.Fatalf("inspection %+v: want the leases held on %s counted, none here, the owner's bucket read", in, c.Member(holder).Name)
		}
	})
}
