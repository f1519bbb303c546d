package transport

import (
	_ "embed"
	"net/http"
	"time"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// Status is what the status page shows: the node's view of its cluster,
// its rules, its hottest keys and its check counts so far.
type Status struct {
	Self string `json:"self"`
	// Version is the build's version (AdminConfig.Version).
	Version string         `json:"version,omitempty"`
	Time    time.Time      `json:"time"`
	Members []MemberStatus `json:"members"`
	Rules   []RuleView     `json:"rules"`
	HotKeys []HotKeyView   `json:"hot_keys"`
	// TopDenied are the keys denied most here lately.
	TopDenied []DeniedKeyView `json:"top_denied"`
	// KeysHidden: HotKeys and TopDenied are left empty, because the client
	// may not see keys (not on loopback, or without the admin token), as
	// for /debug/top-denied.
	KeysHidden bool `json:"keys_hidden,omitempty"`
	// Checks and Denied count every check decided here since start.
	Checks uint64 `json:"checks"`
	Denied uint64 `json:"denied"`
	// Rates are the checks, denials and fallbacks per second of the last
	// five minutes, which the page plots.
	Rates RatesView `json:"rates"`
	// PartitionShare is the share of each cluster-wide limit this node
	// decides at: 1, or live / remembered members while some are missing
	// (a partition, or a failure within the partition window).
	PartitionShare float64 `json:"partition_share"`
	// Remembered is how many members the cluster is remembered to have,
	// and Reachable how many of them this node hears.
	Remembered int64 `json:"members_remembered"`
	Reachable  int64 `json:"members_reachable"`
	// Routes are how keys of the modes that gossip are decided at the
	// cluster's size now.
	Routes RoutesView `json:"routes"`
}

// RoutesView is how keys of auto and gossip mode are decided at the
// cluster's size now: "gossip" (each node on its replica) while the
// cluster is within the mode's cap (--gossip-max-members,
// --gossip-mode-max-members), "owner" above.
type RoutesView struct {
	Auto   string `json:"auto"`
	Gossip string `json:"gossip"`
}

// MemberStatus is one member on the status page.
type MemberStatus struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	// Share is the fraction of the hash ring the member owns (0 unless alive).
	Share float64 `json:"ring_share"`
	Self  bool    `json:"self,omitempty"`
}

// RatesView is a node's checks, denials and fallbacks per second over the
// last five minutes (cluster.Rates), oldest first: element i counts the
// second that starts len-i seconds before End.
type RatesView struct {
	// End is the end of the last second counted; absent before the node
	// has run for a second.
	End       *time.Time `json:"end,omitempty"`
	Checks    []uint64   `json:"checks"`
	Denied    []uint64   `json:"denied"`
	Fallbacks []uint64   `json:"fallbacks"`
}

// HotKeyView is a key the node checks often.
type HotKeyView struct {
	Rule string  `json:"rule,omitempty"`
	Key  string  `json:"key"`
	Rate float64 `json:"checks_per_s"`
}

// StatusSource describes a node for its status page (a *cluster.Node).
// It must not block.
type StatusSource interface {
	Status() cluster.Status
}

// NewStatus returns st as the status page shows it.
func NewStatus(st cluster.Status) Status {
	v := Status{Self: st.Self, Time: st.Time, Rules: RuleViews(st.Rules), HotKeys: []HotKeyView{}, TopDenied: DeniedKeyViews(st.TopDenied),
		Checks: st.Checks, Denied: st.Denied,
		PartitionShare: float64(st.Alive) / float64(max(st.Remembered, 1)), Remembered: st.Remembered, Reachable: st.Alive,
		Routes: RoutesView{Auto: st.AutoRoute, Gossip: st.GossipRoute}}
	v.Rates = RatesView{Checks: st.Rates.Checks, Denied: st.Rates.Denied, Fallbacks: st.Rates.Fallbacks}
	if !st.Rates.End.IsZero() {
		end := st.Rates.End.UTC()
		v.Rates.End = &end
	}
	for _, m := range st.Members {
		v.Members = append(v.Members, MemberStatus{Name: m.Name, Addr: m.Addr, State: m.State.String(), Share: m.Share, Self: m.Self})
	}
	for _, k := range st.HotKeys {
		v.HotKeys = append(v.HotKeys, HotKeyView{Rule: k.Rule, Key: k.Key, Rate: k.Rate})
	}
	return v
}

// RuleViews returns rules as GET /v1/rules and the status page show them.
func RuleViews(rs []rules.Rule) []RuleView {
	views := []RuleView{}
	for _, r := range rs {
		v := RuleView{Spec: r.Spec, Origin: "file", Version: r.Version}
		if r.Version != nil {
			v.Origin = "api"
		}
		views = append(views, v)
	}
	return views
}

//go:embed status.html
var statusPage []byte

func statusHandlers(mux *http.ServeMux, src StatusSource, version, token string) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(statusPage)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := NewStatus(src.Status())
		st.Version = version
		if authorize(token, r) != 0 {
			// Keys are what the key endpoints guard: the same keys here
			// would go around the guard.
			st.HotKeys, st.TopDenied, st.KeysHidden = []HotKeyView{}, []DeniedKeyView{}, true
		}
		writeValue(w, http.StatusOK, st)
	})
}
