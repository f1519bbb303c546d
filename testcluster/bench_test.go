package testcluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// BenchmarkCheckRoute measures one check through cluster.Node by route, in
// real time, on a 3-node cluster over the in-memory network (no socket
// cost: see BenchmarkPeerTCP in transport for that), one hot key per route:
// local mode; gossip mode (the replica, and counting the admission for the
// peers); auto mode, which gossips at this size; owner mode on the owner; owner mode forwarded from a node with
// leases off (peer client, frame coding, peer server, and back); and owner
// mode at a node with leases on, which decides the hot key from its lease.
// Keys are chosen so that node 1 owns them. Besides ns/op it reports the
// median of sampled latencies (p50-ns) and, for the owner-mode routes, the
// requests the owner answered per 1,000 checks (owner-ops/1k).
func BenchmarkCheckRoute(b *testing.B) {
	// Node 0 forwards everything; node 2 takes leases.
	c := New(b, 3, Options{Configure: func(i int, cfg *cluster.Config) {
		if i == 0 {
			cfg.Leases.Threshold = -1
		}
	}})
	c.AwaitConverged(joinBound, c.All()...)
	limit := bucket.Limit{Rate: 1 << 40, Period: time.Second, Burst: 1 << 40}
	owner := c.Member(1).Name
	keyOwnedBy := func(owner string) string {
		for i := 0; ; i++ {
			k := "bench-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
			res, _ := c.Node(0).Check(context.Background(), &cluster.Request{Key: k, Inline: limit, Sync: rules.SyncOwner, SyncSet: true})
			if res.Owner == owner {
				return k
			}
		}
	}
	key := keyOwnedBy(owner)
	ownerOps := func() float64 {
		return c.Counter(1, "sluice_owner_requests_total", "")
	}
	for _, tc := range []struct {
		name string
		node int
		req  *cluster.Request
	}{
		{"local", 0, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncLocal, SyncSet: true}},
		{"gossip", 0, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncGossip, SyncSet: true}},
		{"auto", 0, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncAuto, SyncSet: true}},
		{"owner-here", 1, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}},
		{"forwarded", 0, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}},
		{"leased", 2, &cluster.Request{Key: key, Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			node := c.Node(tc.node)
			ctx := context.Background()
			var mu sync.Mutex
			var samples []time.Duration
			ops0 := ownerOps()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				var local []time.Duration
				for i := 0; pb.Next(); i++ {
					var start time.Time
					if i%64 == 0 {
						start = time.Now()
					}
					if res, err := node.Check(ctx, tc.req); err != nil || res.Fallback {
						b.Errorf("check: %v, fallback %v", err, res.Fallback)
						return
					}
					if i%64 == 0 {
						local = append(local, time.Since(start))
					}
				}
				mu.Lock()
				samples = append(samples, local...)
				mu.Unlock()
			})
			if len(samples) > 0 {
				slices.Sort(samples)
				b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
			}
			if tc.name == "forwarded" || tc.name == "leased" {
				b.ReportMetric((ownerOps()-ops0)*1000/float64(b.N), "owner-ops/1k")
			}
		})
	}
}
