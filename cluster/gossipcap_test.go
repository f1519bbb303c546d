package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// topologyOf returns a topology of members nodes with caps.
func topologyOf(t *testing.T, members int, caps gossipCaps) *topology {
	t.Helper()
	names := make([]string, members)
	for i := range names {
		names[i] = fmt.Sprintf("node-%d", i)
	}
	r, err := ring.New(names, ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &topology{ring: r, caps: caps}
}

// TestRoutesAtGossipCaps routes every mode in clusters on either side of
// auto's and gossip's caps (8 and 32, the defaults): each gossiping mode
// goes to owners one member past its own cap; local and owner never move.
func TestRoutesAtGossipCaps(t *testing.T) {
	caps := gossipCaps{auto: 8, gossip: 32}
	for _, tc := range []struct {
		members      int
		auto, gossip route
	}{
		{1, routeReplicas, routeReplicas},
		{8, routeReplicas, routeReplicas},
		{9, routeOwners, routeReplicas},
		{32, routeOwners, routeReplicas},
		{33, routeOwners, routeOwners},
		{2000, routeOwners, routeOwners},
	} {
		topo := topologyOf(t, tc.members, caps)
		for mode, want := range map[rules.Sync]route{rules.SyncAuto: tc.auto, rules.SyncGossip: tc.gossip, rules.SyncLocal: routeLocal, rules.SyncOwner: routeOwners} {
			if got := routeOf(mode, topo); got != want {
				t.Errorf("%d members: %v is decided by %s, want %s", tc.members, mode, routeName(got), routeName(want))
			}
		}
	}
}

// TestAutoCappedByGossipMode: auto gossips with gossip mode's machinery,
// so a switch set above gossip mode's cap is lowered to it; zero fields
// take the defaults, 8 and 32.
func TestAutoCappedByGossipMode(t *testing.T) {
	for _, tc := range []struct {
		cfg  GossipSyncConfig
		want gossipCaps
	}{
		{GossipSyncConfig{}, gossipCaps{auto: 8, gossip: 32}},
		{GossipSyncConfig{MaxMembers: 16}, gossipCaps{auto: 16, gossip: 32}},
		{GossipSyncConfig{MaxMembers: 64}, gossipCaps{auto: 32, gossip: 32}},
		{GossipSyncConfig{MaxMembers: 8, GossipModeMaxMembers: 4}, gossipCaps{auto: 4, gossip: 4}},
		{GossipSyncConfig{MaxMembers: 3, GossipModeMaxMembers: 100}, gossipCaps{auto: 3, gossip: 100}},
	} {
		n := newNode(t, Config{GossipSync: tc.cfg})
		if n.gossipCaps != tc.want {
			t.Errorf("%+v: caps %+v, want %+v", tc.cfg, n.gossipCaps, tc.want)
		}
	}
}

// TestGossipCapCrossingIsVisible walks a node's topology from 4 members to
// 5, 6 and back to 4 with gossip mode capped at 4 and a rule set to gossip
// mode: one warning naming the rule when the cluster passes the cap (none
// while it stays above), one note when it is back, and the gauge follows.
func TestGossipCapCrossingIsVisible(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	n := newNode(t, Config{Metrics: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), GossipSync: GossipSyncConfig{GossipModeMaxMembers: 4}})
	set, err := rules.Parse([]byte("rules: [{name: chatty, limit: 5, period: 1s, sync: gossip}, {name: quiet, limit: 5, period: 1s}]"))
	if err != nil {
		t.Fatal(err)
	}
	n.SetRules(set)
	if got, err := testutil.GatherAndCount(reg, "sluice_gossip_mode_routed_to_owners"); err != nil || got != 1 {
		t.Fatalf("sluice_gossip_mode_routed_to_owners: %d series, %v; want 1", got, err)
	}
	routed := func() float64 { return testutil.ToFloat64(n.gossipRouted) }
	topo := func(members int) *topology { return topologyOf(t, members, n.gossipCaps) }
	for _, step := range []struct {
		from, to    int
		warn, info  int
		routedAfter float64
	}{
		{4, 5, 1, 0, 1},
		{5, 6, 0, 0, 1},
		{6, 4, 0, 1, 0},
		{4, 3, 0, 0, 0},
	} {
		logs.Reset()
		n.observeGossipCap(topo(step.from), topo(step.to))
		warn, info := strings.Count(logs.String(), "level=WARN"), strings.Count(logs.String(), "level=INFO")
		if warn != step.warn || info != step.info || routed() != step.routedAfter {
			t.Errorf("%d → %d members, capped at 4: %d warnings, %d notes, gauge %v; want %d, %d, %v\n%s",
				step.from, step.to, warn, info, routed(), step.warn, step.info, step.routedAfter, logs.String())
		}
		if step.warn > 0 && !strings.Contains(logs.String(), "chatty") {
			t.Errorf("the warning does not name the gossip-mode rule: %s", logs.String())
		}
		if step.warn > 0 && strings.Contains(logs.String(), "quiet") {
			t.Errorf("the warning names a rule in auto mode: %s", logs.String())
		}
	}
}
