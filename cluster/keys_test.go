package cluster

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// TestInspectResetStandalone: a node alone inspects a key without
// spending from it, counts its denials in the top denied keys, and a
// reset gives the key its burst again.
func TestInspectResetStandalone(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	n := readyNode(t, Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	req := inline("alice", 2, time.Minute, 2)
	for range 3 {
		n.Check(ctx, req)
	}
	in, err := n.Inspect(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if in.Remaining != 0 || in.Level != 0 || in.ResetAfter != time.Minute || in.RetryAfter != 30*time.Second || in.Route != "gossip" || in.Key != "alice" {
		t.Fatalf("inspection %+v: want an empty bucket, full in 1m, a token in 30s", in)
	}
	if again, _ := n.Inspect(ctx, req); !reflect.DeepEqual(again, in) {
		t.Fatalf("inspecting changed the bucket: %+v then %+v", in, again)
	}
	if top := n.TopDenied(5); len(top) != 1 || top[0].Key != "alice" || top[0].Denied != 1 {
		t.Fatalf("top denied %+v, want alice once", top)
	}
	rep, err := n.Reset(ctx, req)
	if err != nil || len(rep.Members) != 1 || rep.Members[0].Err != nil {
		t.Fatalf("reset: %+v, %v", rep, err)
	}
	if in, _ := n.Inspect(ctx, req); in.Remaining != 2 || in.Level != 2 || in.RetryAfter != 0 {
		t.Fatalf("after the reset: %+v, want a full bucket", in)
	}
	var fe *rules.FieldError
	if _, err := n.Inspect(ctx, &Request{Rule: "nope", Key: "k"}); !errors.As(err, &fe) || fe.Field != "rule" {
		t.Fatalf("inspecting under an unknown rule: %v", err)
	}
	if _, err := n.Reset(ctx, &Request{Rule: "nope", Key: "k"}); !errors.As(err, &fe) || fe.Field != "rule" {
		t.Fatalf("resetting under an unknown rule: %v", err)
	}
	// In debt (2 reserved ahead of an empty bucket), the level is
	// negative.
	l := bucket.Limit{Rate: 1, Period: time.Second, Burst: 3}
	for _, cost := range []int64{3, 2} {
		if d := n.replicas.store(rules.SyncAuto).ReserveN(now, bucket.ID{Inline: l, Key: "bob"}, l, cost, time.Minute); !d.Allowed {
			t.Fatalf("reserve %d: %+v", cost, d)
		}
	}
	if in, _ := n.Inspect(ctx, &Request{Key: "bob", Inline: l}); in.Level != -2 || in.RetryAfter != 3*time.Second {
		t.Fatalf("in debt: %+v, want level -2 and a token in 3s", in)
	}
}
