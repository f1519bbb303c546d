package gossip

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// State is a member's state as this node sees it.
type State uint8

// The member states.
const (
	// StateAlive is a member that answers (or has not yet been suspected).
	StateAlive State = iota
	// StateDead is a member that stopped answering.
	StateDead
	// StateLeft is a member that said goodbye.
	StateLeft
)

var stateNames = [...]string{StateAlive: "alive", StateDead: "dead", StateLeft: "left"}

// String returns "alive", "dead" or "left".
func (s State) String() string { return stateNames[s] }

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name string
	// Addr is the member's gossip address ("ip:port").
	Addr  string
	State State
	// Since is when this node last saw the member change state.
	Since time.Time
	Meta  Meta
	// Self marks this node.
	Self bool
}

// view is the member list, kept from memberlist's events. memberlist calls
// the event methods one at a time, with its node lock held, so they copy
// what they need and return at once.
type view struct {
	self     string
	onChange func()
	events   *prometheus.CounterVec

	mu      sync.Mutex // guards byName and leaving
	byName  map[string]Member
	leavers map[string]time.Time // names that announced their departure
}

var _ memberlist.EventDelegate = (*view)(nil)

func newView(self string, onChange func()) *view {
	if onChange == nil {
		onChange = func() {}
	}
	v := &view{
		self:     self,
		onChange: onChange,
		byName:   make(map[string]Member),
		leavers:  make(map[string]time.Time),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gossip_member_events_total",
			Help: "Membership changes seen by this node: join, update, fail (declared dead) and leave (said goodbye).",
		}, []string{"event"}),
	}
	for _, e := range []string{"join", "update", "fail", "leave"} {
		v.events.WithLabelValues(e) // at zero from start
	}
	return v
}

func (v *view) set(n *memberlist.Node, s State, event string) {
	v.events.WithLabelValues(event).Inc()
	meta, _ := decodeMeta(n.Meta) // malformed metadata shows as empty
	m := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		State: s,
		Since: time.Now(),
		Meta:  meta,
		Self:  n.Name == v.self,
	}
	v.mu.Lock()
	v.byName[n.Name] = m
	v.mu.Unlock()
	v.onChange()
}

// NotifyJoin implements memberlist.EventDelegate.
func (v *view) NotifyJoin(n *memberlist.Node) { v.set(n, StateAlive, "join") }

// NotifyUpdate implements memberlist.EventDelegate.
func (v *view) NotifyUpdate(n *memberlist.Node) { v.set(n, StateAlive, "update") }

// leaveWindow is how long a departure announcement is believed.
const leaveWindow = time.Minute

// NotifyLeave implements memberlist.EventDelegate: the node died or left.
// memberlist does not say which (the Node's State field is never updated),
// so a departure is one the node announced just before (leaving).
func (v *view) NotifyLeave(n *memberlist.Node) {
	v.mu.Lock()
	at, announced := v.leavers[n.Name]
	delete(v.leavers, n.Name)
	v.mu.Unlock()
	if announced && time.Since(at) < leaveWindow {
		v.set(n, StateLeft, "leave")
		return
	}
	v.set(n, StateDead, "fail")
}

// leaving records that a node announced its departure. If memberlist has
// already declared it dead, the death is corrected to a departure.
func (v *view) leaving(name string) {
	v.mu.Lock()
	m, known := v.byName[name]
	if known && m.State == StateDead && time.Since(m.Since) < leaveWindow {
		m.State = StateLeft
		v.byName[name] = m
		v.mu.Unlock()
		v.events.WithLabelValues("leave").Inc()
		v.onChange()
		return
	}
	v.leavers[name] = time.Now()
	for n, at := range v.leavers {
		if time.Since(at) >= leaveWindow {
			delete(v.leavers, n)
		}
	}
	v.mu.Unlock()
}

func (v *view) members() []Member {
	v.mu.Lock()
	out := make([]Member, 0, len(v.byName))
	for _, m := range v.byName {
		out = append(out, m)
	}
	v.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (v *view) liveAddrs() map[string]bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	live := make(map[string]bool, len(v.byName))
	for _, m := range v.byName {
		if m.State == StateAlive {
			live[m.Addr] = true
		}
	}
	return live
}

// failedAddrs returns the addresses of members that died (not left) within
// the last keep, to be re-joined: they may be alive on the far side of a
// partition.
func (v *view) failedAddrs(now time.Time, keep time.Duration) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, m := range v.byName {
		if m.State == StateDead && now.Sub(m.Since) < keep {
			out = append(out, m.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// forget drops members that died or left longer than keep ago.
func (v *view) forget(now time.Time, keep time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for name, m := range v.byName {
		if m.State != StateAlive && now.Sub(m.Since) >= keep {
			delete(v.byName, name)
		}
	}
}

func (v *view) hasFailed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.byName {
		if m.State == StateDead {
			return true
		}
	}
	return false
}

// membersCollector exports the number of members by state.
type membersCollector struct {
	v    *view
	desc *prometheus.Desc
}

func newMembersCollector(v *view) prometheus.Collector {
	return &membersCollector{v: v, desc: prometheus.NewDesc("sluice_gossip_members",
		"Members this node knows of, by state (alive, dead, left), itself included.", []string{"state"}, nil)}
}

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	var counts [len(stateNames)]int
	for _, m := range c.v.members() {
		counts[m.State]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), State(s).String())
	}
}
