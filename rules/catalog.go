package rules

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Version orders changes to rules set through the API across the cluster:
// a Lamport clock, with the name of the node that made the change as the
// tie-break, so every node picks the same winner for concurrent changes.
type Version struct {
	Clock uint64 `json:"clock" msgpack:"c"`
	Node  string `json:"node" msgpack:"n"`
}

// Compare orders versions: by clock, then by node name.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Clock, o.Clock); c != 0 {
		return c
	}
	return strings.Compare(v.Node, o.Node)
}

// Spec is a rule as written in a file or sent to the API: the form that is
// stored and sent to peers. Validating it gives a Rule.
type Spec struct {
	Name        string           `json:"name" yaml:"name" msgpack:"name"`
	Limit       int64            `json:"limit" yaml:"limit" msgpack:"limit"`
	Period      string           `json:"period" yaml:"period" msgpack:"period"`
	Burst       int64            `json:"burst,omitempty" yaml:"burst" msgpack:"burst,omitempty"`
	Algorithm   string           `json:"algorithm,omitempty" yaml:"algorithm" msgpack:"algorithm,omitempty"`
	Sync        string           `json:"sync,omitempty" yaml:"sync" msgpack:"sync,omitempty"`
	Shadow      bool             `json:"shadow,omitempty" yaml:"shadow" msgpack:"shadow,omitempty"`
	Descriptors []DescriptorSpec `json:"descriptors,omitempty" yaml:"descriptors" msgpack:"descriptors,omitempty"`
}

// DescriptorSpec is a Descriptor as written.
type DescriptorSpec struct {
	Key   string `json:"key" yaml:"key" msgpack:"key"`
	Value string `json:"value,omitempty" yaml:"value" msgpack:"value,omitempty"`
}

// Entry is the state of one API rule at a version: its spec, or its
// deletion (a tombstone, kept so that an older copy of the rule arriving
// late from a peer cannot bring it back).
type Entry struct {
	Name    string  `json:"name" msgpack:"name"`
	Spec    *Spec   `json:"spec,omitempty" msgpack:"spec,omitempty"`
	Version Version `json:"version" msgpack:"version"`
	Deleted bool    `json:"deleted,omitempty" msgpack:"deleted,omitempty"`
}

// Catalog holds the rules set through the API, as one node sees them. Every
// change gets a version from the node's Lamport clock; merging entries from
// peers keeps, per rule, the entry with the highest version, so all nodes
// that have seen the same changes hold the same rules, in any order of
// arrival. Catalog is safe for concurrent use.
type Catalog struct {
	self string

	mu      sync.Mutex // guards clock and entries
	clock   uint64
	entries map[string]Entry
}

// NewCatalog returns an empty catalog for the node named self.
func NewCatalog(self string) *Catalog {
	return &Catalog{self: self, entries: make(map[string]Entry)}
}

// Put validates specs and, if all are valid, sets them as new versions. It
// changes nothing if any is invalid; the error names it as a rules file does
// ("rules[2](api).limit: ..."). If commit is not nil it is called with the
// new entries before they take effect (to store them durably), and an error
// from it changes nothing either.
func (c *Catalog) Put(specs []Spec, commit func([]Entry) error) ([]Entry, error) {
	seen := map[string]bool{}
	for i, s := range specs {
		if _, err := s.Rule(); err != nil {
			return nil, PrefixField(err, fmt.Sprintf("rules[%d]%s.", i, nameSuffix(s.Name)))
		}
		if seen[s.Name] {
			return nil, &FieldError{Field: fmt.Sprintf("rules[%d].name", i), Msg: fmt.Sprintf("%q given twice", s.Name)}
		}
		seen[s.Name] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Entry, len(specs))
	for i, s := range specs {
		spec := s
		out[i] = Entry{Name: s.Name, Spec: &spec, Version: Version{Clock: c.clock + uint64(i) + 1, Node: c.self}}
	}
	if err := c.apply(out, commit); err != nil {
		return nil, err
	}
	return out, nil
}

// apply commits entries made under c.mu from the next clock values, then
// puts them in force.
func (c *Catalog) apply(entries []Entry, commit func([]Entry) error) error {
	if commit != nil {
		if err := commit(entries); err != nil {
			return err
		}
	}
	for _, e := range entries {
		c.clock = max(c.clock, e.Version.Clock)
		c.entries[e.Name] = e
	}
	return nil
}

// ErrNoRule is returned by Delete for a name that is not an API rule.
var ErrNoRule = errors.New("no such API rule")

// Delete removes the API rule name, leaving a tombstone; commit is as for
// Put. The error wraps ErrNoRule if there is no such rule.
func (c *Catalog) Delete(name string, commit func([]Entry) error) (Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; !ok || e.Deleted {
		return Entry{}, fmt.Errorf("%w: %q", ErrNoRule, name)
	}
	e := Entry{Name: name, Version: Version{Clock: c.clock + 1, Node: c.self}, Deleted: true}
	if err := c.apply([]Entry{e}, commit); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Merge takes in entries from a peer (or from storage) and returns those
// that changed this catalog: the ones to pass on. An entry whose spec is
// invalid is skipped, so one bad peer cannot poison every node.
func (c *Catalog) Merge(entries []Entry) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var changed []Entry
	for _, e := range entries {
		c.clock = max(c.clock, e.Version.Clock)
		if e.Name == "" || (!e.Deleted && (e.Spec == nil || e.Spec.Name != e.Name)) {
			continue
		}
		if !e.Deleted {
			if _, err := e.Spec.Rule(); err != nil {
				continue
			}
		}
		if old, ok := c.entries[e.Name]; ok && old.Version.Compare(e.Version) >= 0 {
			continue
		}
		c.entries[e.Name] = e
		changed = append(changed, e)
	}
	return changed
}

// Entries returns every entry, tombstones included, sorted by name: what a
// node sends a peer in a full state exchange, and what it stores.
func (c *Catalog) Entries() []Entry {
	c.mu.Lock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Combine returns the rules in force: the rules file's, with the API rules
// added, an API rule replacing a file rule of the same name (the API is
// where an operator changes a rule now; the file is the baseline).
func (c *Catalog) Combine(file *Set) *Set {
	s := &Set{byName: make(map[string]Rule)}
	api := map[string]Rule{}
	var apiOrder []Rule
	for _, e := range c.Entries() {
		if e.Deleted {
			continue
		}
		if r, err := e.Spec.Rule(); err == nil {
			v := e.Version
			r.Version = &v
			api[r.Name] = r
			apiOrder = append(apiOrder, r)
		}
	}
	var all []Rule
	if file != nil {
		for _, r := range file.ordered {
			if _, replaced := api[r.Name]; !replaced {
				all = append(all, r)
			}
		}
	}
	all = append(all, apiOrder...)
	for _, r := range all {
		s.byName[r.Name] = r
	}
	s.index(all)
	return s
}
