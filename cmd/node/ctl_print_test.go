package main

import (
	"strings"
	"testing"

	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// TestPrintRulesShowsDescriptors: `ctl rules` as text names each rule's
// descriptors as `rules put --descriptor` takes them, so that two rules
// told apart only by their descriptors can be.
func TestPrintRulesShowsDescriptors(t *testing.T) {
	var b strings.Builder
	printRules(&b, &rulesAnswer{Rules: []transport.RuleView{
		{Spec: rules.Spec{Name: "per-path", Limit: 10, Period: "1s", Descriptors: []rules.DescriptorSpec{{Key: "remote_address"}, {Key: "path", Value: "/login"}}}, Origin: "api"},
		{Spec: rules.Spec{Name: "plain", Limit: 5, Period: "1m"}, Origin: "file"},
	}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "DESCRIPTORS") {
		t.Fatalf("rules as text:\n%s", b.String())
	}
	if !strings.Contains(lines[1], "remote_address,path=/login") {
		t.Errorf("the rule's descriptors are not shown: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) < 2 || f[0] != "plain" {
		t.Errorf("a rule without descriptors: %q", lines[2])
	}
}
