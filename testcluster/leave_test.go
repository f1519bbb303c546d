package testcluster

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
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
		awaitRings(c, 5*time.Second, c.All()...)
		leaver := c.Member(1).Name
		key := ""
		for i := 0; key == ""; i++ {
			k := "k" + strconv.Itoa(i)
			if res, _ := c.Node(1).Check(context.Background(), ownerCheck(k)); res.Owner == leaver && !res.Fallback {
				key = k
			}
		}
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
