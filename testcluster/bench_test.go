package testcluster

import (
	"context"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// BenchmarkCheckRoute measures one check through cluster.Node by route, in
// real time, on a 3-node cluster over the in-memory network (no socket
// cost: see BenchmarkPeerTCP in transport for that): local mode, owner mode
// on the owner, and owner mode forwarded from another node (peer client,
// frame coding, peer server, and back). Keys are chosen per route so that
// their owner is the right node.
func BenchmarkCheckRoute(b *testing.B) {
	c := New(b, 3)
	c.AwaitConverged(joinBound, c.All()...)
	awaitRings(c, 5*time.Second, c.All()...)
	limit := bucket.Limit{Rate: 1 << 40, Period: time.Second, Burst: 1 << 40}
	keyOwnedBy := func(owner string) string {
		for i := 0; ; i++ {
			k := "bench-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
			res, _ := c.Node(0).Check(context.Background(), &transport.CheckRequest{Key: k, Inline: limit, Sync: rules.SyncOwner, SyncSet: true})
			if res.Owner == owner {
				return k
			}
		}
	}
	self := c.Member(0).Name
	for _, tc := range []struct {
		name string
		req  *transport.CheckRequest
	}{
		{"local", &transport.CheckRequest{Key: "bench", Inline: limit, Cost: 1, Sync: rules.SyncLocal, SyncSet: true}},
		{"owner-here", &transport.CheckRequest{Key: keyOwnedBy(self), Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}},
		{"forwarded", &transport.CheckRequest{Key: keyOwnedBy(c.Member(1).Name), Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			node := c.Node(0)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if res, err := node.Check(ctx, tc.req); err != nil || res.Fallback {
						b.Errorf("check: %v, fallback %v", err, res.Fallback)
						return
					}
				}
			})
		})
	}
}
