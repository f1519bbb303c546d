package testcluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// TestHotKeyMixedCosts drives one key at 1,000× its rate in tokens through
// every node of 5 and 8, each check costing 1, 2, 7, 30 or 100 tokens in
// turn (the largest a sixth of the burst): the tokens admitted stay in
// the band of TestHotKeyAtAnyRate. A node still in its cold window that
// had heard from every peer took the pass for "a node that does not know
// the spenders yet": each admitted one check above its share from the
// same tokens, in the same epoch (8 nodes: 840 in the first slice, then
// 0 and 59 while the overshoot was paid back).
func TestHotKeyMixedCosts(t *testing.T) {
	costs := []int64{1, 7, 30, 2, 100}
	for _, n := range []int{5, 8} {
		for _, mode := range []rules.Sync{rules.SyncGossip, rules.SyncAuto} {
			t.Run(fmt.Sprintf("%d-nodes/%v", n, mode), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c := New(t, n)
					c.AwaitConverged(joinBound, c.All()...)
					const callers = 2
					d, slice := time.Minute, 10*time.Second
					mean := 0.0
					for _, x := range costs {
						mean += float64(x) / float64(len(costs))
					}
					arrivals := 1000 * float64(abuseLimit.Rate) / abuseLimit.Period.Seconds() / mean
					every := time.Duration(float64(n*callers) / arrivals * float64(time.Second))
					h := &hotKey{}
					ctx, stop := context.WithCancel(context.Background())
					var wg sync.WaitGroup
					for i := range n {
						for g := range callers {
							wg.Go(func() {
								time.Sleep(every * time.Duration(i*callers+g) / time.Duration(n*callers))
								for s := i*3 + g; ctx.Err() == nil; s++ {
									cost := costs[s%len(costs)]
									res, err := c.Node(i).Check(ctx, &cluster.Request{Key: "abuser", Inline: abuseLimit, Cost: cost, Sync: mode, SyncSet: true})
									h.observe(ctx, &res, err, cost)
									time.Sleep(every)
								}
							})
						}
					}
					h.record(d, slice)
					stop()
					wg.Wait()
					hotKeyBand(t, fmt.Sprintf("%d nodes, %v, 1000×, mixed costs (tokens)", n, mode), h, abuseLimit, d, slice)
				})
			})
		}
	}
}
