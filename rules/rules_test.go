package rules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// example is the rules file the README documents; it must parse.
const example = `
rules:
  # 100 requests a minute per user, with room for a burst of 20 more.
  - name: api-per-user
    limit: 100
    period: 1m
    burst: 120
    algorithm: token_bucket
    sync: owner
    descriptors:
      - key: route
        value: /api
      - key: user
  # 10 logins a second across the whole fleet, per source address.
  - name: login
    limit: 10
    period: 1s
    descriptors:
      - key: remote_address
  # Used by name only: {"rule": "export", "key": "tenant-7"}.
  - name: export
    limit: 5
    period: 1h
    sync: local
`

func TestParseExample(t *testing.T) {
	s, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 {
		t.Fatalf("%d rules, want 3", s.Len())
	}
	r, err := s.Get("api-per-user")
	if err != nil {
		t.Fatal(err)
	}
	want := bucket.Limit{Rate: 100, Period: time.Minute, Burst: 120}
	if r.Limit != want || r.Sync != SyncOwner || r.Limit.Algo != bucket.TokenBucket || len(r.Descriptors) != 2 {
		t.Fatalf("api-per-user = %+v", r)
	}
	login, _ := s.Get("login")
	if login.Limit.Burst != 10 || login.Sync != SyncAuto {
		t.Fatalf("login: burst should default to the limit and sync to auto: %+v", login)
	}
	if names := s.Rules(); names[0].Name != "api-per-user" || names[2].Name != "login" {
		t.Fatalf("Rules not sorted by name: %v", names)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"rules:\n  - {name: a, limit: 0, period: 1s}", "rules[0](a).limit: must be a positive integer"},
		{"rules:\n  - {name: a, limit: 1, period: 1x}", `rules[0](a).period: "1x" is not a duration`},
		{"rules:\n  - {name: a, limit: 1, period: 1us}", "rules[0](a).period: must be at least 1ms"},
		{"rules:\n  - {name: a, limit: 1}", "rules[0](a).period: is required"},
		{"rules:\n  - {name: a, limit: 1, period: 1s, burst: -1}", "rules[0](a).burst: must not be negative"},
		{"rules:\n  - {name: a, limit: 1, period: 1s, sync: eventual}", `rules[0](a).sync: unknown sync mode "eventual"`},
		{"rules:\n  - {name: a, limit: 1, period: 1s, algorithm: gcra}", `rules[0](a).algorithm: unknown algorithm "gcra"`},
		{"rules:\n  - {name: a, limit: 1, period: 1s, algorithm: fixed_window, burst: 5}", "rules[0](a).burst: is not used by fixed_window"},
		{"rules:\n  - {name: a, limit: 200000, period: 1s, algorithm: sliding_window_log}", "rules[0](a).limit: must be at most 100000 for sliding_window_log"},
		{"rules:\n  - {name: a, limit: 1, period: 1s, algorithm: sliding_window_log, sync: gossip}", "rules[0](a).sync: gossip cannot keep sliding_window_log exact"},
		{"rules:\n  - {name: 'a b', limit: 1, period: 1s}", `rules[0](a b).name: "a b" is not a valid name`},
		{"rules:\n  - {name: a, limit: 1, period: 1s}\n  - {name: a, limit: 2, period: 1s}", `rules[1].name: duplicate rule name "a"`},
		{"rules:\n  - {name: a, limit: 1, period: 1s, descriptors: [{key: x}, {key: x}]}", `rules[0](a).descriptors[1].key: duplicate key "x"`},
		{"rules:\n  - {name: a, limit: 1, period: 1s, descriptors: [{value: x}]}", `rules[0](a).descriptors[0].key: is required`},
		{"rules:\n  - {name: a, limit: 1, period: 1s, limits: 3}", "field limits not found"},
		{"rules: [", "yaml:"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
	if _, err := Parse(nil); err != nil {
		t.Fatalf("an empty document is an empty rule set, got %v", err)
	}
	empty := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, empty, " \n")
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "empty rules file") {
		t.Fatalf("an empty file must be rejected (it may be mid-write), got %v", err)
	}
	write(t, empty, "rules: []")
	if s, err := Load(empty); err != nil || s.Len() != 0 {
		t.Fatalf("rules: [] is no rules, got %v", err)
	}
}

func TestMatch(t *testing.T) {
	s, err := Parse([]byte(`
rules:
  - {name: any-user, limit: 1, period: 1s, descriptors: [{key: user}]}
  - {name: route-user, limit: 1, period: 1s, descriptors: [{key: route}, {key: user}]}
  - {name: api-user, limit: 1, period: 1s, descriptors: [{key: route, value: /api}, {key: user}]}
  - {name: by-name, limit: 1, period: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc      map[string]string
		rule, key string
	}{
		{map[string]string{"user": "42"}, "any-user", "user=42"},
		{map[string]string{"user": "42", "ip": "10.0.0.1"}, "any-user", "user=42"},
		{map[string]string{"user": "42", "route": "/x"}, "route-user", "route=%2Fx&user=42"},
		{map[string]string{"user": "42", "route": "/api"}, "api-user", "route=%2Fapi&user=42"},
		// A value cannot forge another request's key.
		{map[string]string{"user": "1&user=2"}, "any-user", "user=1%26user%3D2"},
	} {
		r, key, err := s.Match(tc.desc)
		if err != nil || r.Name != tc.rule || key != tc.key {
			t.Errorf("Match(%v) = %q, %q, %v; want %q, %q", tc.desc, r.Name, key, err, tc.rule, tc.key)
		}
	}
	_, _, err = s.Match(map[string]string{"route": "/api"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "descriptors" {
		t.Fatalf("no match: got %v, want a FieldError on descriptors", err)
	}
	if _, err := s.Get("nope"); !errors.As(err, &fe) || fe.Field != "rule" {
		t.Fatalf("unknown rule: got %v", err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "rules: [{name: a, limit: 1, period: 1s}]")
	write(t, filepath.Join(dir, "b.yml"), "rules: [{name: b, limit: 1, period: 1s}]")
	write(t, filepath.Join(dir, "notes.txt"), "not rules")
	write(t, filepath.Join(dir, ".hidden.yaml"), "garbage: [")
	s, err := Load(dir)
	if err != nil || s.Len() != 2 {
		t.Fatalf("Load(dir) = %v rules, %v; want 2", s.Len(), err)
	}
	write(t, filepath.Join(dir, "c.yaml"), "rules: [{name: a, limit: 2, period: 1s}]")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "c.yaml") {
		t.Fatalf("a name duplicated across files must be rejected naming the file, got %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file: want an error")
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

type loaded struct {
	set *Set
	err error
}

func startWatcher(t *testing.T, path string) (*Watcher, chan loaded) {
	t.Helper()
	ch := make(chan loaded, 16)
	w, err := NewWatcher(path, func(s *Set, err error) { ch <- loaded{s, err} })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w, ch
}

func next(t *testing.T, ch chan loaded) loaded {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return loaded{}
	}
}

// nextAfterInPlaceWrite is next for a file rewritten in place (truncated,
// then written): a reload may catch it empty, which must be rejected, never
// applied, before the whole content is loaded.
func nextAfterInPlaceWrite(t *testing.T, ch chan loaded) loaded {
	t.Helper()
	for {
		l := next(t, ch)
		if l.err == nil || !strings.Contains(l.err.Error(), "empty rules file") {
			return l
		}
	}
}

func TestWatcherReloadsOnEditAndRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	write(t, path, "rules: [{name: a, limit: 1, period: 1s}]")
	_, ch := startWatcher(t, path)

	write(t, path, "rules: [{name: a, limit: 2, period: 1s}]")
	if l := nextAfterInPlaceWrite(t, ch); l.err != nil || mustGet(t, l.set, "a").Limit.Rate != 2 {
		t.Fatalf("after edit: %+v", l)
	}
	write(t, path, "rules: [{name: a, limit: oops, period: 1s}]")
	if l := nextAfterInPlaceWrite(t, ch); l.err == nil || l.set != nil {
		t.Fatalf("an invalid file must be reported and not applied, got %+v", l)
	}
	tmp := filepath.Join(dir, ".rules.yaml.tmp")
	write(t, tmp, "rules: [{name: a, limit: 3, period: 1s}]")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if l := next(t, ch); l.err != nil || mustGet(t, l.set, "a").Limit.Rate != 3 {
		t.Fatalf("after rename: %+v", l)
	}
}

// TestWatcherFollowsConfigMapSwap replays how the kubelet updates a mounted
// ConfigMap: files live in a timestamped directory, "..data" links to it,
// and the visible file links through "..data"; an update writes a new
// directory and atomically renames a new "..data" link over the old one.
func TestWatcherFollowsConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, rules string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "rules.yaml"), rules)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_22_v1", "rules: [{name: a, limit: 1, period: 1s}]")
	if err := os.Symlink("..data/rules.yaml", filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	for i, path := range []string{filepath.Join(dir, "rules.yaml"), dir} {
		_, ch := startWatcher(t, path)
		rate := int64(10 + i)
		version("..v"+strconv.Itoa(i), "rules: [{name: a, limit: "+strconv.FormatInt(rate, 10)+", period: 1s}]")
		if l := next(t, ch); l.err != nil || mustGet(t, l.set, "a").Limit.Rate != rate {
			t.Fatalf("watching %s after swap: %+v", path, l)
		}
	}
}

func TestWatcherReloadOnDemand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, "rules: [{name: a, limit: 1, period: 1s}]")
	w, ch := startWatcher(t, path)
	w.Reload() // unchanged: nothing to report
	w.Reload()
	write(t, path, "rules: [{name: a, limit: 2, period: 1s}]")
	w.Reload()
	// The first report is the change: the unchanged reloads reported nothing.
	if l := nextAfterInPlaceWrite(t, ch); l.err != nil || mustGet(t, l.set, "a").Limit.Rate != 2 {
		t.Fatalf("first report after reloads: %+v", l)
	}
}

func mustGet(t *testing.T, s *Set, name string) Rule {
	t.Helper()
	if s == nil {
		t.Fatalf("no rule set")
	}
	r, err := s.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEveryAlgorithmParses: each algorithm is accepted by name, with a
// burst (the depth of a leaky bucket) only for the buckets.
func TestEveryAlgorithmParses(t *testing.T) {
	set, err := Parse([]byte(`
rules:
  - {name: tb, limit: 10, period: 1s, burst: 20}
  - {name: lb, limit: 10, period: 1s, burst: 5, algorithm: leaky_bucket}
  - {name: fw, limit: 10, period: 1m, algorithm: fixed_window, sync: gossip}
  - {name: sl, limit: 10, period: 1m, algorithm: sliding_window_log, sync: owner}
  - {name: sw, limit: 10, period: 1m, algorithm: sliding_window}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bucket.Limit{
		"tb": {Rate: 10, Period: time.Second, Burst: 20},
		"lb": {Rate: 10, Period: time.Second, Burst: 5, Algo: bucket.LeakyBucket},
		"fw": {Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.FixedWindow},
		"sl": {Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.SlidingWindowLog},
		"sw": {Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.SlidingWindow},
	}
	for name, l := range want {
		r, err := set.Get(name)
		if err != nil || r.Limit != l {
			t.Errorf("%s: %+v, %v; want %+v", name, r.Limit, err, l)
		}
	}
}

func TestShadowParses(t *testing.T) {
	s, err := Parse([]byte("rules: [{name: dark, limit: 1, period: 1s, shadow: true}, {name: lit, limit: 1, period: 1s}]"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Get("dark"); !d.Shadow {
		t.Fatal("shadow: true did not make a shadow rule")
	}
	if l, _ := s.Get("lit"); l.Shadow {
		t.Fatal("a rule is in shadow by default")
	}
}

func TestSetWithAddsRulesAndRefusesDuplicateNames(t *testing.T) {
	base, err := Parse([]byte("rules:\n  - name: a\n    limit: 1\n    period: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	extra := Rule{Name: "b", Limit: base.Rules()[0].Limit}
	s, err := base.With([]Rule{extra})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || base.Len() != 1 {
		t.Fatalf("With: got %d rules (base %d), want 2 (base 1)", s.Len(), base.Len())
	}
	if _, err := s.Get("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := base.With([]Rule{{Name: "a"}}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("With a duplicate name: err = %v, want one naming it", err)
	}
}
