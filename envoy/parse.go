package envoy

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluicerl/sluice/rules"
)

// Load reads an Envoy rate limit configuration from path: one YAML file, or
// every *.yaml and *.yml file of a directory (hidden ones skipped, as for
// sluice's rules), one domain per file.
func Load(path string) (*Config, error) {
	docs, err := rules.ReadDocs(path)
	if err != nil {
		return nil, err
	}
	return Parse(docs)
}

// Parse parses and validates configuration files, one domain each, in the
// format of envoyproxy/ratelimit, read unchanged: domain; descriptors, each
// with key, an optional value (a '*' in it matches any run of characters),
// an optional rate_limit (unit, requests_per_unit, unlimited, name,
// replaces), shadow_mode and nested descriptors. detailed_metric,
// value_to_metric and metadata are accepted and have no effect;
// share_threshold on a wildcard makes the values it matches count together;
// quota_mode is refused. A rate_limit may hold the
// sluice extension "sluice: {algorithm, sync, burst}"; without it a limit
// counts in fixed windows aligned to the Unix epoch, in sync mode auto.
//
// Unknown fields, bad units, duplicate descriptors, an empty or missing
// domain and a domain given by two files are errors naming the file, the
// line and the path in the file ("edge.yaml:7: descriptors[0].rate_limit.unit:
// ..."). An empty file is an error too (it may be caught mid-write).
func Parse(docs []rules.Doc) (*Config, error) {
	c := &Config{domains: map[string]*node{}}
	from := map[string]string{} // domain → file
	taken := map[string]bool{}
	for _, d := range docs {
		p := &parser{file: d.Name, cfg: c, taken: taken}
		if p.file == "" {
			p.file = "config"
		}
		domain, err := p.parseFile(d.Data, from)
		if err != nil {
			return nil, err
		}
		from[domain] = p.file
	}
	return c, nil
}

// parser reads one file into a Config.
type parser struct {
	file  string
	cfg   *Config
	taken map[string]bool // rule names made so far, across files
}

func (p *parser) errf(n *yaml.Node, path, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %s", p.file, n.Line, path, fmt.Sprintf(format, args...))
}

// parseFile reads one file's domain and descriptors; from says which file
// gave each domain so far.
func (p *parser) parseFile(data []byte, from map[string]string) (string, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return "", fmt.Errorf("%s: empty configuration file (a file holds one domain)", p.file)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", p.file, err)
	}
	if len(doc.Content) == 0 {
		return "", fmt.Errorf("%s: empty configuration file (a file holds one domain)", p.file)
	}
	budget := maxExpandedNodes
	root, err := expand(doc.Content[0], &budget)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p.file, err)
	}
	fields, err := p.fields(root, "(file)", "domain", "descriptors")
	if err != nil {
		return "", err
	}
	dn, ok := fields["domain"]
	if !ok {
		return "", p.errf(root, "domain", "is required")
	}
	domain, err := p.str(dn, "domain")
	if err != nil {
		return "", err
	}
	if domain == "" {
		return "", p.errf(dn, "domain", "must not be empty")
	}
	if other, dup := from[domain]; dup {
		return "", p.errf(dn, "domain", "%q is also the domain of %s (one file per domain)", domain, other)
	}
	top := &node{}
	if dl, ok := fields["descriptors"]; ok {
		if err := p.descriptors(dl, "descriptors", domain, top); err != nil {
			return "", err
		}
	}
	p.cfg.domains[domain] = top
	return domain, nil
}

// descriptors reads a list of descriptors into parent's children; where is
// their path in the file, stat their path in the tree ("domain.key_value").
func (p *parser) descriptors(list *yaml.Node, where, stat string, parent *node) error {
	if list.Kind != yaml.SequenceNode {
		if list.Tag == "!!null" {
			return nil
		}
		return p.errf(list, where, "must be a list of descriptors")
	}
	for i, dn := range list.Content {
		path := fmt.Sprintf("%s[%d]", where, i)
		if err := p.descriptor(dn, path, stat, parent); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) descriptor(dn *yaml.Node, path, stat string, parent *node) error {
	f, err := p.fields(dn, path, "key", "value", "rate_limit", "descriptors", "shadow_mode",
		"quota_mode", "detailed_metric", "value_to_metric", "share_threshold", "metadata")
	if err != nil {
		return err
	}
	var key, value string
	if kn, ok := f["key"]; ok {
		if key, err = p.str(kn, path+".key"); err != nil {
			return err
		}
	}
	if key == "" {
		return p.errf(dn, path+".key", "is required")
	}
	if vn, ok := f["value"]; ok {
		if value, err = p.str(vn, path+".value"); err != nil {
			return err
		}
	}
	if n, ok := f["quota_mode"]; ok {
		if on, err := p.boolean(n, path+".quota_mode"); err != nil || on {
			return cmpErr(err, p.errf(n, path+".quota_mode", "is not supported by sluice"))
		}
	}
	shared := false
	if n, ok := f["share_threshold"]; ok {
		if shared, err = p.boolean(n, path+".share_threshold"); err != nil {
			return err
		}
		if shared && !strings.Contains(value, "*") {
			return p.errf(n, path+".share_threshold", "needs a wildcard value (one with '*'), got %q", value)
		}
	}
	for _, name := range []string{"detailed_metric", "value_to_metric"} {
		if n, ok := f[name]; ok {
			if _, err := p.boolean(n, path+"."+name); err != nil {
				return err
			}
		}
	}
	shadow := false
	if n, ok := f["shadow_mode"]; ok {
		if shadow, err = p.boolean(n, path+".shadow_mode"); err != nil {
			return err
		}
	}
	ck := childKey{Key: key, Value: value}
	stat += "." + key
	if value != "" {
		stat += "_" + value
	}
	if parent.children[ck] != nil {
		return p.errf(dn, path, "duplicate descriptor %s (key %q, value %q, given twice at this level)", strings.TrimPrefix(stat, "."), key, value)
	}
	n := &node{shared: shared}
	if rn, ok := f["rate_limit"]; ok && rn.Tag != "!!null" {
		if n.limit, err = p.rateLimit(rn, path+".rate_limit", stat, shadow); err != nil {
			return err
		}
	}
	if dl, ok := f["descriptors"]; ok {
		if err := p.descriptors(dl, path+".descriptors", stat, n); err != nil {
			return err
		}
	}
	if parent.children == nil {
		parent.children = map[childKey]*node{}
	}
	parent.children[ck] = n
	if strings.Contains(value, "*") {
		parent.wildcards = append(parent.wildcards, wildcard{key: key, pattern: value, parts: strings.Split(value, "*"), node: n})
	}
	return nil
}

// rateLimit reads a rate_limit block at path, for the descriptor whose
// statistics path is stat.
func (p *parser) rateLimit(rn *yaml.Node, path, stat string, shadow bool) (*Limit, error) {
	f, err := p.fields(rn, path, "unit", "requests_per_unit", "unlimited", "name", "replaces", "sluice")
	if err != nil {
		return nil, err
	}
	l := &Limit{Shadow: shadow, Path: p.file + ": " + strings.TrimPrefix(stat, ".")}
	if n, ok := f["unlimited"]; ok {
		if l.Unlimited, err = p.boolean(n, path+".unlimited"); err != nil {
			return nil, err
		}
	}
	unitName := ""
	un, hasUnit := f["unit"]
	if hasUnit {
		if unitName, err = p.str(un, path+".unit"); err != nil {
			return nil, err
		}
	}
	switch unit, known := parseUnit(unitName); {
	case l.Unlimited && hasUnit && known:
		return nil, p.errf(un, path+".unit", "an unlimited descriptor takes no unit")
	case l.Unlimited:
	case !hasUnit:
		return nil, p.errf(rn, path+".unit", "is required (one of %s)", unitNames)
	case !known:
		return nil, p.errf(un, path+".unit", "unknown unit %q (want one of %s)", unitName, unitNames)
	default:
		l.Unit = unit
	}
	if n, ok := f["requests_per_unit"]; ok {
		v, err := strconv.ParseUint(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil || v > math.MaxUint32 {
			return nil, p.errf(n, path+".requests_per_unit", "must be a whole number from 0 to %d, got %q", uint32(math.MaxUint32), n.Value)
		}
		l.RequestsPerUnit = uint32(v)
	}
	if n, ok := f["name"]; ok {
		if l.Name, err = p.str(n, path+".name"); err != nil {
			return nil, err
		}
	}
	if err := p.replaces(f, path, l); err != nil {
		return nil, err
	}
	var ext extension
	if n, ok := f["sluice"]; ok {
		if ext, err = p.extension(n, path+".sluice"); err != nil {
			return nil, err
		}
	}
	if l.Unlimited || l.RequestsPerUnit == 0 {
		if ext != (extension{}) && !l.Unlimited {
			return nil, p.errf(f["sluice"], path+".sluice", "a limit of 0 requests is never counted; leave the extension out")
		}
		return l, nil // decided without a bucket
	}
	name := ruleName(strings.TrimPrefix(stat, "."), p.taken)
	rule, err := newRule(name, l.RequestsPerUnit, l.Unit, ext, shadow)
	if err != nil {
		if fe, ok := errors.AsType[*rules.FieldError](err); ok {
			return nil, p.errf(rn, path+"."+fe.Field, "%s", fe.Msg)
		}
		return nil, p.errf(rn, path, "%v", err)
	}
	p.taken[name] = true
	l.Rule = name
	p.cfg.rules = append(p.cfg.rules, rule)
	return l, nil
}

// replaces reads the replaces list of a rate_limit at path into l.
func (p *parser) replaces(f map[string]*yaml.Node, path string, l *Limit) error {
	rl, ok := f["replaces"]
	if !ok {
		return nil
	}
	if rl.Kind != yaml.SequenceNode {
		return p.errf(rl, path+".replaces", "must be a list of {name: ...}")
	}
	for i, en := range rl.Content {
		where := fmt.Sprintf("%s.replaces[%d]", path, i)
		ef, err := p.fields(en, where, "name")
		if err != nil {
			return err
		}
		name := ""
		if nn, ok := ef["name"]; ok {
			if name, err = p.str(nn, where+".name"); err != nil {
				return err
			}
		}
		switch {
		case name == "":
			return p.errf(en, where+".name", "is required")
		case name == l.Name:
			return p.errf(en, where+".name", "a limit cannot replace itself (%q)", name)
		}
		l.Replaces = append(l.Replaces, name)
	}
	return nil
}

// extension is the sluice extension of a rate_limit: how its limit is
// counted and kept across the cluster.
type extension struct {
	algorithm, sync string
	burst           int64
}

func (p *parser) extension(n *yaml.Node, path string) (extension, error) {
	var ext extension
	f, err := p.fields(n, path, "algorithm", "sync", "burst")
	if err != nil {
		return ext, err
	}
	if an, ok := f["algorithm"]; ok {
		if ext.algorithm, err = p.str(an, path+".algorithm"); err != nil {
			return ext, err
		}
	}
	if sn, ok := f["sync"]; ok {
		if ext.sync, err = p.str(sn, path+".sync"); err != nil {
			return ext, err
		}
	}
	if bn, ok := f["burst"]; ok {
		b, err := strconv.ParseInt(bn.Value, 10, 64)
		if bn.Kind != yaml.ScalarNode || err != nil || b <= 0 {
			return ext, p.errf(bn, path+".burst", "must be a positive whole number, got %q", bn.Value)
		}
		ext.burst = b
	}
	return ext, nil
}
