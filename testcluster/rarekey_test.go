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

// TestGossipRareKeySmallBurst: a rule whose burst is below the cluster's
// size (limit: 3, period: 1m, in a 5-node cluster; the burst defaults to
// the limit), checked now and then through one node only, far below its
// limit, in gossip and in auto mode (the default; a 5-node cluster
// gossips). Every check is within the limit and must be admitted.
func TestGossipRareKeySmallBurst(t *testing.T) {
	for _, mode := range []rules.Sync{rules.SyncGossip, rules.SyncAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, 5)
				c.AwaitConverged(joinBound, c.All()...)
				limit := bucket.Limit{Rate: 3, Period: time.Minute, Burst: 3}
				req := &cluster.Request{Key: "user-42", Inline: limit, Cost: 1, Sync: mode, SyncSet: true}
				admitted := 0
				for range 3 { // 3 checks 25 s apart: within the burst alone
					res, err := c.Node(0).Check(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					if res.Allowed {
						admitted++
					}
					time.Sleep(25 * time.Second)
				}
				if admitted != 3 {
					t.Fatalf("%v: admitted %d of 3 checks of a key limited to 3 a minute, asked once every 25 s on one node", mode, admitted)
				}
			})
		})
	}
}
