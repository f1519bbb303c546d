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

// TestRestartedOwnerDeniesNoColdKey: a node restarted with its data
// directory rejoins; for 5 s it starts the keys it owns from a fair share
// of their burst. A key with a burst smaller than the cluster (3 an hour,
// burst 3, in five nodes: a password-reset limit) still gets at least one
// token: the first check of a key nobody ever checked is allowed.
func TestRestartedOwnerDeniesNoColdKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5, Options{Persist: true, Configure: func(_ int, cfg *cluster.Config) { cfg.Leases.Threshold = -1 }})
		c.AwaitConverged(joinBound, c.All()...)
		time.Sleep(5 * time.Second) // the size is stored
		c.Stop(2)
		awaitRings(c, 5*time.Second, 0, 1, 3, 4)
		c.Start(2)
		awaitRings(c, 5*time.Second, c.All()...)
		low := bucket.Limit{Rate: 3, Period: time.Hour, Burst: 3}
		var owned, denied int
		for n := 0; n < 40; n++ {
			req := &cluster.Request{Key: "reset-user-" + strconv.Itoa(n), Inline: low, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
			res, err := c.Node(2).Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Owner == c.Member(2).Name && !res.Fallback {
				owned++
				if !res.Allowed {
					denied++
				}
			}
		}
		t.Logf("first checks of never-used keys (3/h, burst 3) owned by the restarted node: %d of %d denied", denied, owned)
		if owned == 0 {
			t.Fatal("no key owned by the restarted node")
		}
		if denied > 0 {
			t.Errorf("%d of %d first checks of cold keys denied at the restarted owner (burst 3 / 5 members = 0 tokens)", denied, owned)
		}
	})
}
