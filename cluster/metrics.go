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

// metrics are the node's Prometheus metrics. Label values are rule names
// (bounded by the rules loaded; "inline" for inline limits) and sync modes,
// never keys.
type metrics struct {
	checks         *prometheus.CounterVec
	nearLimit      *prometheus.CounterVec
	rulesLoaded    prometheus.Gauge
	waitsAbandoned prometheus.Counter
	swept          prometheus.Counter
	counterUpdates prometheus.Counter
	shadowAllowed  *prometheus.CounterVec
	leaseEvents    *prometheus.CounterVec
	ownerOps       [4]prometheus.Counter // by transport.PeerOp
	routes         *prometheus.CounterVec
	forwardSeconds prometheus.Histogram
	ringMembers    prometheus.Gauge
	ringShare      prometheus.Gauge
	rulesVersion   prometheus.Gauge
	handoff        *prometheus.CounterVec

	mu     sync.Mutex // serialises writers of byRule
	byRule atomic.Pointer[map[ruleLabel]*ruleCounters]
}

type ruleLabel struct {
	rule string
	sync rules.Sync
}

// ruleCounters are one rule's counters, resolved once so that a check
// increments them without a label lookup.
type ruleCounters struct {
	within, over, near prometheus.Counter
	shadowAllowed      prometheus.Counter
}

func (c *ruleCounters) observe(d *bucket.Decision, l bucket.Limit) {
	if !d.Allowed {
		c.over.Inc()
		return
	}
	c.within.Inc()
	if float64(d.Remaining) < nearLimitFraction*float64(l.Burst) {
		c.near.Inc()
	}
}

func newMetrics(reg Registerer, stores *[4]*bucket.Store) *metrics {
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_checks_total",
			Help: "Checks decided, by rule, sync mode and result (within_limit or over_limit).",
		}, []string{"rule", "sync", "result"}),
		shadowAllowed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_shadow_allowed_total",
			Help: "Checks over the limit that were allowed because their rule (or the node) is in shadow mode; sluice_checks_total counts them as over_limit.",
		}, []string{"rule"}),
		nearLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_near_limit_total",
			Help: "Allowed checks that left less than 20% of the burst, by rule and sync mode.",
		}, []string{"rule", "sync"}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_rules_loaded",
			Help: "Rules in force.",
		}),
		waitsAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_waits_abandoned_total",
			Help: "Waits whose caller went away before the tokens were due; their tokens were given back.",
		}),
		counterUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_gossip_counter_updates_total",
			Help: "Gossip-mode totals received from peers (each a peer's running count of the tokens it admitted for one key).",
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_store_swept_total",
			Help: "Buckets dropped from the store because they had refilled completely.",
		}),
	}
	m.byRule.Store(&map[ruleLabel]*ruleCounters{})
	m.routes, m.forwardSeconds = newRouteMetrics(reg)
	m.handoff = newHandoffMetrics(reg)
	m.leaseEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_leases_total",
		Help: "Lease requests: granted and refused (as owner: tokens reserved for the asker, or none earned within a term), empty (as holder: refused, so the key is denied here until the time the owner said).",
	}, []string{"event"})
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_owner_requests_total",
		Help: "Requests this node answered as a key's owner, by op: check (a forwarded check), lease, return (unspent leased or reserved tokens), reserve (a forwarded wait).",
	}, []string{"op"})
	for i, op := range []string{"check", "lease", "return", "reserve"} {
		m.ownerOps[i] = ops.WithLabelValues(op)
	}
	if reg != nil {
		reg.MustRegister(m.leaseEvents, ops)
	}
	m.ringMembers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_ring_members",
		Help: "Members on this node's hash ring (live members, itself included).",
	})
	m.ringMembers.Set(1)
	m.ringShare = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_ring_share",
		Help: "Fraction of the hash ring this node owns (owner mode): about 1/members when the ring is balanced.",
	})
	m.ringShare.Set(1)
	m.rulesVersion = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_rules_version",
		Help: "Highest version (Lamport clock) of the rules set through the API that this node holds; equal on every node once they agree.",
	})
	if reg != nil {
		reg.MustRegister(m.ringShare, m.rulesVersion)
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.shadowAllowed, m.nearLimit, m.rulesLoaded, m.waitsAbandoned, m.swept, m.counterUpdates, m.ringMembers,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "sluice_store_evictions_total",
				Help: "Buckets that were not full evicted to stay within --max-keys; each may have given its key a fresh burst.",
			}, func() float64 {
				var n uint64
				for _, s := range stores {
					n += s.Evictions()
				}
				return float64(n)
			}))
		for sync, s := range stores {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "sluice_store_keys",
				Help:        "Buckets held, by the sync mode of their rule: local (with fallback buckets), gossip and auto (replicas), owner (buckets this node decides as their owner).",
				ConstLabels: prometheus.Labels{"store": rules.Sync(sync).String()},
			}, func() float64 { return float64(s.Len()) }))
		}
	}
	return m
}

// forRule returns the counters for a rule ("" for inline limits) and mode.
// The common case is one atomic load and a map read; a new pair copies the
// small map.
func (m *metrics) forRule(rule string, sync rules.Sync) *ruleCounters {
	key := ruleLabel{rule, sync}
	if c, ok := (*m.byRule.Load())[key]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.byRule.Load()
	if c, ok := old[key]; ok {
		return c
	}
	name := rule
	if name == "" {
		name = "inline"
	}
	c := &ruleCounters{
		within: m.checks.WithLabelValues(name, sync.String(), "within_limit"),
		over:   m.checks.WithLabelValues(name, sync.String(), "over_limit"),
		near:   m.nearLimit.WithLabelValues(name, sync.String()),

		shadowAllowed: m.shadowAllowed.WithLabelValues(name),
	}
	next := make(map[ruleLabel]*ruleCounters, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[key] = c
	m.byRule.Store(&next)
	return c
}
