package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Registerer is where a Node registers its metrics.
type Registerer = prometheus.Registerer

// nearLimitFraction: an allowed check that leaves less than this fraction of
// the burst is counted as near the limit (Envoy's ratelimit service uses the
// same 80% mark).
const nearLimitFraction = 0.2

// metrics are the node's own metrics; each decider registers its own.
// Label values are rule names (bounded by the rules loaded; "inline" for
// inline limits), sync modes and stores, never keys.
type metrics struct {
	rulesLoaded    prometheus.Gauge
	rulesVersion   prometheus.Gauge
	waitsAbandoned prometheus.Counter
	swept          prometheus.Counter

	// Per rule: counted in ruleStats, exported by ruleCollector.
	mu     sync.Mutex // serialises writers of byRule
	byRule atomic.Pointer[map[ruleLabel]*ruleStats]
}

type ruleLabel struct {
	rule string
	mode rules.Sync
}

// name is the rule's label value.
func (l ruleLabel) name() string {
	if l.rule == "" {
		return "inline"
	}
	return l.rule
}

// ruleStats count one rule's checks in one mode, resolved once so that a
// check counts them without a label lookup. They are the one record of
// what was decided: Prometheus reads them (ruleCollector), and so does
// the status page.
type ruleStats struct {
	within, over, near, shadowAllowed atomic.Uint64
}

func (s *ruleStats) observe(d *bucket.Decision, l bucket.Limit) {
	if !d.Allowed {
		s.over.Add(1)
		return
	}
	s.within.Add(1)
	if float64(d.Remaining) < nearLimitFraction*float64(l.Burst) {
		s.near.Add(1)
	}
}

// storeLabels names the node's bucket stores in sluice_store_keys.
type storeLabel struct {
	name  string
	store *bucket.Store
}

func newMetrics(reg Registerer, stores []storeLabel) *metrics {
	m := &metrics{
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_rules_loaded",
			Help: "Rules in force.",
		}),
		rulesVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_rules_version",
			Help: "Highest version (Lamport clock) of the rules set through the API that this node holds; equal on every node once they agree.",
		}),
		waitsAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_waits_abandoned_total",
			Help: "Waits whose caller went away before the tokens were due; their tokens were given back.",
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_store_swept_total",
			Help: "Buckets dropped from the store because they had refilled completely.",
		}),
	}
	m.byRule.Store(&map[ruleLabel]*ruleStats{})
	for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncLocal, rules.SyncGossip, rules.SyncOwner} {
		m.forRule("", mode) // inline limits in every mode, at zero from the start
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.rulesLoaded, m.rulesVersion, m.waitsAbandoned, m.swept, newRuleCollector(m),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_store_evictions_total",
			Help: "Buckets that were not full evicted to stay within --max-keys; each may have given its key a fresh burst.",
		}, func() float64 {
			var n uint64
			for _, s := range stores {
				n += s.store.Evictions()
			}
			return float64(n)
		}))
	for _, s := range stores {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "sluice_store_keys",
			Help:        "Buckets held, by store: local, gossip and auto (replicas, or in a large cluster auto's buckets as their owner), owner (buckets this node decides as their owner), fallback (this node's fair share of keys whose owner it could not reach).",
			ConstLabels: prometheus.Labels{"store": s.name},
		}, func() float64 { return float64(s.store.Len()) }))
	}
	return m
}

// forRule returns the stats of a rule ("" for inline limits) in a mode.
// The common case is one atomic load and a map read; a new pair copies the
// small map.
func (m *metrics) forRule(rule string, mode rules.Sync) *ruleStats {
	key := ruleLabel{rule, mode}
	if s, ok := (*m.byRule.Load())[key]; ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.byRule.Load()
	if s, ok := old[key]; ok {
		return s
	}
	next := make(map[ruleLabel]*ruleStats, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	s := &ruleStats{}
	next[key] = s
	m.byRule.Store(&next)
	return s
}

// totals returns the checks decided and denied so far, over every rule.
func (m *metrics) totals() (checks, denied uint64) {
	for _, s := range *m.byRule.Load() {
		over := s.over.Load()
		checks += s.within.Load() + over
		denied += over
	}
	return checks, denied
}

// ruleCollector exports the rule stats as Prometheus counters.
type ruleCollector struct {
	m                    *metrics
	checks, near, shadow *prometheus.Desc
}

func newRuleCollector(m *metrics) *ruleCollector {
	return &ruleCollector{
		m: m,
		checks: prometheus.NewDesc("sluice_checks_total",
			"Checks decided, by rule, sync mode and result (within_limit or over_limit).", []string{"rule", "sync", "result"}, nil),
		near: prometheus.NewDesc("sluice_near_limit_total",
			"Allowed checks that left less than 20% of the burst, by rule and sync mode.", []string{"rule", "sync"}, nil),
		shadow: prometheus.NewDesc("sluice_shadow_allowed_total",
			"Checks over the limit that were allowed because their rule (or the node) is in shadow mode; sluice_checks_total counts them as over_limit.", []string{"rule"}, nil),
	}
}

func (c *ruleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.checks
	ch <- c.near
	ch <- c.shadow
}

func (c *ruleCollector) Collect(ch chan<- prometheus.Metric) {
	shadow := map[string]uint64{}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for k, s := range *c.m.byRule.Load() {
		name, mode := k.name(), k.mode.String()
		counter(c.checks, s.within.Load(), name, mode, "within_limit")
		counter(c.checks, s.over.Load(), name, mode, "over_limit")
		counter(c.near, s.near.Load(), name, mode)
		shadow[name] += s.shadowAllowed.Load()
	}
	for name, v := range shadow {
		counter(c.shadow, v, name)
	}
}

// ownerMetrics are the metrics of owner mode.
type ownerMetrics struct {
	// sluice_owner_checks_total, by route.
	owned, forwarded, leased, leaseDenied, fallback prometheus.Counter
	forwardSeconds                                  prometheus.Histogram
	ownerOps                                        [6]prometheus.Counter // by PeerOp
	leaseEvents                                     *prometheus.CounterVec
	handoff                                         *prometheus.CounterVec
	ringMembers, ringShare                          prometheus.Gauge
}

func newOwnerMetrics(reg Registerer) *ownerMetrics {
	routes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_owner_checks_total",
		Help: "Owner-mode checks by route: owned (decided here), forwarded (decided by the owner), leased (decided here from tokens leased from the owner), lease_denied (denied here: the owner said its bucket is empty until then), fallback (owner unreachable: decided from this node's fair share).",
	}, []string{"route"})
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_owner_requests_total",
		Help: "Requests this node answered as a key's owner, by op: check (a forwarded check), lease, return (unspent leased or reserved tokens), reserve (a forwarded wait), inspect (an operator reading the bucket), reset (an operator resetting the key).",
	}, []string{"op"})
	m := &ownerMetrics{
		owned: routes.WithLabelValues("owned"), forwarded: routes.WithLabelValues("forwarded"), leased: routes.WithLabelValues("leased"),
		leaseDenied: routes.WithLabelValues("lease_denied"), fallback: routes.WithLabelValues("fallback"),
		forwardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_forward_duration_seconds",
			Help:    "Time to get a forwarded check decided by its owner.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		leaseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_leases_total",
			Help: "Lease requests: granted and refused (as owner: tokens reserved for the asker, or none earned within a term), empty (as holder: refused, so the key is denied here until the time the owner said).",
		}, []string{"event"}),
		handoff: newHandoffMetrics(reg),
		ringMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ring_members",
			Help: "Members on this node's hash ring (live members, itself included).",
		}),
		ringShare: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ring_share",
			Help: "Fraction of the hash ring this node owns (owner mode): about 1/members when the ring is balanced.",
		}),
	}
	for i, op := range []string{"check", "lease", "return", "reserve", "inspect", "reset"} {
		m.ownerOps[i] = ops.WithLabelValues(op)
	}
	for _, e := range []string{"granted", "refused", "empty"} {
		m.leaseEvents.WithLabelValues(e)
	}
	m.ringMembers.Set(1)
	m.ringShare.Set(1)
	if reg != nil {
		reg.MustRegister(routes, ops, m.forwardSeconds, m.leaseEvents, m.ringMembers, m.ringShare)
	}
	return m
}
