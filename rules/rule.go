// Package rules defines sluice's named limits: how they are written (YAML),
// validated, matched to a request's descriptors, and reloaded when their file
// changes.
package rules

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// MaxPeriod bounds a rule's period (bucket.MaxPeriod).
const MaxPeriod = bucket.MaxPeriod

// MinPeriod is the shortest period a rule may have (bucket.MinPeriod).
const MinPeriod = bucket.MinPeriod

// Sync is how a rule's buckets are kept across the cluster. On a single node
// every mode decides locally.
type Sync uint8

// The sync modes. The zero value is SyncAuto.
const (
	// SyncAuto is SyncGossip in small clusters and SyncOwner in large ones.
	SyncAuto Sync = iota
	// SyncLocal keeps one bucket per node: the limit applies per node.
	SyncLocal
	// SyncGossip keeps a replica on every node, kept close by gossiped deltas.
	SyncGossip
	// SyncOwner decides on the key's owner on the hash ring: exact.
	SyncOwner
)

var syncNames = []string{SyncAuto: "auto", SyncLocal: "local", SyncGossip: "gossip", SyncOwner: "owner"}

// String returns the mode's name as written in rules and requests.
func (s Sync) String() string { return nameOf(syncNames, s, "Sync") }

// ParseSync parses a sync mode name. The empty string is SyncAuto.
func ParseSync(name string) (Sync, error) { return parseName[Sync](syncNames, "sync mode", name) }

// Algorithm is how a rule counts; see bucket.Algorithm.
type Algorithm = bucket.Algorithm

// algorithmNames are the algorithms' names, indexed by Algorithm.
var algorithmNames = func() (names []string) {
	for a := Algorithm(0); a.Valid(); a++ {
		names = append(names, a.String())
	}
	return names
}()

// ParseAlgorithm parses an algorithm name. The empty string is
// bucket.TokenBucket.
func ParseAlgorithm(name string) (Algorithm, error) {
	return parseName[Algorithm](algorithmNames, "algorithm", name)
}

// CheckSync reports whether algorithm a can be kept in sync mode s. Every
// algorithm works in every mode but one: gossip cannot keep the sliding
// log exact, since peers' admissions arrive late and would count as
// admitted on arrival. Auto mode routes such a rule to its owner at every
// cluster size. The error is a *FieldError naming "sync".
func CheckSync(a Algorithm, s Sync) error {
	if a == bucket.SlidingWindowLog && s == SyncGossip {
		return fieldErr("sync", "gossip cannot keep %v exact (peers' admissions arrive late); use owner, local or auto (which routes it to its owner)", a)
	}
	return nil
}

// nameOf returns the name of enum value v, indexed in names.
func nameOf[E ~uint8](names []string, v E, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// parseName parses a name indexed in names; "" is the zero value.
func parseName[E ~uint8](names []string, kind, name string) (E, error) {
	if name == "" {
		return 0, nil
	}
	for i, n := range names {
		if n == name {
			return E(i), nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q (want one of %s)", kind, name, strings.Join(names, ", "))
}

// Descriptor is one entry a rule matches in a request's descriptors, in the
// sense of Envoy's ratelimit service: the request must carry Key, and, if
// Value is set, with that value. An entry without a value matches any value,
// and that value becomes part of the bucket's key.
type Descriptor struct {
	Key   string
	Value string
}

// Rule is a named limit. Rules are values: a Set hands out copies.
type Rule struct {
	Name string
	// Limit holds the numbers and the algorithm.
	Limit bucket.Limit
	Sync  Sync
	// Descriptors is how requests that carry descriptors are matched to the
	// rule; empty when the rule is only used by name.
	Descriptors []Descriptor
	// Shadow makes the rule advisory: checks are decided and counted, but
	// all are allowed (a dark launch).
	Shadow bool
	// Spec is the rule as it was written.
	Spec Spec
	// Version is the version of a rule set through the API; nil for a rule
	// from the rules file.
	Version *Version
}

// FieldError is bad input that names the field at fault, in the request or
// in a rules file.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NewLimit validates a limit as a user writes it and returns it as a
// bucket.Limit counted by algo. A burst of 0 means "the same as the
// limit"; the windowed algorithms take no burst. The bounds are
// bucket.Limit.Validate's; this adds only what a user writes. Errors are
// *FieldError naming "limit", "period" or "burst".
func NewLimit(limit int64, period time.Duration, burst int64, algo Algorithm) (bucket.Limit, error) {
	switch {
	case burst < 0:
		return bucket.Limit{}, fieldErr("burst", "must not be negative, got %d", burst)
	case burst != 0 && algo.Windowed():
		return bucket.Limit{}, fieldErr("burst", "is not used by %v, which counts at most limit per period; leave it out", algo)
	case burst == 0:
		burst = limit
	}
	l := bucket.Limit{Rate: limit, Period: period, Burst: burst, Algo: algo}
	if err := l.Validate(); err != nil {
		le := err.(*bucket.LimitError)
		field := le.Field
		if field == "rate" {
			field = "limit" // what rules and requests call it
		}
		return bucket.Limit{}, &FieldError{Field: field, Msg: le.Msg}
	}
	return l, nil
}

// ParsePeriod parses a period written as a Go duration ("1s", "1m", "250ms").
func ParsePeriod(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fieldErr("period", "%q is not a duration such as 1s, 1m or 250ms", s)
	}
	return d, nil
}

// PrefixField returns err with prefix put before the field it names, if it
// is a *FieldError, and err unchanged otherwise: "checks[3]." + "limit".
func PrefixField(err error, prefix string) error {
	if fe, ok := errors.AsType[*FieldError](err); ok {
		return &FieldError{Field: prefix + fe.Field, Msg: fe.Msg}
	}
	return err
}
