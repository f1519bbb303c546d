package envoy

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// maxExpandedNodes bounds a file's nodes once its aliases are expanded, so
// that a few aliases of aliases cannot make a small file a huge one.
const maxExpandedNodes = 100_000

// expand returns n with its aliases replaced by what they name and its
// merge keys ("<<: *anchor", or a sequence of them) merged in (a key the
// mapping has itself wins), as the reference's YAML reader reads a file:
// anchors let a configuration share a rate_limit block. It fails past
// budget nodes.
func expand(n *yaml.Node, budget *int) (*yaml.Node, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("line %d: more than %d nodes once its aliases are expanded", n.Line, maxExpandedNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: an alias of nothing", n.Line)
		}
		return expand(n.Alias, budget)
	}
	out := *n
	out.Content = nil
	var merged []*yaml.Node // key, value pairs from merge keys
	for i := 0; i < len(n.Content); i++ {
		c := n.Content[i]
		if n.Kind == yaml.MappingNode && i%2 == 0 && c.Kind == yaml.ScalarNode && c.Tag == "!!merge" && i+1 < len(n.Content) {
			src, err := expand(n.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			sources := []*yaml.Node{src}
			if src.Kind == yaml.SequenceNode {
				sources = src.Content
			}
			for _, m := range sources {
				if m.Kind != yaml.MappingNode {
					return nil, fmt.Errorf("line %d: a merge key must name a mapping", c.Line)
				}
				merged = append(merged, m.Content...)
			}
			i++
			continue
		}
		e, err := expand(c, budget)
		if err != nil {
			return nil, err
		}
		out.Content = append(out.Content, e)
	}
	for i := 0; i+1 < len(merged); i += 2 {
		if !hasKey(&out, merged[i].Value) {
			out.Content = append(out.Content, merged[i], merged[i+1])
		}
	}
	return &out, nil
}

// hasKey reports whether mapping m has key k.
func hasKey(m *yaml.Node, k string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return true
		}
	}
	return false
}
