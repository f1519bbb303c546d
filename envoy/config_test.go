package envoy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// exampleConfig is written as envoyproxy/ratelimit's README documents its
// format; each descriptor is one documented feature.
const exampleConfig = `
domain: edge
descriptors:
  # Nested: a limit on the second level, for one source and destination.
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        value: mock
        rate_limit:
          unit: minute
          requests_per_unit: 3
  # Key only: each value is its own counter.
  - key: remote_address
    rate_limit:
      unit: hour
      requests_per_unit: 5
  # A value with its own rule beside the key-only default: unlimited.
  - key: remote_address
    value: 10.0.0.1
    rate_limit:
      unlimited: true
  # Shadow mode: decided and counted, never denied.
  - key: shadowed
    shadow_mode: true
    rate_limit:
      unit: second
      requests_per_unit: 1
  # Named limits, and one that replaces another.
  - key: user
    rate_limit:
      name: per_user
      unit: minute
      requests_per_unit: 4
  - key: plan
    value: free
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: plan
    value: gold
    rate_limit:
      unit: minute
      requests_per_unit: 100
      replaces:
        - name: per_user
  # A trailing wildcard: each matching value is its own counter.
  - key: path
    value: /api/v1/*
    rate_limit:
      unit: minute
      requests_per_unit: 2
  # A parent without a limit and a key-only child with one.
  - key: tenant
    value: acme
    descriptors:
      - key: user
        rate_limit:
          unit: second
          requests_per_unit: 2
  # Neither limit nor children: an allow-list entry.
  - key: allowed
  # The longer units it accepts, in any case, and the sluice extension.
  - key: weekly
    rate_limit: {unit: WEEK, requests_per_unit: 70}
  - key: monthly
    detailed_metric: true
    rate_limit: {unit: month, requests_per_unit: 300}
  - key: yearly
    rate_limit: {unit: year, requests_per_unit: 3650}
  - key: burst
    rate_limit:
      unit: second
      requests_per_unit: 10
      sluice: {algorithm: token_bucket, sync: owner, burst: 20}
  - key: blocked
    rate_limit: {unit: second, requests_per_unit: 0}
  # share_threshold: every value the wildcard matches counts together.
  - key: file
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  # An empty rate_limit is no limit, as for the reference.
  - key: empty
    rate_limit:
`

func parseOne(t *testing.T, name, yaml string) (*Config, error) {
	t.Helper()
	return Parse([]rules.Doc{{Name: name, Data: []byte(yaml)}})
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := parseOne(t, "edge.yaml", yaml)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func entries(kv ...string) []Entry {
	var out []Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// TestMatchAsDocumented checks the README's matching rules: nested
// descriptors match level by level, a value beats a key-only descriptor,
// a trailing '*' matches a prefix, the limit is the one on the level the
// last entry reaches, unknown domains and keys match nothing.
func TestMatchAsDocumented(t *testing.T) {
	c := mustParse(t, exampleConfig)
	cases := []struct {
		name    string
		domain  string
		entries []Entry
		want    uint32 // requests per unit; 0 for no limit
		key     string
		unlim   bool
	}{
		{"nested", "edge", entries("source_cluster", "proxy", "destination_cluster", "mock"), 3, "source_cluster=proxy&destination_cluster=mock", false},
		{"nested, other destination", "edge", entries("source_cluster", "proxy", "destination_cluster", "other"), 0, "", false},
		{"parent alone has no limit", "edge", entries("source_cluster", "proxy"), 0, "", false},
		{"key only", "edge", entries("remote_address", "10.9.9.9"), 5, "remote_address=10.9.9.9", false},
		{"value beats key only", "edge", entries("remote_address", "10.0.0.1"), 0, "remote_address=10.0.0.1", true},
		{"wildcard", "edge", entries("path", "/api/v1/items"), 2, "path=%2Fapi%2Fv1%2Fitems", false},
		{"wildcard, other prefix", "edge", entries("path", "/api/v2/items"), 0, "", false},
		{"child key under a fixed parent", "edge", entries("tenant", "acme", "user", "bob"), 2, "tenant=acme&user=bob", false},
		{"other parent value", "edge", entries("tenant", "other", "user", "bob"), 0, "", false},
		{"deeper than the config", "edge", entries("remote_address", "1.2.3.4", "x", "y"), 0, "", false},
		{"allow-list entry", "edge", entries("allowed", "x"), 0, "", false},
		{"empty rate_limit", "edge", entries("empty", "x"), 0, "", false},
		{"shared wildcard", "edge", entries("file", "files/a.pdf"), 2, "file=files%2F%2A", false},
		{"shared wildcard, another value", "edge", entries("file", "files/b.csv"), 2, "file=files%2F%2A", false},
		{"unknown domain", "other", entries("remote_address", "1.2.3.4"), 0, "", false},
		{"week", "edge", entries("weekly", "a"), 70, "weekly=a", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, key := c.Match(tc.domain, tc.entries)
			switch {
			case tc.want == 0 && !tc.unlim:
				if l != nil {
					t.Fatalf("matched %+v, want no limit", l)
				}
			case l == nil:
				t.Fatalf("no limit, want %d", tc.want)
			case l.RequestsPerUnit != tc.want || l.Unlimited != tc.unlim || key != tc.key:
				t.Fatalf("got %d/unlimited=%v key %q, want %d/unlimited=%v key %q", l.RequestsPerUnit, l.Unlimited, key, tc.want, tc.unlim, tc.key)
			}
		})
	}
}

// TestRulesCountInEpochAlignedWindows checks that each limit becomes a
// sluice rule counting in fixed windows of its unit (aligned to the epoch,
// as envoyproxy/ratelimit counts), a month being 30 days and a year 365,
// unless the sluice extension says otherwise.
func TestRulesCountInEpochAlignedWindows(t *testing.T) {
	c := mustParse(t, exampleConfig)
	byName := map[string]rules.Rule{}
	for _, r := range c.Rules() {
		byName[r.Name] = r
	}
	want := map[string]bucket.Limit{
		"envoy.edge.source_cluster_proxy.destination_cluster_mock": {Rate: 3, Period: time.Minute, Burst: 3, Algo: bucket.FixedWindow},
		"envoy.edge.monthly": {Rate: 300, Period: 30 * 24 * time.Hour, Burst: 300, Algo: bucket.FixedWindow},
		"envoy.edge.yearly":  {Rate: 3650, Period: 365 * 24 * time.Hour, Burst: 3650, Algo: bucket.FixedWindow},
		"envoy.edge.burst":   {Rate: 10, Period: time.Second, Burst: 20, Algo: bucket.TokenBucket},
	}
	for name, l := range want {
		r, ok := byName[name]
		if !ok {
			t.Fatalf("no rule %s; have %v", name, c.Rules())
		}
		if r.Limit != l {
			t.Errorf("%s: limit %+v, want %+v", name, r.Limit, l)
		}
	}
	if r := byName["envoy.edge.burst"]; r.Sync != rules.SyncOwner {
		t.Errorf("extension sync: got %v, want owner", r.Sync)
	}
	if r := byName["envoy.edge.shadowed"]; !r.Shadow {
		t.Error("shadow_mode did not make a shadow rule")
	}
	for _, name := range []string{"envoy.edge.remote_address_10.0.0.1", "envoy.edge.blocked"} {
		if _, ok := byName[name]; ok {
			t.Errorf("%s has a rule; unlimited and zero limits are decided without one", name)
		}
	}
	if l, _ := c.Match("edge", entries("blocked", "x")); l == nil || l.RequestsPerUnit != 0 || l.Unit != rls.RateLimitResponse_RateLimit_SECOND {
		t.Errorf("requests_per_unit 0: matched %+v, want a limit of 0 per second", l)
	}
}

// TestBadConfigNamesFileAndPath checks that each error the format defines
// names the file, the line and the path of the field at fault.
func TestBadConfigNamesFileAndPath(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "domain: d\ndescriptors:\n  - key: a\n    rate_limt: {unit: second}\n", "edge.yaml:4: descriptors[0].rate_limt: unknown field"},
		{"unknown top field", "domain: d\nfoo: 1\n", "edge.yaml:2: foo: unknown field"},
		{"bad unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 1\n", `edge.yaml:5: descriptors[0].rate_limit.unit: unknown unit "minutes"`},
		{"missing unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {requests_per_unit: 1}\n", "descriptors[0].rate_limit.unit: is required"},
		{"unit with unlimited", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: second}\n", "descriptors[0].rate_limit.unit: an unlimited descriptor takes no unit"},
		{"duplicate descriptor", "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        value: x\n      - key: b\n        value: x\n", "edge.yaml:7: descriptors[0].descriptors[1]: duplicate descriptor d.a.b_x"},
		{"missing key", "domain: d\ndescriptors:\n  - value: x\n", "edge.yaml:3: descriptors[0].key: is required"},
		{"empty domain", "domain: \"\"\n", "edge.yaml:1: domain: must not be empty"},
		{"no domain", "descriptors: []\n", "domain: is required"},
		{"negative requests", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n", "descriptors[0].rate_limit.requests_per_unit: must be a whole number"},
		{"replaces itself", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {name: n, unit: second, requests_per_unit: 1, replaces: [{name: n}]}\n", "replaces[0].name: a limit cannot replace itself"},
		{"empty replaces", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: \"\"}]}\n", "replaces[0].name: is required"},
		{"quota mode", "domain: d\ndescriptors:\n  - key: a\n    quota_mode: true\n", "descriptors[0].quota_mode: is not supported"},
		{"share_threshold without wildcard", "domain: d\ndescriptors:\n  - key: a\n    value: b\n    share_threshold: true\n", "edge.yaml:5: descriptors[0].share_threshold: needs a wildcard value"},
		{"bad extension", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, sluice: {sync: everywhere}}\n", "descriptors[0].rate_limit.sluice.sync: unknown sync mode"},
		{"burst on a window", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, sluice: {burst: 5}}\n", "descriptors[0].rate_limit.sluice.burst"},
		{"not a mapping", "domain: d\ndescriptors:\n  - just a string\n", "descriptors[0]: must be a mapping"},
		{"bad yaml", "domain: [\n", "edge.yaml: yaml:"},
		{"empty file", "  \n", "edge.yaml: empty configuration file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOne(t, "edge.yaml", tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestLoadDirectoryOneDomainPerFile checks that a directory holds several
// domains, one file each, and that a domain given by two files is an
// error naming both.
func TestLoadDirectoryOneDomainPerFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	write("b.yml", "domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 2}\n")
	write(".hidden.yaml", "not: [valid\n")
	write("notes.txt", "ignored")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Domains(), ","); got != "a,b" {
		t.Fatalf("domains %s, want a,b", got)
	}
	if l, _ := c.Match("b", entries("k", "v")); l == nil || l.RequestsPerUnit != 2 {
		t.Fatalf("domain b: matched %+v, want 2 per second", l)
	}
	write("c.yaml", "domain: a\n")
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "c.yaml:1: domain") || !strings.Contains(err.Error(), "a.yaml") {
		t.Fatalf("duplicate domain: err = %v, want one naming c.yaml and a.yaml", err)
	}
}

// TestRuleNamesAreValidAndUnique checks that limits whose path holds
// characters a rule name cannot, or is very long, still get valid,
// distinct rule names.
func TestRuleNamesAreValidAndUnique(t *testing.T) {
	long := strings.Repeat("x", 200)
	c := mustParse(t, "domain: d\ndescriptors:\n"+
		"  - key: path\n    value: /a b\n    rate_limit: {unit: second, requests_per_unit: 1}\n"+
		"  - key: path\n    value: /a_b\n    rate_limit: {unit: second, requests_per_unit: 1}\n"+
		"  - key: "+long+"1\n    rate_limit: {unit: second, requests_per_unit: 1}\n"+
		"  - key: "+long+"2\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	if _, err := (&rules.Set{}).With(c.Rules()); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.Rules() {
		if _, err := (rules.Spec{Name: r.Name, Limit: 1, Period: "1s"}).Rule(); err != nil {
			t.Errorf("rule name %q: %v", r.Name, err)
		}
	}
}

// TestUnitsRoundTrip checks that every unit the format accepts has its
// window and is found again from it (as an answer's current_limit does).
func TestUnitsRoundTrip(t *testing.T) {
	for _, name := range strings.Split(unitNames, ", ") {
		u, ok := parseUnit(strings.ToUpper(name))
		if !ok {
			t.Fatalf("unit %q not parsed", name)
		}
		p, _ := UnitPeriod(u)
		if back, ok := unitOf(p); !ok || back != u {
			t.Fatalf("unit %s: window %v gives back %v", name, p, back)
		}
	}
	if _, ok := parseUnit("unknown"); ok {
		t.Fatal(`"unknown" parsed as a unit`)
	}
}
