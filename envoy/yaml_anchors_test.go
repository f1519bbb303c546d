package envoy

import (
	"strings"
	"testing"
)

// TestYAMLAnchorsAndMergeKeysReadAsByTheReference: envoyproxy/ratelimit's
// YAML reader resolves anchors, aliases and merge keys ("<<"), and
// configurations share a rate_limit block that way: sluice reads them the
// same (a key the mapping has itself wins over a merged one).
func TestYAMLAnchorsAndMergeKeysReadAsByTheReference(t *testing.T) {
	alias := `
domain: d
descriptors:
  - key: a
    rate_limit: &std
      unit: minute
      requests_per_unit: 5
  - key: b
    rate_limit: *std
`
	c, err := parseOne(t, "anchors.yaml", alias)
	if err != nil {
		t.Fatalf("an alias of a rate_limit block: %v", err)
	}
	if l, _ := c.Match("d", entries("b", "x")); l == nil || l.RequestsPerUnit != 5 {
		t.Fatalf("b's limit through the alias: %+v, want 5 a minute", l)
	}
	merge := `
domain: d
descriptors:
  - key: a
    rate_limit: &std
      unit: minute
      requests_per_unit: 5
  - key: c
    rate_limit:
      <<: *std
      requests_per_unit: 7
`
	c, err = parseOne(t, "merge.yaml", merge)
	if err != nil {
		t.Fatalf("a merge key: %v", err)
	}
	if l, _ := c.Match("d", entries("c", "x")); l == nil || l.RequestsPerUnit != 7 || l.Unit.String() != "MINUTE" {
		t.Fatalf("c's limit through the merge: %+v, want 7 a minute", l)
	}
}

// TestYAMLAliasBombIsRefused: aliases of aliases that would expand a small
// file into millions of nodes are refused, naming the file.
func TestYAMLAliasBombIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\nx0: &a0 [k, k, k, k, k, k, k, k, k, k]\n")
	for i := 1; i < 8; i++ {
		b.WriteString("x" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("descriptors: []\n")
	_, err := parseOne(t, "bomb.yaml", b.String())
	if err == nil || !strings.Contains(err.Error(), "bomb.yaml") || !strings.Contains(err.Error(), "aliases are expanded") {
		t.Fatalf("an alias bomb: %v, want refused naming the file", err)
	}
}
