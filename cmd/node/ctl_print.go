package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// The answers of `sluice ctl`, as the node sends them, and how they print
// as text.

type inspectAnswer = transport.InspectView

type resetAnswer = transport.ResetView

type topDeniedAnswer struct {
	Keys []transport.DeniedKeyView `json:"keys"`
}

type statusAnswer = transport.Status

type rulesAnswer struct {
	Rules []transport.RuleView `json:"rules"`
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func millis(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// ruleName is a rule's name, or a description of an inline limit.
func ruleName(rule string, limit, periodMs int64) string {
	if rule != "" {
		return rule
	}
	return "inline " + strconv.FormatInt(limit, 10) + "/" + millis(periodMs)
}

func printInspect(w io.Writer, v *inspectAnswer) {
	t := table(w)
	fmt.Fprintf(t, "rule\t%s\n", ruleName(v.Rule, v.Limit, v.PeriodMs))
	fmt.Fprintf(t, "key\t%q\n", v.Key)
	limit := fmt.Sprintf("%d per %s", v.Limit, millis(v.PeriodMs))
	if v.Burst != 0 {
		limit += fmt.Sprintf(", burst %d", v.Burst)
	}
	if v.Algorithm != "" {
		limit += ", " + v.Algorithm
	}
	fmt.Fprintf(t, "limit\t%s\n", limit)
	fmt.Fprintf(t, "sync\t%s (decided by %s)\n", v.Sync, v.Route)
	if v.Owner != "" {
		fmt.Fprintf(t, "owner\t%s\n", v.Owner)
	}
	if v.Unreachable {
		fmt.Fprintf(t, "state\tunknown: the owner could not be asked\n")
		t.Flush()
		return
	}
	if v.DecidedBy != "" {
		fmt.Fprintf(t, "read on\t%s\n", v.DecidedBy)
	}
	fmt.Fprintf(t, "level\t%s tokens\n", strconv.FormatFloat(v.Level, 'f', -1, 64))
	fmt.Fprintf(t, "remaining\t%d\n", v.Remaining)
	fmt.Fprintf(t, "full in\t%s\n", millis(v.ResetMs))
	if v.RetryMs > 0 {
		fmt.Fprintf(t, "next token in\t%s\n", millis(v.RetryMs))
	}
	if v.Route == "owner" {
		fmt.Fprintf(t, "leases out\t%d tokens (%d held here)\n", v.LeasedOut, v.Leased)
		if len(v.LeasesUnknown) > 0 {
			fmt.Fprintf(t, "not asked\t%v (their leases are not counted)\n", v.LeasesUnknown)
		}
	}
	t.Flush()
}

func printReset(w io.Writer, v *resetAnswer) {
	what := fmt.Sprintf("%q under %s", v.Key, ruleName(v.Rule, v.Limit, v.PeriodMs))
	if v.Complete {
		fmt.Fprintf(w, "reset %s on every live member (%d); sync %s", what, len(v.Members), v.Sync)
	} else {
		fmt.Fprintf(w, "reset %s on some members only; sync %s", what, v.Sync)
	}
	if v.Owner != "" {
		fmt.Fprintf(w, ", owner %s", v.Owner)
	}
	fmt.Fprintln(w)
	t := table(w)
	fmt.Fprintln(t, "MEMBER\tRESET\tERROR")
	for _, m := range v.Members {
		name := m.Name
		if name == "" {
			name = "(this node)"
		}
		fmt.Fprintf(t, "%s\t%v\t%s\n", name, m.Reset, m.Error)
	}
	t.Flush()
}

func printMembers(w io.Writer, v *statusAnswer) {
	fmt.Fprintf(w, "as %s sees it (version %s):\n", orThis(v.Self), v.Version)
	t := table(w)
	fmt.Fprintln(t, "NAME\tADDRESS\tSTATE\tRING SHARE")
	for _, m := range v.Members {
		name := orThis(m.Name)
		if m.Self {
			name += " (this node)"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%.1f%%\n", name, m.Addr, m.State, 100*m.Share)
	}
	t.Flush()
}

func orThis(name string) string {
	if name == "" {
		return "(standalone)"
	}
	return name
}

func printTopDenied(w io.Writer, v *topDeniedAnswer) {
	if len(v.Keys) == 0 {
		fmt.Fprintln(w, "no key denied in the last one to two minutes")
		return
	}
	t := table(w)
	fmt.Fprintln(t, "RULE\tKEY\tDENIED\tOVERCOUNT")
	for _, k := range v.Keys {
		fmt.Fprintf(t, "%s\t%q\t%d\t%d\n", ruleName(k.Rule, k.Limit, k.PeriodMs), k.Key, k.Denied, k.Overcount)
	}
	t.Flush()
	fmt.Fprintln(w, "(over the last one to two minutes, on this node; a count may be over the truth by its overcount, never under)")
}

func printRules(w io.Writer, v *rulesAnswer) {
	if len(v.Rules) == 0 {
		fmt.Fprintln(w, "no rules in force (inline limits only)")
		return
	}
	t := table(w)
	fmt.Fprintln(t, "NAME\tLIMIT\tSYNC\tSHADOW\tDESCRIPTORS\tORIGIN\tVERSION")
	for _, r := range v.Rules {
		limit := fmt.Sprintf("%d per %s", r.Limit, r.Period)
		if r.Burst != 0 {
			limit += fmt.Sprintf(", burst %d", r.Burst)
		}
		if r.Algorithm != "" {
			limit += ", " + r.Algorithm
		}
		sync := r.Sync
		if sync == "" {
			sync = "auto"
		}
		shadow, version := "", ""
		if r.Shadow {
			shadow = "yes"
		}
		if r.Version != nil {
			version = fmt.Sprintf("%d @ %s", r.Version.Clock, r.Version.Node)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, limit, sync, shadow, descriptorsText(r.Descriptors), r.Origin, version)
	}
	t.Flush()
}

// descriptorsText writes a rule's descriptors as `rules put --descriptor`
// takes them: KEY, or KEY=VALUE, comma-separated.
func descriptorsText(ds []rules.DescriptorSpec) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Key
		if d.Value != "" {
			parts[i] += "=" + d.Value
		}
	}
	return strings.Join(parts, ",")
}
