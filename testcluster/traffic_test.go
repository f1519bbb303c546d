package testcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// perNode is a cluster's traffic per node per second.
type perNode struct {
	packets, packetBytes, gossipStream, peerStream float64
}

func (p perNode) bytes() float64 { return p.packetBytes + p.gossipStream + p.peerStream }

// measureTraffic runs n nodes, each checking keys of mode sync at
// checksPerSecond (uniformly over 1,000 keys, each limited far above what
// it is asked), for window after convergence, and returns what the network
// carried per node per second.
func measureTraffic(t *testing.T, n int, mode rules.Sync, checksPerSecond int, window time.Duration, maxMembers int) perNode {
	var out perNode
	synctest.Test(t, func(t *testing.T) {
		c := New(t, n, Options{Configure: func(_ int, cfg *cluster.Config) { cfg.GossipSync.MaxMembers = maxMembers }})
		c.AwaitConverged(2*joinBound, c.All()...)
		awaitRings(c, 10*time.Second, c.All()...)
		time.Sleep(15 * time.Second) // past the join's push/pulls
		limit := bucket.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
		before := c.Net.Traffic()
		start := time.Now()
		var wg sync.WaitGroup
		for _, i := range c.All() {
			node := c.Node(i)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			wg.Go(func() {
				every := time.Second / time.Duration(checksPerSecond)
				for time.Since(start) < window {
					req := &cluster.Request{Key: "k" + strconv.Itoa(rng.IntN(1000)), Inline: limit, Cost: 1, Sync: mode, SyncSet: true}
					if _, err := node.Check(context.Background(), req); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(every)
				}
			})
		}
		wg.Wait()
		after := c.Net.Traffic()
		secs := float64(n) * time.Since(start).Seconds()
		out = perNode{
			packets:      float64(after.Packets-before.Packets) / secs,
			packetBytes:  float64(after.PacketBytes-before.PacketBytes) / secs,
			gossipStream: float64(after.StreamBytes[gossipPort]-before.StreamBytes[gossipPort]) / secs,
			peerStream:   float64(after.StreamBytes[peerPort]-before.StreamBytes[peerPort]) / secs,
		}
	})
	return out
}

// TestAutoModeTrafficBounded measures, at 200 checks per second per node,
// what each node sends in a cluster of 4 and of 8, with auto mode's switch
// at 4 members (so the test stays small): gossip mode's traffic per node
// grows with the cluster (every node tells every other), and auto mode,
// which routes to owners above the switch, stays below gossip at the switch.
//
// SLUICE_TRAFFIC_TABLE=1 measures the whole table in
// docs/design/gossip.md instead (3, 8, 16 and 32 nodes, every mode).
func TestAutoModeTrafficBounded(t *testing.T) {
	if os.Getenv("SLUICE_TRAFFIC_TABLE") != "" {
		trafficTable(t)
		return
	}
	const rate, window, switchAt = 200, 5 * time.Second, 4
	gossip4 := measureTraffic(t, 4, rules.SyncGossip, rate, window, switchAt)
	gossip8 := measureTraffic(t, 8, rules.SyncGossip, rate, window, switchAt)
	auto8 := measureTraffic(t, 8, rules.SyncAuto, rate, window, switchAt)
	t.Logf("bytes per node per second: gossip 4 nodes %.0f, 8 nodes %.0f; auto (switch at 4) 8 nodes %.0f", gossip4.bytes(), gossip8.bytes(), auto8.bytes())
	if gossip8.bytes() < 1.5*gossip4.bytes() {
		t.Fatalf("gossip mode per node: %.0f B/s at 8 nodes, %.0f at 4: it should grow with the cluster", gossip8.bytes(), gossip4.bytes())
	}
	if auto8.bytes() > gossip4.bytes() {
		t.Fatalf("auto mode per node at 8 nodes: %.0f B/s, more than gossip at 4 (%.0f): not bounded", auto8.bytes(), gossip4.bytes())
	}
}

func trafficTable(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| nodes | mode | packets/s | UDP B/s | push/pull B/s | peer B/s | total B/s |\n|---|---|---|---|---|---|---|\n")
	for _, n := range []int{3, 8, 16, 32} {
		for _, mode := range []rules.Sync{rules.SyncGossip, rules.SyncOwner, rules.SyncAuto} {
			p := measureTraffic(t, n, mode, 200, 30*time.Second, 8)
			fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", n, mode, p.packets, p.packetBytes, p.gossipStream, p.peerStream, p.bytes())
		}
	}
	t.Log(b.String())
}
