package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// TestScaleDownHalfAtOnce stops half the cluster, gracefully, as an
// autoscaler scaling down does, while twenty keys are each driven at 100
// or 1,000 times their rate through every node. Each key is held to burst
// + rate × elapsed + a fair share of the burst per member that left (a
// new owner's first checks before its bucket came).
//
// At once: a leaving owner hands each bucket to its owner on the ring
// without it, and that owner is often leaving too. It refused the bucket,
// which was lost, and the survivor that came to own the key started it
// full. Six nodes less three: 8 of 20 keys past the bound, the worst
// 1.41× burst + rate × elapsed (ten nodes less five in auto mode: 1.17×).
// Now a refused bucket goes on to its owner on the ring without the
// members that refused it: nothing lost. In auto mode ten nodes less five
// also cross auto's threshold into gossip mode.
//
// Apart: each leave also moves keys between members that stay (the ring
// spreads its load again), and such a key started full at its new owner
// while the old one's handoff was on its way (ten less five, 300 ms
// apart, 1,000×: 1.47–1.99× in 10 of 10 runs); now it starts from a fair
// share there. And every node fell back to a fresh fair share of each
// leaver's keys in turn (100 ms to 1 s apart, 100×: 1.28–1.37×); now a
// node's share of a key its owner denied starts from what it earned
// since. Measured now: 1.00–1.17× at once and apart.
func TestScaleDownHalfAtOnce(t *testing.T) {
	limit := bucket.Limit{Rate: 60, Period: time.Minute, Burst: 60}
	for _, tc := range []struct {
		mode  rules.Sync
		nodes int
		mult  float64
		apart time.Duration
	}{
		{rules.SyncOwner, 6, 100, 0},
		{rules.SyncAuto, 10, 100, 0},
		{rules.SyncOwner, 10, 1000, 300 * time.Millisecond},
		{rules.SyncAuto, 10, 100, 200 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("%v/%d/%v", tc.mode, tc.nodes, tc.apart), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(t, tc.nodes)
				c.AwaitConverged(joinBound, c.All()...)
				leavers := c.All()[tc.nodes/2:]
				const keys, run = 20, time.Minute
				hs := make([]*hotKey, keys)
				var wg sync.WaitGroup
				for k := range keys {
					wg.Go(func() {
						var during func()
						if k == 0 {
							during = func() {
								time.Sleep(20 * time.Second)
								var stops sync.WaitGroup
								for n, i := range leavers {
									stops.Go(func() {
										time.Sleep(time.Duration(n) * tc.apart)
										c.Stop(i)
									})
								}
								stops.Wait()
							}
						}
						hs[k] = hammer(c, tc.mode, fmt.Sprintf("key-%d", k), limit, tc.mult, run, 10*time.Second, c.All(), during)
					})
				}
				wg.Wait()
				var lost, rerouted float64
				for _, i := range c.All() {
					lost += c.Counter(i, "sluice_handoff_buckets_total", "lost")
					rerouted += c.Counter(i, "sluice_handoff_buckets_total", "rerouted")
				}
				exact := limit.Burst + int64(float64(limit.Rate)*run.Seconds()/limit.Period.Seconds())
				bound := exact + limit.Burst*int64(len(leavers))/int64(tc.nodes)
				var worst int64
				for k, h := range hs {
					got := h.admitted.Load()
					worst = max(worst, got)
					if got > bound {
						t.Errorf("key-%d: admitted %d > its bound (%d); slices %v", k, got, bound, h.slices)
					}
					if n := h.failed.Load(); n > 0 {
						t.Errorf("key-%d: %d checks failed", k, n)
					}
				}
				t.Logf("%d of %d nodes stopped %v apart: buckets rerouted %v, lost %v; worst key admitted %d of %d (%.3f×), bound %d",
					len(leavers), tc.nodes, tc.apart, rerouted, lost, worst, exact, float64(worst)/float64(exact), bound)
			})
		})
	}
}

// TestWholeClusterStopsQuietly stops every node at once, as a deployment
// deleted does, after each has come to own buckets: each new owner is
// leaving too, and nobody is left to start the keys full, so no node
// warns that its handoff failed (it did, on every node: an operator
// would look for the fault). The buckets are counted lost.
func TestWholeClusterStopsQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var warnings warnLog
		c := New(t, 3, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.Logger = slog.New(&warnings) }})
		c.AwaitConverged(joinBound, c.All()...)
		for k := range 30 {
			req := cluster.Request{Key: fmt.Sprintf("key-%d", k), Inline: bucket.Limit{Rate: 10, Period: time.Minute, Burst: 10}, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
			if _, err := c.Node(k%3).Check(context.Background(), &req); err != nil {
				t.Fatal(err)
			}
		}
		var stops sync.WaitGroup
		for _, i := range c.All() {
			stops.Go(func() { c.Stop(i) })
		}
		stops.Wait()
		var lost float64
		for _, i := range c.All() {
			lost += c.Counter(i, "sluice_handoff_buckets_total", "lost")
		}
		if lost == 0 {
			t.Fatal("no bucket counted lost: the test did not make the nodes hand off to each other")
		}
		for _, w := range warnings.all() {
			t.Errorf("warned while the whole cluster stopped: %s", w)
		}
		t.Logf("%v buckets lost as the whole cluster stopped", lost)
	})
}

// warnLog is a slog.Handler keeping the messages of records at warning
// level and above.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (w *warnLog) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}

func (w *warnLog) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnLog) WithGroup(string) slog.Handler      { return w }

func (w *warnLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}
