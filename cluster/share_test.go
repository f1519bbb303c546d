package cluster

import (
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// spendAll spends one token at a time at now until one is denied, and
// returns how many were admitted.
func spendAll(t *totals, store *bucket.Store, id bucket.ID, l bucket.Limit, now time.Time, members int64) int {
	n := 0
	for t.spend(store, rules.SyncGossip, id, l, 1, now, members).Allowed {
		n++
	}
	return n
}

func TestShareSplitsTheReplica(t *testing.T) {
	l := bucket.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	id := bucket.ID{Rule: "r", Key: "hot"}
	t0 := time.Unix(100, 0)
	interval := 50 * time.Millisecond

	t.Run("peers spending", func(t *testing.T) {
		tot, store := newTotals("", 0, interval), bucket.NewStore(bucket.StoreConfig{})
		for _, peer := range []string{"b", "c"} {
			tot.apply(peer, &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: l, Gen: 1}, t0.UnixNano())
		}
		if got := spendAll(tot, store, id, l, t0, 3); got != 200 {
			t.Fatalf("with two peers spending, this node took %d of 600, want its share, 200", got)
		}
		// At the flush, b and c say they spent 100 each; the next epoch
		// splits what is left, 200 and 0.5 earned.
		flush := t0.Add(interval * flushPhase / 5)
		for _, peer := range []string{"b", "c"} {
			if d := tot.apply(peer, &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: l, Gen: 1, Total: 100}, flush.UnixNano()); d > 0 {
				store.DebitN(flush, id, l, d)
			}
		}
		t1 := t0.Add(interval)
		if got := spendAll(tot, store, id, l, t1, 3); got != 66 {
			t.Fatalf("next epoch: took %d, want a third of 200.5, 66", got)
		}
		// b's totals do not come at the next flush: it is counted as
		// having spent what this node did (66), and c, heard from, as
		// what it said (nothing more).
		flush = t1.Add(interval * flushPhase / 5)
		tot.apply("c", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: l, Gen: 1, Total: 100}, flush.UnixNano())
		t2 := t1.Add(interval)
		if got := spendAll(tot, store, id, l, t2, 3); got != 23 {
			t.Fatalf("with b late: took %d, want a third of 134.5 + 0.5 - 66, 23", got)
		}
	})
	t.Run("alone", func(t *testing.T) {
		tot, store := newTotals("", 0, interval), bucket.NewStore(bucket.StoreConfig{})
		if got := spendAll(tot, store, id, l, t0, 1); got != 600 {
			t.Fatalf("a node alone took %d, want all 600", got)
		}
	})
	t.Run("newly wanted", func(t *testing.T) {
		// No peer's totals heard yet: for its first epochs a node counts
		// every live member as spending, then only those it hears from.
		tot, store := newTotals("", 0, interval), bucket.NewStore(bucket.StoreConfig{})
		if got := spendAll(tot, store, id, l, t0, 4); got != 150 {
			t.Fatalf("first epoch among 4 members: took %d, want 150", got)
		}
		later := t0.Add(activeEpochs * interval)
		if got := spendAll(tot, store, id, l, later, 4); got != 451 {
			t.Fatalf("no peer heard from since: took %d, want all that is left, 451", got)
		}
	})
	t.Run("a peer stops", func(t *testing.T) {
		tot, store := newTotals("", 0, interval), bucket.NewStore(bucket.StoreConfig{})
		tot.apply("b", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: l, Gen: 1}, t0.UnixNano())
		later := t0.Add(activeEpochs * interval)
		tot.spend(store, rules.SyncGossip, id, l, 0, t0, 2) // wanted since t0
		if got := spendAll(tot, store, id, l, later.Add(-time.Nanosecond), 2); got != 300 {
			t.Fatalf("b heard from lately: took %d, want half, 300", got)
		}
		if got := spendAll(tot, store, id, l, later.Add(interval), 2); got != 300 {
			t.Fatalf("b silent for %d intervals: took %d, want the rest, 300", activeEpochs+1, got)
		}
	})
}

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
			tot, store := newTotals("", 0, interval), bucket.NewStore(bucket.StoreConfig{})
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
