package testcluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestScaleLight measures clusters of light nodes (scale_light_node_test.go)
// of the sizes SLUICE_SCALE_LIGHT_SIZES lists (comma-separated, e.g.
// SLUICE_SCALE_LIGHT_SIZES=128,512,2000), and logs the light-node table of
// docs/design/scale.md; without it, with -short and under the race
// detector it is skipped. The nodes start all at once, or
// SLUICE_SCALE_LIGHT_START_EVERY apart (a duration of virtual time, as a
// rollout starts them). Run one size per process to read the process's
// peak memory and CPU for that size. SLUICE_SCALE_HEAPPROFILE names a
// directory to write a heap profile to right after each cold start.
func TestScaleLight(t *testing.T) {
	env := os.Getenv("SLUICE_SCALE_LIGHT_SIZES")
	switch {
	case env == "":
		t.Skip("SLUICE_SCALE_LIGHT_SIZES lists the sizes to measure")
	case testing.Short():
		t.Skip("light clusters of hundreds of nodes take minutes")
	case raceEnabled:
		t.Skip("too slow under the race detector")
	}
	var every time.Duration
	if v := os.Getenv("SLUICE_SCALE_LIGHT_START_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			t.Fatalf("SLUICE_SCALE_LIGHT_START_EVERY=%q: want a duration of at least 0", v)
		}
		every = d
	}
	var rows []string
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			t.Fatalf("SLUICE_SCALE_LIGHT_SIZES=%q: want sizes of at least 2", env)
		}
		r := measureLight(t, n, every)
		t.Logf("%s", r)
		rows = append(rows, r.String())
	}
	t.Logf("\n%s\n%s", lightHeader, strings.Join(rows, "\n"))
}

// Bounds of a light measurement, in virtual time.
const (
	// lightConverge bounds each convergence.
	lightConverge = 10 * time.Minute
	// lightQuiet is the wait after the cold start before the first idle
	// window, as TestScaleTable waits (measureScale).
	lightQuiet = 15 * time.Second
	// lightWindow is the first idle window, as long as TestScaleTable's.
	lightWindow = 10 * time.Second
	// lightSettled is the datagrams per node per second under which the
	// joins' gossip has drained: what is left is memberlist's probe and
	// its ack, about 2 per node per second.
	lightSettled = 3
	// lightSettle bounds the wait for that.
	lightSettle = 10 * time.Minute
)

// lightResult is what one light measurement found. Durations are virtual
// time unless named wall.
type lightResult struct {
	n                    int
	startEvery           time.Duration // between two nodes' starts; 0: all at once
	coldStart, restart   time.Duration // the cold start from the first node's start
	afterLastStart       time.Duration // the cold start from the last node's start
	heapPerNode          uint64        // bytes, after the cold start, simulator included
	idle                 perNode       // lightWindow, lightQuiet after the cold start
	settledAfter         time.Duration // from the restart
	settled              perNode       // one push/pull interval, once the gossip drained
	settledFor           time.Duration
	rule99, rule100      time.Duration
	wallStart, wallTotal time.Duration
}

// measureLight runs n light nodes: a cold start (the nodes every apart) to
// convergence; idle
// traffic lightQuiet after it; a rule set on node 0 reaching the others;
// 10% of the nodes leaving and starting again at once; and idle traffic
// again, over one push/pull interval, once the gossip of the joins has
// drained. Each figure is logged as soon as it is measured.
func measureLight(t *testing.T, n int, every time.Duration) lightResult {
	wall := newWallClock(t)
	out := lightResult{n: n, startEvery: every}
	wall0 := wall.now()
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		f := newLightFleet(t, n, every)
		lastStart, lastLog := time.Now(), time.Now()
		if every > 0 {
			t.Logf("%d light nodes: the last started %v after the first (wall %v, %s)",
				n, lastStart.Sub(begin), wall.now().Sub(wall0).Round(time.Second), rss())
		}
		out.afterLastStart = f.await(lightConverge, "cold start converges", func() bool {
			if time.Since(lastLog) >= 5*time.Second { // progress, for sizes that take long
				lastLog = time.Now()
				t.Logf("%d light nodes: after %v (wall %v, %s) the fewest members a node sees is %d",
					n, time.Since(begin), wall.now().Sub(wall0).Round(time.Second), rss(), f.fewestSeen())
			}
			return f.converged()
		})
		out.coldStart = time.Since(begin)
		out.wallStart = wall.now().Sub(wall0)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		out.heapPerNode = ms.HeapInuse / uint64(n)
		t.Logf("%d light nodes: converged %v after the first start, %v after the last (wall %v), heap in use %d MB, %s",
			n, out.coldStart, out.afterLastStart, out.wallStart.Round(time.Second), ms.HeapInuse>>20, rss())
		writeHeapProfile(t, "light", n)

		time.Sleep(lightQuiet)
		out.idle = f.trafficOver(lightWindow)
		t.Logf("%d light nodes: idle %v after convergence: %+v", n, lightQuiet, out.idle)

		out.rule99, out.rule100 = f.ruleSpread(lightConverge)
		t.Logf("%d light nodes: a rule reached 99%% in %v, all in %v", n, out.rule99, out.rule100)

		// 10% of the nodes leave and come back at once, under their names.
		var restarted []int
		for i := 9; i < n; i += 10 {
			restarted = append(restarted, i)
		}
		start := time.Now()
		f.stop(restarted)
		for _, i := range restarted {
			f.start(i)
		}
		f.await(lightConverge, "converges after 10% restart", f.converged)
		out.restart = time.Since(start)
		t.Logf("%d light nodes: converged %v after 10%% stopped (wall %v, %s)",
			n, out.restart, wall.now().Sub(wall0).Round(time.Second), rss())

		// Idle again once the gossip of the joins (and of the restart) has
		// drained, over one push/pull interval.
		settling := time.Now()
		for time.Since(settling) < lightSettle {
			if f.trafficOver(5*time.Second).packets < lightSettled {
				break
			}
		}
		out.settledAfter = time.Since(start)
		out.settledFor = pushPullInterval(n)
		out.settled = f.trafficOver(out.settledFor)
		t.Logf("%d light nodes: gossip drained %v after the restart began; idle over %v: %+v (wall %v, %s)",
			n, out.settledAfter, out.settledFor, out.settled, wall.now().Sub(wall0).Round(time.Second), rss())
		f.killAll()
	})
	out.wallTotal = wall.now().Sub(wall0)
	return out
}

// pushPullInterval is the interval at which memberlist starts a full state
// exchange in a cluster of n, from gossip's default of 10s: scaled by
// ⌈log2 n − 5⌉ + 1 past 32 members (memberlist's pushPullScale).
func pushPullInterval(n int) time.Duration {
	d := 10 * time.Second
	mult := 1
	for m := 32; m < n; m *= 2 {
		mult++
	}
	return time.Duration(mult) * d
}

// trafficOver returns what the network carried per node per second over
// window.
func (f *lightFleet) trafficOver(window time.Duration) perNode {
	before := f.net.Traffic()
	time.Sleep(window)
	after := f.net.Traffic()
	secs := float64(len(f.nodes)) * window.Seconds()
	return perNode{
		packets:      float64(after.Packets-before.Packets) / secs,
		packetBytes:  float64(after.PacketBytes-before.PacketBytes) / secs,
		gossipStream: float64(after.StreamBytes[gossipPort]-before.StreamBytes[gossipPort]) / secs,
	}
}

// ruleSpread sets a rule on node 0 as the API would, and returns when 99%
// and when all of the nodes hold it.
func (f *lightFleet) ruleSpread(within time.Duration) (p99, all time.Duration) {
	f.t.Helper()
	const name = "scale-rule"
	if err := f.nodes[0].putRule(spec(name, 7)); err != nil {
		f.t.Fatal(err)
	}
	start := time.Now()
	need := (len(f.nodes)*99 + 99) / 100
	all = f.await(within, "a rule reaches every node", func() bool {
		held := 0
		for _, l := range f.nodes {
			if l.hasRule(name) {
				held++
			}
		}
		if held >= need && p99 == 0 {
			p99 = max(time.Since(start), time.Nanosecond)
		}
		return held == len(f.nodes)
	})
	return p99, all
}

// writeHeapProfile writes the heap profile (as of the last GC) to
// $SLUICE_SCALE_HEAPPROFILE/heap-what-n.pprof, if that is set.
func writeHeapProfile(t *testing.T, what string, n int) {
	dir := os.Getenv("SLUICE_SCALE_HEAPPROFILE")
	if dir == "" {
		return
	}
	var b bytes.Buffer
	if err := pprof.WriteHeapProfile(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("heap-%s-%d.pprof", what, n))
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("heap profile in %s", path)
}

// rss returns the process's resident memory now and at its peak, where
// the system says (Linux's /proc).
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	var now, peak string
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			now = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			peak = strings.TrimSpace(v)
		}
	}
	return "RSS " + now + ", peak " + peak
}

// String renders the result as a row of the light-node table in
// docs/design/scale.md.
func (r lightResult) String() string {
	cold := r.coldStart.String()
	if r.startEvery > 0 {
		cold = fmt.Sprintf("%v (starts %v apart; %v after the last)", r.coldStart, r.startEvery, r.afterLastStart)
	}
	return fmt.Sprintf("| %d | %s | %v | %.0f (%.0f / %.0f) | %.1f | %v | %.0f (%.0f / %.0f) over %v | %.2f | %s / %s |  %v / %v |",
		r.n, cold, r.restart,
		r.idle.bytes(), r.idle.packetBytes, r.idle.gossipStream, r.idle.packets,
		r.settledAfter, r.settled.bytes(), r.settled.packetBytes, r.settled.gossipStream, r.settledFor,
		float64(r.heapPerNode)/(1<<20), firstLook(r.rule99), firstLook(r.rule100),
		r.wallStart.Round(time.Second), r.wallTotal.Round(time.Second))
}

// firstLook renders a spread time, "at once" if it held at the first look.
func firstLook(d time.Duration) string {
	if d < pollInterval {
		return "at once"
	}
	return d.String()
}

// lightHeader is the light-node table's header.
const lightHeader = "| nodes | cold start | 10% restart | idle B/s per node (UDP / push-pull), 15 s after | packets/s per node then | gossip drained, from the restart | idle B/s per node (UDP / push-pull), drained | heap MB per node | rule 99% / 100% | wall: start / total |\n|---|---|---|---|---|---|---|---|---|---|"

// TestLightNodeSpeaksRules runs two full nodes and a light one (at node 2's
// address) on one network: a rule set on a full node reaches the light node, and one set
// on the light node is put in force on the full nodes, so the light node
// speaks the cluster's rule messages and state exchange.
func TestLightNodeSpeaksRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 2, Options{Persist: true})
		f := &lightFleet{t: t, net: c.Net, dns: c.DNS, nodes: make([]*lightNode, 3)}
		f.start(2)
		t.Cleanup(func() { f.stop([]int{2}) })
		light := f.nodes[2]
		c.Await(joinBound, "the light node joins", func() bool {
			return light.g.Load().NumAlive() == 3 && len(c.Alive(0)) == 3 && len(c.Alive(1)) == 3
		})
		if _, err := c.Node(0).PutRules([]rules.Spec{spec("from-full", 3)}); err != nil {
			t.Fatal(err)
		}
		c.Await(5*time.Second, "a full node's rule reaches the light node", func() bool { return light.hasRule("from-full") })
		if err := light.putRule(spec("from-light", 4)); err != nil {
			t.Fatal(err)
		}
		c.Await(5*time.Second, "the light node's rule is in force on the full nodes", func() bool {
			for _, i := range []int{0, 1} {
				if r, err := c.Node(i).Rules().Get("from-light"); err != nil || r.Limit.Rate != 4 {
					return false
				}
			}
			return true
		})
	})
}
