package cluster

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// TestStateCarriesReplicas: a joining node takes a peer's lower replica
// levels and the totals they account for, and ignores what is not a
// gossip-mode bucket.
func TestStateCarriesReplicas(t *testing.T) {
	now := time.Unix(100, 0)
	clock := func() time.Time { return now }
	a, err := New(Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	a.self, a.replicas.self = "a", "a"
	id := bucket.ID{Rule: "r", Key: "k"}
	a.replicas.store(rules.SyncGossip).AllowN(now, id, totalLimit, 7)
	a.replicas.totals.apply("c", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: totalLimit, Gen: 3, Total: 2}, now.UnixNano())
	a.local.store.AllowN(now, id, totalLimit, 5) // local: not shared
	state := (*sharedState)(a).LocalState(true)

	b, err := New(Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	b.self, b.replicas.self = "b", "b"
	if !(*sharedState)(b).MergeState(state, true) {
		t.Fatal("state did not decode")
	}
	if d := b.replicas.store(rules.SyncGossip).Peek(now, id, totalLimit, 0); d.Remaining != 3 {
		t.Fatalf("the joiner's replica holds %d, want the peer's 3", d.Remaining)
	}
	if b.local.store.Len() != 0 {
		t.Fatal("a local bucket travelled")
	}
	// c's next total debits only what is new.
	if got := b.replicas.totals.apply("c", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: totalLimit, Gen: 3, Total: 3}, now.UnixNano()); got != 1 {
		t.Fatalf("after the join, c's total 3 applied %d, want 1", got)
	}
	// Not a join: rules only.
	c, _ := New(Config{Now: clock})
	(*sharedState)(c).MergeState(state, false)
	if c.replicas.store(rules.SyncGossip).Len() != 0 {
		t.Fatal("a periodic exchange merged replicas")
	}
}

// TestStateCarriesWindows: a joining node gets a peer's window replicas
// as windows, named and inline, with what they counted.
func TestStateCarriesWindows(t *testing.T) {
	now := time.Unix(3600, 0)
	clock := func() time.Time { return now }
	l := bucket.Limit{Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.FixedWindow}
	named, inline := bucket.ID{Rule: "r", Key: "k"}, bucket.ID{Inline: l, Key: "k"}
	a, _ := New(Config{Now: clock})
	a.replicas.store(rules.SyncGossip).AllowN(now, named, l, 7)
	a.replicas.store(rules.SyncGossip).AllowN(now, inline, l, 6)
	b, _ := New(Config{Now: clock})
	if !(*sharedState)(b).MergeState((*sharedState)(a).LocalState(true), true) {
		t.Fatal("state did not decode")
	}
	for id, want := range map[bucket.ID]int64{named: 3, inline: 4} {
		if d := b.replicas.store(rules.SyncGossip).Peek(now, id, l, 0); d.Remaining != want {
			t.Fatalf("%+v: the joiner's window has %d left, want %d", id, d.Remaining, want)
		}
	}
	if n := b.replicas.store(rules.SyncGossip).Len(); n != 2 {
		t.Fatalf("%d replicas, want 2", n)
	}
}

// FuzzSharedState feeds arbitrary bytes to a node as gossip messages and
// state: they are taken or rejected, never a panic.
func FuzzSharedState(f *testing.F) {
	now := time.Unix(100, 0)
	e, _ := msgpack.Marshal(&rules.Entry{Name: "x", Spec: &rules.Spec{Name: "x", Limit: 1, Period: "1s"}, Version: rules.Version{Clock: 1, Node: "a"}})
	f.Add(byte(kindRule), e)
	f.Add(byte(kindTotals), encodeTotals("a", []totalUpdate{{Sync: rules.SyncGossip, ID: bucket.ID{Key: "k", Inline: totalLimit}, Limit: totalLimit, Gen: 1, Total: 3}}, 1024)[0])
	st, _ := msgpack.Marshal(&state{Replicas: []replica{{Sync: rules.SyncAuto, Key: "k", Limit: limitArray(totalLimit), Tokens: -4, Seen: []originTotal{{Origin: "a", Gen: 1, Total: 3}}}}})
	f.Add(byte(0), st)
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		n, err := New(Config{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		n.SetRules(&rules.Set{})
		s := (*sharedState)(n)
		s.Message(kind, b)
		s.MergeState(b, true)
		for _, s := range n.stores {
			s.store.Sweep(now)
		}
	})
}
