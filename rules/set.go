package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Set is a validated, immutable collection of rules. It is safe for
// concurrent use. The zero Set holds no rules.
type Set struct {
	byName map[string]Rule
	// ordered holds the rules in definition order (files in name order,
	// then API rules); it breaks ties between equally specific matchers.
	ordered []Rule
	// matchers holds the rules that have descriptors, most specific first.
	matchers []Rule
}

// Len returns the number of rules.
func (s *Set) Len() int { return len(s.byName) }

// Rules returns the rules, sorted by name.
func (s *Set) Rules() []Rule {
	out := make([]Rule, 0, len(s.byName))
	for _, r := range s.byName {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the rule with the given name. The error is a *FieldError
// naming "rule".
func (s *Set) Get(name string) (Rule, error) {
	r, ok := s.byName[name]
	if !ok {
		return Rule{}, fieldErr("rule", "no rule named %q", name)
	}
	return r, nil
}

// Match returns the rule that a request's descriptors select, and the bucket
// key they make. A rule matches when the request carries every one of the
// rule's descriptor keys, with the rule's value where it names one; extra
// request entries are ignored. Among matching rules the one with the most
// entries wins, then the one with the most fixed values, then the first in
// the file. The key lists the rule's entries in order as "k=v" pairs joined
// by "&", values query-escaped, so distinct requests never share a key.
// The error is a *FieldError naming "descriptors".
func (s *Set) Match(desc map[string]string) (Rule, string, error) {
	for _, r := range s.matchers {
		if key, ok := match(r, desc); ok {
			return r, key, nil
		}
	}
	return Rule{}, "", fieldErr("descriptors", "no rule matches %s", describe(desc))
}

func match(r Rule, desc map[string]string) (string, bool) {
	var b strings.Builder
	for i, d := range r.Descriptors {
		v, ok := desc[d.Key]
		if !ok || (d.Value != "" && v != d.Value) {
			return "", false
		}
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(d.Key)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	return b.String(), true
}

func describe(desc map[string]string) string {
	keys := make([]string, 0, len(desc))
	for k := range desc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + desc[k]
	}
	return "{" + strings.Join(keys, ", ") + "}"
}

// file is a rules file as written.
type file struct {
	Rules []Spec `yaml:"rules"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// Parse parses and validates one rules document. Unknown fields are errors.
// The error names the file position or the rule and field at fault.
func Parse(data []byte) (*Set, error) {
	return parse([]Doc{{Data: data}})
}

// Doc is one file read from a rules path: its path and content.
type Doc struct {
	Name string
	Data []byte
}

func parse(docs []Doc) (*Set, error) {
	s := &Set{byName: make(map[string]Rule)}
	var all []Rule
	for _, doc := range docs {
		if doc.Name != "" && len(bytes.TrimSpace(doc.Data)) == 0 {
			// Most likely caught mid-write (truncated, not yet written):
			// never let that wipe the rules in force.
			return nil, withSource(doc.Name, errors.New("empty rules file (write \"rules: []\" for no rules)"))
		}
		dec := yaml.NewDecoder(bytes.NewReader(doc.Data))
		dec.KnownFields(true)
		var f file
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, withSource(doc.Name, err)
		}
		for i, ry := range f.Rules {
			r, err := ry.Rule()
			if err != nil {
				if fe, ok := errors.AsType[*FieldError](err); ok {
					fe.Field = fmt.Sprintf("rules[%d]%s.%s", i, nameSuffix(ry.Name), fe.Field)
				}
				return nil, withSource(doc.Name, err)
			}
			if _, dup := s.byName[r.Name]; dup {
				return nil, withSource(doc.Name, fieldErr(fmt.Sprintf("rules[%d].name", i), "duplicate rule name %q", r.Name))
			}
			s.byName[r.Name] = r
			all = append(all, r)
		}
	}
	s.index(all)
	return s, nil
}

// With returns a Set holding s's rules followed by extra (rules made from
// another source, such as Envoy's rate limit configuration). A name in
// extra that s already holds, or that extra holds twice, is an error
// naming it, and s is unchanged. A nil s counts as empty.
func (s *Set) With(extra []Rule) (*Set, error) {
	out := &Set{byName: make(map[string]Rule)}
	var all []Rule
	if s != nil {
		all = append(all, s.ordered...)
	}
	all = append(all, extra...)
	for _, r := range all {
		if _, dup := out.byName[r.Name]; dup {
			return nil, fmt.Errorf("rule name %q is defined twice", r.Name)
		}
		out.byName[r.Name] = r
	}
	out.index(all)
	return out, nil
}

// index records the rules, in definition order, and orders the matchers.
func (s *Set) index(all []Rule) {
	s.ordered = all
	s.matchers = nil
	for _, r := range all {
		if len(r.Descriptors) > 0 {
			s.matchers = append(s.matchers, r)
		}
	}
	slices.SortStableFunc(s.matchers, func(a, b Rule) int {
		if d := len(b.Descriptors) - len(a.Descriptors); d != 0 {
			return d
		}
		return fixedValues(b) - fixedValues(a)
	})
}

func fixedValues(r Rule) int {
	n := 0
	for _, d := range r.Descriptors {
		if d.Value != "" {
			n++
		}
	}
	return n
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return "(" + name + ")"
}

func withSource(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Rule validates the spec. Errors are *FieldError naming the field.
func (ry Spec) Rule() (Rule, error) {
	if !validName.MatchString(ry.Name) {
		return Rule{}, fieldErr("name", "%q is not a valid name (letters, digits and _.:- , at most 128)", ry.Name)
	}
	if ry.Period == "" {
		return Rule{}, fieldErr("period", "is required")
	}
	period, err := ParsePeriod(ry.Period)
	if err != nil {
		return Rule{}, err
	}
	algo, err := ParseAlgorithm(ry.Algorithm)
	if err != nil {
		return Rule{}, fieldErr("algorithm", "%v", err)
	}
	limit, err := NewLimit(ry.Limit, period, ry.Burst, algo)
	if err != nil {
		return Rule{}, err
	}
	sync, err := ParseSync(ry.Sync)
	if err != nil {
		return Rule{}, fieldErr("sync", "%v", err)
	}
	if err := CheckSync(algo, sync); err != nil {
		return Rule{}, err
	}
	r := Rule{Name: ry.Name, Limit: limit, Sync: sync, Shadow: ry.Shadow, Spec: ry}
	seen := make(map[string]bool)
	for i, d := range ry.Descriptors {
		if d.Key == "" {
			return Rule{}, fieldErr(fmt.Sprintf("descriptors[%d].key", i), "is required")
		}
		if seen[d.Key] {
			return Rule{}, fieldErr(fmt.Sprintf("descriptors[%d].key", i), "duplicate key %q", d.Key)
		}
		seen[d.Key] = true
		r.Descriptors = append(r.Descriptors, Descriptor{Key: d.Key, Value: d.Value})
	}
	return r, nil
}

// Load reads rules from path: one YAML file, or a directory whose *.yaml and
// *.yml files (not hidden ones, so Kubernetes' "..data" links are skipped)
// are read in name order and merged. Rule names are unique across files.
func Load(path string) (*Set, error) {
	docs, err := ReadDocs(path)
	if err != nil {
		return nil, err
	}
	return parse(docs)
}

// ReadDocs reads the files at path as Load does: one file, or the *.yaml
// and *.yml files of a directory in name order, hidden ones skipped.
func ReadDocs(path string) ([]Doc, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		return []Doc{{Name: path, Data: data}}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	var docs []Doc
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p := filepath.Join(path, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue // a dangling link mid-swap, or a directory
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		docs = append(docs, Doc{Name: p, Data: data})
	}
	return docs, nil
}
