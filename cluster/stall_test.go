package cluster

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// frozenPeer is an owner that, while frozen, never answers: the call waits
// until its context ends, as a stopped process's connection does.
type frozenPeer struct {
	calls  atomic.Int64
	frozen atomic.Bool
}

func (f *frozenPeer) Check(ctx context.Context, _ string, checks []PeerCheck) ([]bucket.Decision, error) {
	f.calls.Add(1)
	if f.frozen.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out := make([]bucket.Decision, len(checks))
	for i := range out {
		out[i] = bucket.Decision{Allowed: true, Limit: checks[i].Limit.Rate}
	}
	return out, nil
}

func (f *frozenPeer) Handoff(context.Context, string, rules.Sync, []bucket.Entry) error { return nil }
func (f *frozenPeer) Forget(string)                                                     {}

// frozenOwnerNode returns a node whose ring holds it ("a") and an owner
// "b" reached through peer, and a check of a key b owns, in owner mode.
func frozenOwnerNode(t *testing.T) (*Node, *frozenPeer, *Request) {
	t.Helper()
	n := readyNode(t, Config{Leases: LeaseConfig{Threshold: -1}})
	peer := &frozenPeer{}
	n.owners.peers = peer
	topo, err := buildTopology("a", []gossip.Member{{Name: "b", Addr: "10.0.0.2:7946", State: gossip.StateAlive, Meta: gossip.Meta{PeerAddr: ":7947"}}}, ring.Config{}, gossipCaps{auto: 8, gossip: 32})
	if err != nil {
		t.Fatal(err)
	}
	n.topo.Store(topo)
	limit := bucket.Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	for i := 0; ; i++ {
		if k := "k" + strconv.Itoa(i); topo.ownerOf(bucket.ID{Inline: limit, Key: k}) == "b" {
			return n, peer, &Request{Key: k, Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
		}
	}
}

// TestFrozenOwnerIsNotWaitedOn: an owner that stops answering costs one
// forward timeout; its keys are then decided from the fair share at once,
// one probe at a time goes to it with a doubling backoff, and once a probe
// is answered its keys are forwarded again.
func TestFrozenOwnerIsNotWaitedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, peer, req := frozenOwnerNode(t)
		check := func(what string, wantFallback bool, wantCalls int64, wantWait time.Duration) {
			t.Helper()
			start := time.Now()
			res, err := n.Check(context.Background(), req)
			if err != nil || res.Fallback != wantFallback || !res.Allowed {
				t.Fatalf("%s: %+v, %v; want allowed, fallback %v", what, res, err, wantFallback)
			}
			if got := peer.calls.Load(); got != wantCalls {
				t.Fatalf("%s: the owner was asked %d times in all, want %d", what, got, wantCalls)
			}
			if waited := time.Since(start); waited != wantWait {
				t.Fatalf("%s: the check waited %v, want %v", what, waited, wantWait)
			}
		}
		check("owner answering", false, 1, 0)
		peer.frozen.Store(true)
		check("owner frozen: the first check waits the forward timeout", true, 2, 250*time.Millisecond)
		for range 100 {
			check("owner stalled: decided at once from the fair share, owner not asked", true, 2, 0)
		}
		time.Sleep(minStall)
		check("after the backoff, one probe", true, 3, 250*time.Millisecond)
		check("the probe was not answered: not asked again", true, 3, 0)
		time.Sleep(2 * minStall) // the backoff doubled
		peer.frozen.Store(false)
		check("the owner thawed: the probe is answered", false, 4, 0)
		check("and its keys are forwarded again", false, 5, 0)
	})
}
