package testcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// scaleRun shapes one measurement of a large cluster.
type scaleRun struct {
	n int
	// configure, if set, edits each node's config (a lighter cluster).
	configure func(i int, cfg *cluster.Config)
	// converge bounds each convergence, in virtual time.
	converge time.Duration
	// checksPerSecond are the owner-mode checks of the load window, over
	// scaleKeys keys, each through a random node.
	checksPerSecond int
	// window is how long traffic is measured, idle and under load.
	window time.Duration
	// coldOnly stops after the cold start.
	coldOnly bool
	// lean leaves out what the CI test does not assert: the idle window,
	// the restart of 10% of the nodes, and the graceful leave at the end
	// (every node is killed instead).
	lean bool
	// during, if set, runs on the converged cluster after the measurements
	// (the CI test's hot key).
	during func(t *testing.T, c *Cluster)
	// peerMaxConns caps each node's dialled peer connections (0: the
	// client's default, --peer-max-conns's).
	peerMaxConns int
}

// scaleKeys is how many owner-mode keys the load window checks.
const scaleKeys = 100

// scaleResult is what one run measured. Durations are virtual time unless
// named wall.
type scaleResult struct {
	n                           int
	coldStart, restart          time.Duration
	wallStart, wallTotal        time.Duration
	heapPerNode                 uint64 // bytes, after the cold start, simulator included
	idle, loaded                perNode
	peerDialed, peerOpenMax     int     // most streams one node dialled; most open at one node
	peerOpenMean                float64 // mean streams open per node, either end
	rule99, rule100             time.Duration
	forwardsPerSecond, failures float64
}

// wallClock reads the real clock for code inside a synctest bubble, where
// time.Now is virtual: a goroutine outside the bubble answers, over
// channels made outside it. One goroutine at a time may call now.
type wallClock struct{ ask, answer chan time.Time }

func newWallClock(t *testing.T) wallClock {
	w := wallClock{make(chan time.Time), make(chan time.Time)}
	go func() {
		for range w.ask {
			w.answer <- time.Now()
		}
	}()
	t.Cleanup(func() { close(w.ask) })
	return w
}

func (w wallClock) now() time.Time {
	w.ask <- time.Time{}
	return <-w.answer
}

// aliveCount reports whether every given node sees exactly n members alive
// and has n on its ring: with no other node ever started, that is
// convergence, checked in one pass without building name lists.
func aliveCount(c *Cluster, n int, nodes []int) bool {
	for _, i := range nodes {
		node := c.Live(i)
		if node == nil || len(node.RingMembers()) != n {
			return false
		}
	}
	return c.Converged(nodes...)
}

// fewestSeen returns the fewest members alive in any node's view.
func fewestSeen(c *Cluster, nodes []int) int {
	fewest := len(nodes)
	for _, i := range nodes {
		fewest = min(fewest, len(c.Alive(i)))
	}
	return fewest
}

// measureScale runs r: a cold start of r.n nodes to convergence, idle and
// loaded traffic, peer connections, a rule change's spread, and 10% of
// the nodes restarted at once.
func measureScale(t *testing.T, r scaleRun) scaleResult {
	wall := newWallClock(t)
	out := scaleResult{n: r.n}
	wall0 := wall.now()
	synctest.Test(t, func(t *testing.T) {
		c := New(t, r.n, Options{PeerMaxConns: r.peerMaxConns, Configure: func(i int, cfg *cluster.Config) {
			if i == 0 && cfg.Persist == nil { // the node rules are changed on
				p, err := rules.OpenPersist(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				cfg.Persist = p
			}
			if r.configure != nil {
				r.configure(i, cfg)
			}
		}})
		all := c.All()
		begin, lastLog := time.Now(), time.Now()
		out.coldStart = c.Await(r.converge, "cold start converges", func() bool {
			if time.Since(lastLog) >= 5*time.Second { // progress, for sizes that take long
				lastLog = time.Now()
				t.Logf("%d nodes: after %v (wall %v) the fewest members a node sees is %d",
					r.n, time.Since(begin), wall.now().Sub(wall0).Round(time.Second), fewestSeen(c, all))
			}
			return aliveCount(c, r.n, all)
		})
		out.wallStart = wall.now().Sub(wall0)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		out.heapPerNode = ms.HeapInuse / uint64(r.n)
		t.Logf("%d nodes: converged in %v (wall %v), heap in use %d MB", r.n, out.coldStart, out.wallStart.Round(time.Second), ms.HeapInuse>>20)
		writeHeapProfile(t, "full", r.n)

		if r.coldOnly {
			stopAllAtOnce(c)
			return
		}
		// Past the joins' state exchanges, and past the gossip of the joins:
		// memberlist retransmits each node's arrival 4 × log10(n+1) times, and
		// 5 s after a 512-node cold start converged nodes still sent 8 KB/s.
		time.Sleep(15 * time.Second)
		if r.lean {
			defer killAll(c)
		} else {
			out.idle = trafficOver(c, r.window, nil)
		}
		var forwards, fails float64
		out.loaded = trafficOver(c, r.window, func(ctx context.Context) {
			forwards, fails = ownerLoad(ctx, c, r.checksPerSecond)
		})
		out.forwardsPerSecond, out.failures = forwards/r.window.Seconds(), fails
		dialed, accepted := c.Net.OpenStreams(peerPort)
		for _, i := range all {
			a := c.PeerAddrOf(i)
			out.peerDialed = max(out.peerDialed, dialed[a])
			out.peerOpenMax = max(out.peerOpenMax, dialed[a]+accepted[a])
			out.peerOpenMean += float64(dialed[a]+accepted[a]) / float64(r.n)
		}

		out.rule99, out.rule100 = ruleSpread(t, c, r.converge)

		if r.during != nil {
			r.during(t, c)
		}
		if r.lean {
			return
		}

		// 10% of the nodes leave and come back at once, under their names.
		var restarted []int
		for i := 9; i < r.n; i += 10 {
			restarted = append(restarted, i)
		}
		start := time.Now()
		stopAtOnce(c, restarted)
		for _, i := range restarted {
			c.Start(i)
		}
		c.Await(r.converge, "converges after 10% restart", func() bool { return aliveCount(c, r.n, all) })
		out.restart = time.Since(start)
		stopAllAtOnce(c)
	})
	out.wallTotal = wall.now().Sub(wall0)
	return out
}

// trafficOver returns what the network carried per node per second over
// window, while load (if set) runs until its context ends.
func trafficOver(c *Cluster, window time.Duration, load func(ctx context.Context)) perNode {
	before := c.Net.Traffic()
	start := time.Now()
	if load != nil {
		ctx, cancel := context.WithTimeout(context.Background(), window)
		load(ctx)
		cancel()
	}
	time.Sleep(window - time.Since(start))
	after := c.Net.Traffic()
	secs := float64(len(c.All())) * time.Since(start).Seconds()
	return perNode{
		packets:      float64(after.Packets-before.Packets) / secs,
		packetBytes:  float64(after.PacketBytes-before.PacketBytes) / secs,
		gossipStream: float64(after.StreamBytes[gossipPort]-before.StreamBytes[gossipPort]) / secs,
		peerStream:   float64(after.StreamBytes[peerPort]-before.StreamBytes[peerPort]) / secs,
	}
}

// ownerLoad checks scaleKeys owner-mode keys, limited far above what they
// are asked, at perSecond in all, each through a random running node, from
// 10 callers, until ctx ends. It returns the checks made and those that
// failed.
func ownerLoad(ctx context.Context, c *Cluster, perSecond int) (checks, failed float64) {
	const callers = 10
	limit := bucket.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	every := time.Second * callers / time.Duration(perSecond)
	var mu sync.Mutex
	var wg sync.WaitGroup
	nodes := c.All()
	for g := range callers {
		rng := rand.New(rand.NewPCG(uint64(g), 21))
		wg.Go(func() {
			var n, bad float64
			for ctx.Err() == nil {
				node := c.Live(nodes[rng.IntN(len(nodes))])
				if node != nil {
					req := &cluster.Request{Key: "scale-" + strconv.Itoa(rng.IntN(scaleKeys)), Inline: limit, Cost: 1, Sync: rules.SyncOwner, SyncSet: true}
					if _, err := node.Check(ctx, req); err != nil && ctx.Err() == nil {
						bad++
					}
					n++
				}
				time.Sleep(every)
			}
			mu.Lock()
			checks, failed = checks+n, failed+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return checks, failed
}

// ruleSpread puts a rule on node 0 through its API and returns when 99%
// and when all of the nodes hold it.
func ruleSpread(t *testing.T, c *Cluster, within time.Duration) (p99, all time.Duration) {
	t.Helper()
	const name = "scale-rule"
	if _, err := c.Node(0).PutRules([]rules.Spec{spec(name, 7)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	nodes := c.All()
	need := (len(nodes)*99 + 99) / 100
	all = c.Await(within, "a rule reaches every node", func() bool {
		held := 0
		for _, i := range nodes {
			if slices.ContainsFunc(c.Node(i).RulesInForce(), func(r rules.Rule) bool { return r.Name == name }) {
				held++
			}
		}
		if held >= need && p99 == 0 {
			p99 = max(time.Since(start), time.Nanosecond)
		}
		return held == len(nodes)
	})
	return p99, all
}

// String renders the result as a row of the table in docs/design/scale.md.
func (r scaleResult) String() string {
	return fmt.Sprintf("| %d | %v | %v | %.0f | %.0f | %.0f | %.0f / %.0f / %.0f | %d / %d / %.1f | %.1f | %v / %v | %v / %v |",
		r.n, r.coldStart, r.restart,
		r.idle.bytes(), r.loaded.bytes(), r.loaded.packets,
		r.loaded.packetBytes, r.loaded.gossipStream, r.loaded.peerStream,
		r.peerDialed, r.peerOpenMax, r.peerOpenMean,
		float64(r.heapPerNode)/(1<<20), r.rule99, r.rule100,
		r.wallStart.Round(time.Second), r.wallTotal.Round(time.Second))
}

// scaleHeader is the table's header.
const scaleHeader = "| nodes | cold start | 10% restart | idle B/s per node | loaded B/s per node | packets/s per node | UDP / push-pull / peer B/s | peer conns dialled max / open max / open mean | heap MB per node | rule 99% / 100% | wall: start / total |\n|---|---|---|---|---|---|---|---|---|---|---|"

// stopAtOnce stops the given nodes together, each leaving the cluster.
func stopAtOnce(c *Cluster, nodes []int) {
	var wg sync.WaitGroup
	for _, i := range nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// stopAllAtOnce stops every node together: the cluster's cleanup stops
// them one after another, which at thousands of nodes takes minutes.
func stopAllAtOnce(c *Cluster) { stopAtOnce(c, c.All()) }

// killAll crashes every node at once: no leave to announce, no handoff.
func killAll(c *Cluster) {
	for _, i := range c.All() {
		c.Net.Kill(c.Member(i).Addr)
		c.Net.Kill(c.PeerAddrOf(i))
	}
	stopAllAtOnce(c)
}
