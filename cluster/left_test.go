package cluster

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// TestLeftGossipWaitUsesFairShare: after leaving, gossip-mode checks are
// decided from the fair share (resolve.go decide), but a gossip-mode
// /v1/wait (Node.Wait -> Node.reserve) still reserves on the full replica:
// a left node whose peers no longer hear what it admits admits the whole
// burst through /v1/wait while /v1/check admits only its share.
func TestLeftGossipWaitUsesFairShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := readyNode(t, Config{})
		topo, err := buildTopology("a", []gossip.Member{{Name: "b", Addr: "10.0.0.2:7946", State: gossip.StateAlive, Meta: gossip.Meta{PeerAddr: ":7947"}}}, ring.Config{}, gossipCaps{auto: 8, gossip: 32})
		if err != nil {
			t.Fatal(err)
		}
		n.topo.Store(topo)
		n.owners.left.Store(true)
		limit := bucket.Limit{Rate: 10, Period: time.Second, Burst: 10}
		req := func(key string) *Request {
			return &Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncGossip, SyncSet: true}
		}
		checked, waited := 0, 0
		for range 10 {
			if res, err := n.Check(context.Background(), req("c")); err == nil && res.Allowed {
				checked++
			}
			if res, err := n.Wait(context.Background(), req("w"), 0); err == nil && res.Allowed {
				waited++
			}
		}
		if checked != 5 {
			t.Fatalf("left node, gossip /v1/check admitted %d of a burst of 10 with 2 alive, want the fair share 5", checked)
		}
		if waited != checked {
			t.Fatalf("left node, gossip /v1/wait admitted %d at once, /v1/check %d: the wait path ignores the fair share after leaving", waited, checked)
		}
	})
}

// TestStallBackoffNotEscalatedByInFlight: when an owner freezes with
// several checks already in flight to it, each of them times out; the
// first marks the owner stalled (backoff 100 ms), but every other one is
// taken as a failed probe and doubles the backoff: with 6 in flight the
// first probe comes after 2 s, not 100 ms.
func TestStallBackoffNotEscalatedByInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, peer, req := frozenOwnerNode(t)
		peer.frozen.Store(true)
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() { n.Check(context.Background(), req) })
		}
		wg.Wait()
		if got := peer.calls.Load(); got != 6 {
			t.Fatalf("in flight when it froze: %d calls, want 6", got)
		}
		time.Sleep(minStall)
		n.Check(context.Background(), req)
		if got := peer.calls.Load(); got != 7 {
			n.owners.stalls.mu.Lock()
			st := *n.owners.stalls.m["b"]
			n.owners.stalls.mu.Unlock()
			t.Fatalf("%v after the owner was marked stalled, no probe was sent (calls %d, want 7): backoff is %v, escalated by checks that were in flight, not by failed probes", minStall, got, st.backoff)
		}
	})
}
