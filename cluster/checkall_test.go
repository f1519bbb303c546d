package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// windowed is a fixed-window inline limit check of key.
func windowed(key string, rate, cost int64) Request {
	return Request{Key: key, Inline: bucket.Limit{Rate: rate, Period: time.Hour, Burst: rate, Algo: bucket.FixedWindow}, Cost: cost}
}

// TestCheckAllSpendsNothingWhenOneIsOver checks the promise of CheckAll:
// checks that stand or fall together spend nothing when one of them is
// over its limit, and all spend when all fit.
func TestCheckAllSpendsNothingWhenOneIsOver(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := readyNode(t, Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	pair := func() []Result {
		t.Helper()
		res, err := n.CheckAll(ctx, []Request{windowed("user", 4, 1), windowed("plan", 2, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i := range 2 {
		res := pair()
		if !res[0].Allowed || !res[1].Allowed {
			t.Fatalf("call %d: allowed %v/%v, want both", i, res[0].Allowed, res[1].Allowed)
		}
	}
	res := pair() // plan is spent: user must not be charged
	if res[1].Allowed || !res[0].Allowed || !res[0].Unspent || res[0].Remaining != 2 {
		t.Fatalf("third call: plan allowed=%v, user allowed=%v unspent=%v remaining=%d; want plan denied, user untouched with 2 left",
			res[1].Allowed, res[0].Allowed, res[0].Unspent, res[0].Remaining)
	}
	one, err := n.Check(ctx, &Request{Key: "user", Inline: windowed("user", 4, 1).Inline, Cost: 0})
	if err != nil {
		t.Fatal(err)
	}
	if one.Remaining != 2 {
		t.Fatalf("user after the denied call holds %d, want 2", one.Remaining)
	}
}

// TestCheckAllBadInputChangesNothing checks that a bad check anywhere in
// the call spends nothing on the good ones before it.
func TestCheckAllBadInputChangesNothing(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := readyNode(t, Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := n.CheckAll(ctx, []Request{windowed("a", 1, 1), {Rule: "missing", Key: "k", Cost: 1}}); err == nil {
		t.Fatal("a check of a missing rule was accepted")
	}
	res, err := n.CheckAll(ctx, []Request{windowed("a", 1, 1)})
	if err != nil || !res[0].Allowed {
		t.Fatalf("after a rejected call, a's only token: allowed=%v err=%v, want allowed", res[0].Allowed, err)
	}
}
