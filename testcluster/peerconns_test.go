package testcluster

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// TestPeerConnectionsBounded runs 12 nodes that keep at most 4 peer
// connections each and accept at most 3, with owner-mode keys spread over
// all 12 owners, and every node checking every key in turn (one check at
// a time per node, leases off, so each check's forward is the node's only
// one). After every check the node has at most 4 connections open, and
// every check is answered by its owner, none from the fair share, though
// owners close accepted connections as checks are sent on them. Once the
// traffic stops, no node has more than 3 accepted connections open, and
// within 1.25 × the idle timeout every connection is closed as idle.
func TestPeerConnectionsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nodes, bound, acceptBound, rounds = 12, 4, 3, 3
		c := New(t, nodes, Options{PeerMaxConns: bound, PeerMaxAccepted: acceptBound, Configure: func(_ int, cfg *cluster.Config) {
			cfg.Leases.Threshold = -1
		}})
		c.AwaitConverged(joinBound, c.All()...)
		limit := bucket.Limit{Rate: 1 << 20, Period: time.Second, Burst: 1 << 20}
		var keys []string
		for k := range 120 {
			keys = append(keys, "spread-"+strconv.Itoa(k))
		}

		var mu sync.Mutex // guards the results below
		owners := map[string]bool{}
		maxOpen := make([]float64, nodes)
		var failed, fallbacks, checks int
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				for r := range rounds * len(keys) {
					key := keys[(r+i*7)%len(keys)]
					res, err := c.Node(i).Check(context.Background(), &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true})
					open := c.Counter(i, "sluice_peer_connections", "")
					mu.Lock()
					checks++
					switch {
					case err != nil:
						failed++
					case res.Fallback:
						fallbacks++
					default:
						owners[res.Owner] = true
					}
					maxOpen[i] = max(maxOpen[i], open)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if failed != 0 || fallbacks != 0 || checks != nodes*rounds*len(keys) {
			t.Fatalf("%d checks: %d failed, %d from the fair share; want all %d answered by their owners", checks, failed, fallbacks, nodes*rounds*len(keys))
		}
		if len(owners) != nodes {
			t.Fatalf("keys owned by %d of %d nodes: not spread over all owners", len(owners), nodes)
		}
		synctest.Wait() // the owners' closes of accepted connections are done
		_, accepted := c.Net.OpenStreams(peerPort)
		var shed, goaway, resent float64
		for i := range nodes {
			evicted := c.Counter(i, "sluice_peer_connections_closed_total", "evicted")
			t.Logf("%s: at most %v connections open, %v dials, %v evicted; %d accepted open, %v closed for the accepted bound", c.Member(i).Name, maxOpen[i], c.Counter(i, "sluice_peer_dials_total", "ok"), evicted,
				accepted[c.PeerAddrOf(i)], c.Counter(i, "sluice_peer_connections_closed_total", "accepted_evicted"))
			if maxOpen[i] > bound {
				t.Errorf("%s had %v connections open after a check, bound %d", c.Member(i).Name, maxOpen[i], bound)
			}
			if evicted == 0 {
				t.Errorf("%s evicted no connection while forwarding to %d owners", c.Member(i).Name, nodes-1)
			}
			if n, gauge := accepted[c.PeerAddrOf(i)], c.Counter(i, "sluice_peer_accepted_connections", ""); n > acceptBound || gauge != float64(n) {
				t.Errorf("%s has %d accepted connections open once idle (its gauge says %v), bound %d", c.Member(i).Name, n, gauge, acceptBound)
			}
			shed += c.Counter(i, "sluice_peer_connections_closed_total", "accepted_evicted")
			goaway += c.Counter(i, "sluice_peer_connections_closed_total", "goaway")
			resent += c.Counter(i, "sluice_peer_resent_checks_total", "")
		}
		t.Logf("%v accepted connections closed for the bound, %v checks sent again for it", shed, resent)
		// A client may drop a connection for its own bound as its owner
		// asks it to close: counted as evicted, not goaway.
		if shed == 0 || goaway == 0 || goaway > shed {
			t.Errorf("%v accepted connections closed for the bound, %v closed at an owner's request; want some, and no more requests than closes", shed, goaway)
		}

		time.Sleep(60 * time.Second * 5 / 4)
		synctest.Wait()
		for i := range nodes {
			if open, accepted := c.Counter(i, "sluice_peer_connections", ""), c.Counter(i, "sluice_peer_accepted_connections", ""); open != 0 || accepted != 0 {
				t.Errorf("%s has %v connections open and %v accepted after 75 s without traffic, want 0", c.Member(i).Name, open, accepted)
			}
		}
	})
}
