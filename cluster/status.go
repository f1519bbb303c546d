package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicerl/sluice/transport"
)

// Status describes the node for its status page.
func (n *Node) Status() transport.Status {
	now := n.now()
	topo := n.topo.Load()
	st := transport.Status{Self: n.Name(), Time: now, Rules: transport.RuleViews(n.RulesInForce())}
	for _, m := range n.Cluster().Members {
		ms := transport.MemberStatus{Name: m.Name, Addr: m.Addr, State: m.State, Self: m.Self}
		if m.State == "alive" {
			ms.Share = topo.ring.Share(m.Name)
		}
		st.Members = append(st.Members, ms)
	}
	if len(st.Members) == 0 { // standalone
		st.Members = []transport.MemberStatus{{Name: n.Name(), State: "alive", Share: 1, Self: true}}
	}
	st.HotKeys = []transport.HotKeyView{}
	for _, k := range n.hot.top(10, now) {
		st.HotKeys = append(st.HotKeys, transport.HotKeyView{Rule: k.Rule, Key: k.Key, Rate: k.Rate})
	}
	st.Checks, st.Denied = n.metrics.totals()
	return st
}

// totals returns the checks decided and denied so far, over every rule.
func (m *metrics) totals() (checks, denied uint64) {
	read := func(c prometheus.Counter) uint64 {
		var d dto.Metric
		if c.Write(&d) != nil {
			return 0
		}
		return uint64(d.GetCounter().GetValue())
	}
	for _, c := range *m.byRule.Load() {
		over := read(c.over)
		checks += read(c.within) + over
		denied += over
	}
	return checks, denied
}
