package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestFreshNodeExportsKnownSeriesAtZero scrapes /metrics of a node that
// has decided nothing: every label value known in advance is there at 0
// (an alert on a fallback rate must see a series before the outage), and
// the build is described.
func TestFreshNodeExportsKnownSeriesAtZero(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	write(t, rulesPath, "rules:\n  - name: api\n    limit: 5\n    period: 1s\n    sync: owner\n  - name: log\n    limit: 5\n    period: 1s\n    algorithm: sliding_window_log\n")
	_, logs, stop := startNode(t, localArgs(filepath.Join(dir, "data"), "--rules", rulesPath, "--node-name", "fresh"), nil)
	defer stop()
	started, _ := logs.await(t, "sluice started", 0)
	resp, err := http.Get("http://" + started["admin_addr"].(string) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	var want []string
	for _, route := range []string{"owned", "forwarded", "leased", "lease_denied", "fallback"} {
		want = append(want, `sluice_owner_checks_total{route="`+route+`"} 0`)
	}
	for _, mode := range []string{"auto", "local", "gossip", "owner"} {
		for _, result := range []string{"within_limit", "over_limit"} {
			want = append(want, `sluice_checks_total{result="`+result+`",rule="inline",sync="`+mode+`"} 0`)
		}
		want = append(want, `sluice_near_limit_total{rule="inline",sync="`+mode+`"} 0`)
	}
	want = append(want,
		`sluice_checks_total{result="over_limit",rule="api",sync="owner"} 0`,
		`sluice_checks_total{result="within_limit",rule="log",sync="owner"} 0`,
		`sluice_shadow_allowed_total{rule="api"} 0`,
		`sluice_shadow_allowed_total{rule="inline"} 0`,
	)
	for _, op := range []string{"check", "lease", "return", "reserve"} {
		want = append(want, `sluice_owner_requests_total{op="`+op+`"} 0`)
	}
	for _, e := range []string{"granted", "refused", "empty"} {
		want = append(want, `sluice_leases_total{event="`+e+`"} 0`)
	}
	for _, e := range []string{"granted", "spent", "returned", "lost"} {
		want = append(want, `sluice_lease_tokens_total{event="`+e+`"} 0`)
	}
	for _, r := range []string{"sent", "received", "lost"} {
		want = append(want, `sluice_handoff_buckets_total{result="`+r+`"} 0`)
	}
	for _, r := range []string{"ok", "error"} {
		want = append(want, `sluice_rules_reloads_total{result="`+r+`"} 0`, `sluice_gossip_joins_total{result="`+r+`"} 0`,
			`sluice_peer_dials_total{result="`+r+`"} 0`)
	}
	for _, r := range []string{"key", "label", "malformed"} {
		want = append(want, `sluice_gossip_rejected_total{reason="`+r+`"} 0`)
	}
	for _, r := range []string{"auth", "malformed"} {
		want = append(want, `sluice_peer_rejected_total{reason="`+r+`"} 0`)
	}
	for _, r := range []string{"idle", "evicted", "error", "left", "goaway", "accepted_idle", "accepted_evicted"} {
		want = append(want, `sluice_peer_connections_closed_total{reason="`+r+`"} 0`)
	}
	want = append(want, `sluice_peer_connections 0`, `sluice_peer_accepted_connections 0`, `sluice_peer_resent_checks_total 0`, `sluice_gossip_mode_routed_to_owners 0`)
	for _, e := range []string{"update", "fail", "leave"} {
		want = append(want, `sluice_gossip_member_events_total{event="`+e+`"} 0`)
	}
	for _, s := range []string{"alive", "dead", "left"} {
		want = append(want, `sluice_gossip_members{state="`+s+`"} `)
	}
	for _, d := range []string{"in", "out"} {
		want = append(want, `sluice_gossip_messages_total{direction="`+d+`"} `, `sluice_gossip_bytes_total{direction="`+d+`"} `)
	}
	for _, s := range []string{"local", "gossip", "auto", "owner", "fallback"} {
		want = append(want, `sluice_store_keys{store="`+s+`"} 0`)
	}
	want = append(want, `sluice_http_request_duration_seconds_count{code="429",endpoint="check"} 0`,
		`sluice_build_info{go_version="go`, `sluice_waits_abandoned_total 0`, `sluice_store_evictions_total 0`)
	for _, w := range want {
		if !strings.Contains(metrics, "\n"+w) {
			t.Errorf("a fresh node does not export %s", w)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}
}
