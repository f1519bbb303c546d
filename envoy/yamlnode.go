package envoy

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fields returns the fields of the mapping n at path, refusing fields not
// in known and fields given twice.
func (p *parser) fields(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, path, "must be a mapping with fields %s", strings.Join(known, ", "))
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := path + "." + k.Value
		if path == "(file)" {
			field = k.Value
		}
		if !slices.Contains(known, k.Value) {
			return nil, p.errf(k, field, "unknown field (want one of %s)", strings.Join(known, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errf(k, field, "given twice")
		}
		out[k.Value] = v
	}
	return out, nil
}

// str reads a scalar as a string (a number or a boolean is taken as
// written, as envoyproxy/ratelimit does).
func (p *parser) str(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", p.errf(n, path, "must be a string")
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		return false, p.errf(n, path, "must be true or false, got %q", n.Value)
	}
	return b, nil
}

// cmpErr returns err if it is not nil, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}
