package testcluster

import (
	"testing"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// Bounds TestScaleFleet holds a cluster of fleetSize nodes to.
const (
	// fleetSize is the cluster TestScaleFleet runs.
	fleetSize = 512
	// fleetConverge bounds a cold start, in virtual time (22 to 28 s measured:
	// see docs/design/scale.md).
	fleetConverge = 60 * time.Second
	// fleetBytesPerNode bounds what the network carries per node per
	// second, gossip and peer calls together, at 1,000 owner-mode checks a
	// second over the whole cluster.
	fleetBytesPerNode = 10_000
	// fleetGossipBytesPerNode bounds memberlist and counter gossip alone
	// (datagrams and state exchanges) per node per second.
	fleetGossipBytesPerNode = 4_000
	// fleetRuleSpread bounds a rule change's trip to every node.
	fleetRuleSpread = 5 * time.Second
)

// fleetPeerConns caps the peer connections each node of the CI test may
// dial and keep open (--peer-max-conns), well below the owners its checks
// go to, so that the cap is what holds them down.
const fleetPeerConns = 8

// TestScaleFleet runs fleetSize full nodes: a cold start converges, 1,000
// owner-mode checks a second over 100 keys through random nodes cost each
// node a bounded traffic and peer connections, a rule set on one node
// reaches all of them, one hot key checked through 64 nodes at 1,000 times
// its rate is admitted exactly (never above burst + rate × elapsed, at
// least 95% of it).
//
// It is skipped under the race detector, where even 128 nodes take
// minutes to converge. SLUICE_SCALE measures larger clusters, and the
// restart of 10% of the nodes (TestScaleTable).
func TestScaleFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("512 nodes take minutes")
	}
	if raceEnabled {
		t.Skip("too slow under the race detector (128 nodes took 3.5 minutes to converge); run go test -run TestScaleFleet ./testcluster/")
	}
	n := fleetSize
	const hotFor, slice = 20 * time.Second, 10 * time.Second
	var hot *hotKey
	r := measureScale(t, scaleRun{
		n: fleetSize, converge: fleetConverge, checksPerSecond: 1000, window: 5 * time.Second, lean: true, peerMaxConns: fleetPeerConns,
		during: func(t *testing.T, c *Cluster) {
			var through []int
			for i := 0; i < n && len(through) < 64; i += n / 64 {
				through = append(through, i)
			}
			hot = hammer(c, rules.SyncOwner, "fleet-abuser", abuseLimit, 1000, hotFor, slice, through, nil)
		},
	})
	t.Logf("%s\n%s", scaleHeader, r)
	if b := r.loaded.bytes(); b > fleetBytesPerNode {
		t.Errorf("%.0f B/s per node under load, over %d", b, fleetBytesPerNode)
	}
	if g := r.loaded.packetBytes + r.loaded.gossipStream; g > fleetGossipBytesPerNode {
		t.Errorf("gossip %.0f B/s per node, over %d", g, fleetGossipBytesPerNode)
	}
	if r.peerDialed > fleetPeerConns {
		t.Errorf("a node holds %d peer connections it dialled open, over its cap of %d", r.peerDialed, fleetPeerConns)
	}
	if r.failures > 0 {
		t.Errorf("%.0f owner-mode checks failed", r.failures)
	}
	if r.rule100 > fleetRuleSpread {
		t.Errorf("a rule took %v to reach every node, over %v", r.rule100, fleetRuleSpread)
	}
	want := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*hotFor.Seconds()/abuseLimit.Period.Seconds())
	got := hot.admitted.Load()
	t.Logf("hot key: %d checks, %d admitted of %d (%.3f×), per %v %v", hot.checks.Load(), got, want, float64(got)/float64(want), slice, hot.slices)
	if got > want || float64(got) < 0.95*float64(want) {
		t.Errorf("hot key admitted %d: want at most burst + rate × elapsed = %d, and at least 95%% of it", got, want)
	}
	if f := hot.failed.Load(); f > 0 {
		t.Errorf("hot key: %d checks failed", f)
	}
}
