// Package envoy lets sluice stand in for envoyproxy/ratelimit: it reads that
// server's YAML configuration unchanged (one domain per file, nested
// descriptors) and answers Envoy's rate limit protocol,
// envoy.service.ratelimit.v3.RateLimitService, over gRPC.
//
// Every limit in the configuration becomes a named sluice rule (Config.Rules),
// which the node holds beside the rules of its own rules file, so Envoy's
// limits are decided like every other check: in the rule's sync mode, with
// leases and fallback, in the metrics, on the status page and under shadow
// mode. The service matches each descriptor of a request to its limit
// (Config.Match) and asks the node to decide them together
// (cluster.Node.CheckAll).
package envoy

import (
	"fmt"
	"hash/fnv"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Config is a validated Envoy rate limit configuration: its domains, each a
// tree of descriptors, and the sluice rules their limits became. It is
// immutable and safe for concurrent use. The zero Config has no domains:
// every descriptor matches nothing.
type Config struct {
	domains map[string]*node
	rules   []rules.Rule
}

// node is one level of a domain's descriptor tree.
type node struct {
	// children are the descriptors below, by key and value (exact) or
	// by key alone (any value).
	children map[childKey]*node
	// wildcards are the descriptors below whose value holds a '*', in file
	// order: the first that matches wins.
	wildcards []wildcard
	// limit is this descriptor's limit; nil when it has none.
	limit *Limit
	// shared is set on a wildcard descriptor with share_threshold: every
	// value it matches counts in one bucket, keyed by the pattern.
	shared bool
}

// childKey names a child: Value is "" for a key-only descriptor.
type childKey struct{ Key, Value string }

// wildcard is a descriptor whose value is a pattern: '*' matches any run
// of characters (a trailing '*' is a prefix match).
type wildcard struct {
	key     string
	pattern string   // the value as written
	parts   []string // the value split at '*'
	node    *node
}

// matches reports whether v matches the pattern split into parts.
func (w *wildcard) matches(v string) bool {
	first, last := w.parts[0], w.parts[len(w.parts)-1]
	if len(v) < len(first)+len(last) || !strings.HasPrefix(v, first) || !strings.HasSuffix(v, last) {
		return false
	}
	mid := v[len(first) : len(v)-len(last)]
	for _, p := range w.parts[1 : len(w.parts)-1] {
		i := strings.Index(mid, p)
		if i < 0 {
			return false
		}
		mid = mid[i+len(p):]
	}
	return true
}

// Limit is the limit of one descriptor of the configuration.
type Limit struct {
	// Rule is the name of the sluice rule that decides it; "" for an
	// unlimited descriptor and for requests_per_unit 0 (every request is
	// over).
	Rule string
	// Name is the limit's name, which other limits may replace.
	Name string
	// Replaces lists the names of the limits this one replaces when both
	// apply to one request.
	Replaces []string
	// Unlimited descriptors are never limited.
	Unlimited bool
	// Shadow limits are decided and counted but never deny.
	Shadow bool
	// RequestsPerUnit and Unit are the limit as written, for the answer's
	// current_limit.
	RequestsPerUnit uint32
	Unit            rls.RateLimitResponse_RateLimit_Unit
	// Path is where the limit is written: the file and the descriptor.
	Path string
}

// parseUnit returns the unit named name, as envoyproxy/ratelimit reads
// units (any case): second to year, a month being 30 days and a year 365.
func parseUnit(name string) (rls.RateLimitResponse_RateLimit_Unit, bool) {
	u, ok := rls.RateLimitResponse_RateLimit_Unit_value[strings.ToUpper(name)]
	if !ok {
		return 0, false
	}
	unit := rls.RateLimitResponse_RateLimit_Unit(u)
	_, known := UnitPeriod(unit)
	return unit, known
}

// UnitPeriod returns the length of unit's window, and false for an unknown
// unit.
func UnitPeriod(unit rls.RateLimitResponse_RateLimit_Unit) (time.Duration, bool) {
	const day = 24 * time.Hour
	switch unit {
	case rls.RateLimitResponse_RateLimit_SECOND:
		return time.Second, true
	case rls.RateLimitResponse_RateLimit_MINUTE:
		return time.Minute, true
	case rls.RateLimitResponse_RateLimit_HOUR:
		return time.Hour, true
	case rls.RateLimitResponse_RateLimit_DAY:
		return day, true
	case rls.RateLimitResponse_RateLimit_WEEK:
		return 7 * day, true
	case rls.RateLimitResponse_RateLimit_MONTH:
		return 30 * day, true
	case rls.RateLimitResponse_RateLimit_YEAR:
		return 365 * day, true
	}
	return 0, false
}

// unitOf returns the unit whose window is period, if there is one.
func unitOf(period time.Duration) (rls.RateLimitResponse_RateLimit_Unit, bool) {
	for u := range rls.RateLimitResponse_RateLimit_Unit_name {
		if p, ok := UnitPeriod(rls.RateLimitResponse_RateLimit_Unit(u)); ok && p == period {
			return rls.RateLimitResponse_RateLimit_Unit(u), true
		}
	}
	return 0, false
}

// unitNames lists the units for error messages, shortest first.
const unitNames = "second, minute, hour, day, week, month, year"

// Domains returns the configuration's domains, sorted.
func (c *Config) Domains() []string {
	out := make([]string, 0, len(c.domains))
	for d := range c.domains {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// Rules returns the sluice rules that decide the configuration's limits, in
// file order. A node holds them beside its own rules (rules.Set.With).
func (c *Config) Rules() []rules.Rule { return slices.Clone(c.rules) }

// Entry is one entry of a request's descriptor.
type Entry struct{ Key, Value string }

// Match returns the limit that a descriptor's entries select in domain, and
// the bucket key they make, as envoyproxy/ratelimit matches them: the
// entries are walked down the domain's tree one level each, each taking the
// child with the same key and value, else the first wildcard value that
// matches, else the child with the key alone. The limit is the one on the
// level the last entry reaches; a walk that stops short of the last entry,
// an unknown domain, or a level without a limit give nil. The key lists
// the entries as "k=v" pairs joined by "&", values query-escaped, so each
// value (of a key-only or wildcard descriptor too) counts on its own,
// except the values a wildcard with share_threshold matches: they count
// together, under the pattern.
func (c *Config) Match(domain string, entries []Entry) (*Limit, string) {
	n := c.domains[domain]
	if n == nil || len(entries) == 0 {
		return nil, ""
	}
	keyed := entries // the entries as the key names them
	for i, e := range entries {
		var next *node
		if e.Value != "" {
			next = n.children[childKey{e.Key, e.Value}]
		}
		if next == nil {
			for j := range n.wildcards {
				if w := &n.wildcards[j]; w.key == e.Key && w.matches(e.Value) {
					next = w.node
					if next.shared {
						if &keyed[0] == &entries[0] {
							keyed = slices.Clone(entries)
						}
						keyed[i].Value = w.pattern
					}
					break
				}
			}
		}
		if next == nil {
			next = n.children[childKey{Key: e.Key}]
		}
		if next == nil {
			return nil, ""
		}
		if i == len(entries)-1 {
			if next.limit == nil {
				return nil, ""
			}
			return next.limit, bucketKey(keyed)
		}
		if len(next.children) == 0 && len(next.wildcards) == 0 {
			return nil, ""
		}
		n = next
	}
	return nil, ""
}

// bucketKey is the key of a descriptor's bucket: its entries in order.
func bucketKey(entries []Entry) string {
	var b strings.Builder
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(escape(e.Key))
		b.WriteByte('=')
		b.WriteString(escape(e.Value))
	}
	return b.String()
}

// escape query-escapes s without allocating when it has nothing to escape.
func escape(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return url.QueryEscape(s)
		}
	}
	return s
}

// ruleName makes a valid, unique sluice rule name for the limit at path
// (the domain and the descriptors' key[_value], dot-separated, as
// envoyproxy/ratelimit names its statistics): "envoy." and the path, with
// characters a rule name cannot hold replaced by '_', and shortened with a
// hash when too long or already taken.
func ruleName(path string, taken map[string]bool) string {
	var b strings.Builder
	b.WriteString("envoy.")
	for _, r := range path {
		if r < 128 && (r == '_' || r == '.' || r == ':' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) <= 128 && !taken[name] {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(path))
	suffix := fmt.Sprintf("-%016x", h.Sum64())
	return name[:min(len(name), 128-len(suffix))] + suffix
}

// newRule makes the sluice rule that decides a limit.
func newRule(name string, rpu uint32, unit rls.RateLimitResponse_RateLimit_Unit, ext extension, shadow bool) (rules.Rule, error) {
	period, _ := UnitPeriod(unit)
	algo := bucket.FixedWindow
	if ext.algorithm != "" {
		a, err := rules.ParseAlgorithm(ext.algorithm)
		if err != nil {
			return rules.Rule{}, &rules.FieldError{Field: "sluice.algorithm", Msg: err.Error()}
		}
		algo = a
	}
	sync, err := rules.ParseSync(ext.sync)
	if err != nil {
		return rules.Rule{}, &rules.FieldError{Field: "sluice.sync", Msg: err.Error()}
	}
	limit, err := rules.NewLimit(int64(rpu), period, ext.burst, algo)
	if err != nil {
		fe := err.(*rules.FieldError)
		field := "sluice." + fe.Field
		if fe.Field == "limit" {
			field = "requests_per_unit"
		}
		return rules.Rule{}, &rules.FieldError{Field: field, Msg: fe.Msg}
	}
	if err := rules.CheckSync(algo, sync); err != nil {
		return rules.Rule{}, rules.PrefixField(err, "sluice.")
	}
	spec := rules.Spec{Name: name, Limit: int64(rpu), Period: period.String(), Burst: ext.burst,
		Algorithm: algo.String(), Sync: ext.sync, Shadow: shadow}
	return rules.Rule{Name: name, Limit: limit, Sync: sync, Shadow: shadow, Spec: spec}, nil
}

// clampRemaining converts a bucket's remaining tokens to the protocol's
// uint32.
func clampRemaining(n int64) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}
