package testcluster

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// TestLeavingNodeMintsNoBurst: a node that has begun to leave has handed
// the buckets it owned to their next owners. Its own application keeps
// checking until the API has drained (cmd/node leaves, then drains): a
// check of a key it owned, drained before the leave, must not be decided
// on a fresh, full bucket here while the new owner holds the drained one.
func TestLeavingNodeMintsNoBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
		c.AwaitConverged(joinBound, c.All()...)
		key := keyOwnedBy(c, 1)
		// Drain it on its owner.
		for {
			res, err := c.Node(1).Check(context.Background(), ownerCheck(key))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Allowed {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Node(1).Leave(ctx)
		cancel()
		admitted := 0
		for range int(hotLimit.Burst) {
			res, err := c.Node(1).Check(context.Background(), ownerCheck(key))
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				admitted++
			}
		}
		if admitted > 1 {
			t.Fatalf("after its leave began, the leaver admitted %d checks of a key it had drained and handed on (burst %d): a fresh bucket", admitted, hotLimit.Burst)
		}
	})
}

// TestLeavingNodeAnswersNoPeer: once a node starts to leave, it decides no
// peer's check (a bucket it has handed on must not be decided here too):
// the senders decide from their fair share instead, and nothing fails.
func TestLeavingNodeAnswersNoPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
		c.AwaitConverged(joinBound, c.All()...)
		leaver, key := c.Member(1).Name, keyOwnedBy(c, 1)
		c.Node(1).Leave(context.Background())
		if _, err := c.Node(1).DecideForwarded(context.Background(), []cluster.PeerCheck{{ID: bucket.ID{Key: key}, Limit: hotLimit, Cost: 1, Sync: rules.SyncOwner}}); err != cluster.ErrLeft {
			t.Fatalf("a leaving node decided a peer's check: %v", err)
		}
		res, err := c.Node(0).Check(context.Background(), ownerCheck(key))
		if err != nil || !res.Fallback || res.Owner != leaver {
			t.Fatalf("check of the leaver's key: %+v, %v; want a fallback", res, err)
		}
	})
}

// keyOwnedBy returns a key that node i owns in owner mode, found by
// asking node i (which decides it, spending one token).
func keyOwnedBy(c *Cluster, i int) string {
	for n := 0; ; n++ {
		k := "k" + strconv.Itoa(n)
		if res, _ := c.Node(i).Check(context.Background(), ownerCheck(k)); res.Owner == c.Member(i).Name && !res.Fallback {
			return k
		}
	}
}
