package transport_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// fileRules is the number of rules in testRules.
const fileRules = 4

// newRulesAPI serves a standalone node with the test rules file and, if
// dir is set, a data directory.
func newRulesAPI(t *testing.T, dir string) (*transport.Server, *cluster.Node) {
	t.Helper()
	var persist *rules.Persist
	if dir != "" {
		var err error
		if persist, err = rules.OpenPersist(dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { persist.Close() })
	}
	node := newNode(t, cluster.Config{Persist: persist})
	return transport.NewServer(transport.ServerConfig{Limiter: node, Rules: node, Registerer: prometheus.NewRegistry()}), node
}

// listed returns the rules GET /v1/rules shows, by name.
func listed(t *testing.T, h *transport.Server) map[string]map[string]any {
	t.Helper()
	r := do(t, h, "GET", "/v1/rules", "")
	if r.code != 200 {
		t.Fatalf("GET /v1/rules: %d %s", r.code, r.raw)
	}
	out := map[string]map[string]any{}
	for _, v := range r.body["rules"].([]any) {
		m := v.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func TestRulesAPI(t *testing.T) {
	h, _ := newRulesAPI(t, t.TempDir())
	if got := listed(t, h); len(got) != fileRules || got["api"]["origin"] != "file" || got["api"]["version"] != nil {
		t.Fatalf("file rules: %v", got)
	}
	// One rule in the path; a list; an API rule replacing a file rule.
	if r := do(t, h, "PUT", "/v1/rules/new", `{"limit": 5, "period": "1m"}`); r.code != 200 {
		t.Fatalf("PUT one: %d %s", r.code, r.raw)
	}
	r := do(t, h, "PUT", "/v1/rules", `{"rules": [{"name": "api", "limit": 30, "period": "1m"}, {"name": "b", "limit": 1, "period": "1s", "sync": "gossip"}]}`)
	if r.code != 200 || len(r.body["rules"].([]any)) != 2 {
		t.Fatalf("PUT a list: %d %s", r.code, r.raw)
	}
	got := listed(t, h)
	if len(got) != fileRules+2 || got["api"]["origin"] != "api" || got["api"]["limit"] != 30.0 || got["new"]["version"] == nil {
		t.Fatalf("after the PUTs: %v", got)
	}
	// Checks use the API's version of the rule at once.
	if r := do(t, h, "POST", "/v1/check", `{"rule": "api", "key": "k"}`); r.body["limit"] != 30.0 {
		t.Fatalf("check after replacing the file's rule: %s", r.raw)
	}
	// Deleting the API rule brings the file's back.
	if r := do(t, h, "DELETE", "/v1/rules/api", ""); r.code != 200 || r.body["deleted"].(map[string]any)["deleted"] != true {
		t.Fatalf("DELETE: %d %s", r.code, r.raw)
	}
	if got := listed(t, h); got["api"]["origin"] != "file" || got["api"]["limit"] != 3.0 {
		t.Fatalf("after deleting the API rule: %v", got["api"])
	}
}

func TestRulesAPIRejects(t *testing.T) {
	h, _ := newRulesAPI(t, t.TempDir())
	before := listed(t, h)
	for _, c := range []struct {
		method, target, body string
		code                 int
		field                string
	}{
		{"PUT", "/v1/rules", `{"rules": [{"name": "ok", "limit": 1, "period": "1s"}, {"name": "bad", "limit": 0, "period": "1s"}]}`, 400, "rules[1](bad).limit"},
		{"PUT", "/v1/rules", `{"rules": [{"name": "x", "limit": 1, "period": "1s"}], "name": "y"}`, 400, "rules"},
		{"PUT", "/v1/rules", `{"rules": []}`, 400, "rules"},
		{"PUT", "/v1/rules", `{"name": "x", "limit": 1, "period": "soon"}`, 400, "period"},
		{"PUT", "/v1/rules", `{"name": "x", "limit": 1, "period": "1s", "colour": "red"}`, 400, "colour"},
		{"PUT", "/v1/rules/x", `{"name": "y", "limit": 1, "period": "1s"}`, 400, "name"},
		{"PUT", "/v1/rules/x", `{"name": "x", "limit": 1, "period": "1s", "sync": "sometimes"}`, 400, "sync"},
		{"PUT", "/v1/rules", `{"name": "x", "limit": 1, "period": "1s"`, 400, "body"},
		{"PUT", "/v1/rules", `{"rules": [` + strings.Repeat(`{"name": "x", "limit": 1, "period": "1s"},`, 40000) + `]}`, 413, "body"},
		{"DELETE", "/v1/rules/api", "", 404, "api"}, // a file rule is changed in the file
		{"DELETE", "/v1/rules/nope", "", 404, "nope"},
	} {
		r := do(t, h, c.method, c.target, c.body)
		if r.code != c.code || !strings.Contains(r.body["error"].(string), c.field) {
			t.Errorf("%s %s %.60s: %d %s, want %d naming %q", c.method, c.target, c.body, r.code, r.raw, c.code, c.field)
		}
	}
	if after := listed(t, h); len(after) != len(before) {
		t.Fatalf("rejected requests changed the rules: %v", after)
	}
}

func TestRulesAPIReadOnlyWithoutDataDir(t *testing.T) {
	h, _ := newRulesAPI(t, "")
	if r := do(t, h, "PUT", "/v1/rules/x", `{"limit": 1, "period": "1s"}`); r.code != 403 || !strings.Contains(r.body["error"].(string), "--data-dir") {
		t.Fatalf("PUT without a data dir: %d %s", r.code, r.raw)
	}
	if len(listed(t, h)) != fileRules {
		t.Fatal("a refused PUT changed the rules")
	}
}

func TestRulesAPISurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	serve := func() (*transport.Server, func() error) {
		p, err := rules.OpenPersist(dir)
		if err != nil {
			t.Fatal(err)
		}
		node, err := cluster.New(cluster.Config{Persist: p})
		if err != nil {
			t.Fatal(err)
		}
		node.SetRules(&rules.Set{})
		return transport.NewServer(transport.ServerConfig{Limiter: node, Rules: node, Registerer: prometheus.NewRegistry()}), p.Close
	}
	h, stop := serve()
	if r := do(t, h, "PUT", "/v1/rules/kept", `{"limit": 7, "period": "1m"}`); r.code != 200 {
		t.Fatalf("PUT: %d %s", r.code, r.raw)
	}
	stop()
	h, stop = serve()
	defer stop()
	if got := listed(t, h); got["kept"]["limit"] != 7.0 || got["kept"]["origin"] != "api" {
		t.Fatalf("after a restart: %v", got)
	}
}

// TestShadowRule: a rule in shadow mode decides and counts, and allows
// everything, saying in the body and a header what it would have done.
func TestShadowRule(t *testing.T) {
	h, _ := newRulesAPI(t, t.TempDir())
	if r := do(t, h, "PUT", "/v1/rules/dark", `{"limit": 2, "period": "1h", "shadow": true}`); r.code != 200 {
		t.Fatalf("PUT: %d %s", r.code, r.raw)
	}
	for i := range 3 {
		r := do(t, h, "POST", "/v1/check", `{"rule": "dark", "key": "k"}`)
		denied := i == 2
		if r.code != 200 || r.body["allowed"] != true || r.body["shadow"] != true || r.body["shadow_denied"] != denied {
			t.Fatalf("check %d: %d %s", i, r.code, r.raw)
		}
		if want := map[bool]string{false: "allow", true: "deny"}[denied]; r.header.Get("Sluice-Shadow") != want {
			t.Fatalf("check %d: Sluice-Shadow %q, want %q", i, r.header.Get("Sluice-Shadow"), want)
		}
		if denied && r.header.Get("Retry-After") != "" {
			t.Fatal("a shadow denial sent Retry-After")
		}
	}
	// The bucket holds what enforcement would have left: a real rule of
	// the same limit, replacing it, starts from there.
	do(t, h, "PUT", "/v1/rules/dark", `{"limit": 2, "period": "1h"}`)
	if r := do(t, h, "POST", "/v1/check", `{"rule": "dark", "key": "k"}`); r.code != 429 {
		t.Fatalf("enforced after the dark launch: %d %s", r.code, r.raw)
	}
}
