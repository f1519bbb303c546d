package cluster

import (
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// TestShareAdmitsCostAboveAShare: two nodes both checking a key with a
// burst of 1 (or a cost above burst / spenders) must not both be denied
// forever: the replica is full, nothing is being spent anywhere.
func TestShareAdmitsCostAboveAShare(t *testing.T) {
	interval := 50 * time.Millisecond
	for _, tc := range []struct {
		name string
		l    bucket.Limit
		cost int64
	}{
		{"burst 1", bucket.Limit{Rate: 1, Period: time.Second, Burst: 1}, 1},
		{"cost above half the burst", bucket.Limit{Rate: 10, Period: time.Second, Burst: 10}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := bucket.ID{Rule: "r", Key: "k"}
			tot, store := newTotals(0, interval), bucket.NewStore(bucket.StoreConfig{})
			t0 := time.Unix(100, 0)
			// Peer b checks the key too (its totals, unchanged, keep
			// arriving every interval), and neither node admits anything.
			admitted := 0
			for i := range 200 { // 10 s
				now := t0.Add(time.Duration(i) * interval)
				tot.apply("b", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: tc.l, Gen: 1}, now.UnixNano())
				if tot.spend(store, rules.SyncGossip, id, tc.l, tc.cost, now.Add(interval/2), 2).Allowed {
					admitted++
				}
			}
			if admitted == 0 {
				t.Fatalf("10 s with a full replica and a peer that spends nothing: this node admitted nothing (cost %d, burst %d)", tc.cost, tc.l.Burst)
			}
		})
	}
}
