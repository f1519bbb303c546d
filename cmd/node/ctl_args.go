package main

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sluicerl/sluice/rules"
)

// checkUTF8 refuses arguments that are not valid UTF-8 before any node is
// asked. The node refuses such strings too, but a body is sent as JSON,
// and encoding/json replaces each invalid byte with U+FFFD: `ctl reset
// RULE $'\xff'` would reset the key "\ufffd", another key, and say it had
// succeeded.
func checkUTF8(cmd string, args ...string) error {
	for _, a := range args {
		if !utf8.ValidString(a) {
			return fmt.Errorf("ctl %s: %q: must be valid UTF-8 (keys, names and values are taken exactly as written)", cmd, a)
		}
	}
	return nil
}

// putSpec checks the strings of `rules put NAME` and sets spec's
// descriptors from descs.
func putSpec(name string, spec *rules.Spec, descs []string) error {
	if err := checkUTF8("rules put", append(descs, name, spec.Period, spec.Algorithm, spec.Sync)...); err != nil {
		return err
	}
	var err error
	spec.Descriptors, err = descriptorSpecs(descs)
	return err
}

// descriptorSpecs returns the descriptors of `rules put`, given as KEY
// (any value) or KEY=VALUE. A KEY:VALUE, the form a key selector takes
// (--descriptor NAME:VALUE), is refused: it would set a rule on the key
// "KEY:VALUE" that matches nothing the operator meant. A key that does
// hold a ':' is written KEY:PART= (an empty value is any value).
func descriptorSpecs(descs []string) ([]rules.DescriptorSpec, error) {
	var out []rules.DescriptorSpec
	for _, d := range descs {
		k, v, eq := strings.Cut(d, "=")
		if !eq && strings.Contains(d, ":") {
			return nil, fmt.Errorf("ctl rules put: --descriptor %q: write KEY=VALUE here (KEY:VALUE selects a key in inspect and reset); for a key holding ':', end it with '='", d)
		}
		out = append(out, rules.DescriptorSpec{Key: k, Value: v})
	}
	return out, nil
}
