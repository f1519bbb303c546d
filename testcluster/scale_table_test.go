package testcluster

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicerl/sluice/cluster"
)

// TestScaleTable measures the clusters whose sizes SLUICE_SCALE lists
// (comma-separated, e.g. SLUICE_SCALE=128,512,2000) and logs the table
// of docs/design/scale.md; without it, it is skipped. SLUICE_SCALE_COLD=1
// measures the cold start alone; SLUICE_SCALE_LIGHT=1 runs lighter full nodes
// (lighterFullNode); the light nodes of TestScaleLight are another thing.
func TestScaleTable(t *testing.T) {
	env := os.Getenv("SLUICE_SCALE")
	if env == "" {
		t.Skip("SLUICE_SCALE lists the sizes to measure")
	}
	var rows []string
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			t.Fatalf("SLUICE_SCALE=%q: want sizes of at least 2", env)
		}
		run := scaleRun{n: n, converge: 5 * time.Minute, checksPerSecond: 1000, window: 10 * time.Second,
			coldOnly: os.Getenv("SLUICE_SCALE_COLD") != ""}
		if os.Getenv("SLUICE_SCALE_LIGHT") != "" {
			run.configure = lighterFullNode
		}
		r := measureScale(t, run)
		t.Logf("%s", r)
		rows = append(rows, r.String())
	}
	t.Logf("\n%s\n%s", scaleHeader, strings.Join(rows, "\n"))
}

// lighterFullNode makes a full node cheaper to simulate: its ring is rebuilt at most
// every 5 s (not 250 ms), and it exchanges full state every 30 s (not 10 s,
// before memberlist's scaling with the cluster's size).
func lighterFullNode(_ int, cfg *cluster.Config) {
	cfg.Peer.RingSettle = 5 * time.Second
	cfg.Gossip.PushPullInterval = 30 * time.Second
}
