// Package cluster is sluice's request path. A check arrives from transport;
// Node resolves its rule (by name, by descriptors, or inline) and its sync
// mode, decides it on the bucket store, and answers with the decision.
// On a single node every sync mode decides locally. Node is the only
// component that reads the clock: it passes now to the pure bucket math,
// and its periodic work (sweeping refilled buckets) runs under Run.
package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// Config configures a Node. Zero fields mean defaults.
type Config struct {
	// Store configures the bucket store (its bound on keys, its shards).
	Store bucket.StoreConfig
	// Now is the clock. If nil, a monotonic clock: wall time at start plus
	// monotonic time since, so a wall-clock step neither mints tokens nor
	// freezes buckets.
	Now func() time.Time
	// SweepInterval is how often buckets that have refilled completely are
	// dropped from the store. If zero, defaults to 10s.
	SweepInterval time.Duration
	// Metrics receives the node's metrics. If nil, they are not registered.
	Metrics Registerer
	// Logger receives the node's logs. If nil, they are discarded.
	Logger *slog.Logger
	// Gossip makes the node a cluster member. If nil, the node stands
	// alone and joins no cluster.
	Gossip *gossip.Config
}

// Node decides checks. It is safe for concurrent use; its zero value is
// not usable: make one with New.
type Node struct {
	now     func() time.Time
	store   *bucket.Store
	rules   atomic.Pointer[rules.Set]
	metrics *metrics
	sweep   time.Duration
	log     *slog.Logger
	gossip  *gossip.Gossip // nil when standalone
}

// New returns a Node with no rules loaded (not ready until SetRules). If
// the node is a cluster member, its gossip listener is open when New
// returns; Run joins the cluster.
func New(cfg Config) (*Node, error) {
	if cfg.Now == nil {
		start := time.Now()
		cfg.Now = func() time.Time { return start.Add(time.Since(start)) }
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		now:   cfg.Now,
		store: bucket.NewStore(cfg.Store),
		sweep: cfg.SweepInterval,
		log:   cfg.Logger,
	}
	n.metrics = newMetrics(cfg.Metrics, n.store)
	if cfg.Gossip != nil {
		gc := *cfg.Gossip
		if gc.Registerer == nil {
			gc.Registerer = cfg.Metrics
		}
		if gc.Logger == nil {
			gc.Logger = cfg.Logger
		}
		var err error
		if n.gossip, err = gossip.New(gc); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// SetRules puts a rule set in force. Buckets of named rules keep their state
// across changes to the rule's limit (tokens are clamped to a lower burst).
func (n *Node) SetRules(s *rules.Set) {
	n.rules.Store(s)
	n.metrics.rulesLoaded.Set(float64(s.Len()))
}

// Rules returns the rule set in force, or nil before the first SetRules.
func (n *Node) Rules() *rules.Set { return n.rules.Load() }

// Ready reports whether the node has rules loaded and so serves checks.
func (n *Node) Ready() bool { return n.rules.Load() != nil }

// ErrNotReady is returned for checks that arrive before any rules are loaded.
var ErrNotReady = errors.New("cluster: node not ready: no rules loaded")

// resolved is a check with its rule resolved.
type resolved struct {
	id     bucket.ID
	limit  bucket.Limit
	cost   int64
	sync   rules.Sync
	counts *ruleCounters
}

// resolve finds the rule and bucket for req. Its errors are
// *rules.FieldError for bad input.
func (n *Node) resolve(req *transport.CheckRequest) (resolved, error) {
	set := n.rules.Load()
	if set == nil {
		return resolved{}, ErrNotReady
	}
	var r resolved
	switch {
	case req.Rule != "":
		rule, err := set.Get(req.Rule)
		if err != nil {
			return r, err
		}
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: req.Key}, limit: rule.Limit, sync: rule.Sync}
	case req.Descriptors != nil:
		rule, key, err := set.Match(req.Descriptors)
		if err != nil {
			return r, err
		}
		r = resolved{id: bucket.ID{Rule: rule.Name, Key: key}, limit: rule.Limit, sync: rule.Sync}
	default:
		r = resolved{id: bucket.ID{Inline: req.Inline, Key: req.Key}, limit: req.Inline}
	}
	if req.SyncSet {
		r.sync = req.Sync
	}
	r.cost = req.Cost
	r.counts = n.metrics.forRule(r.id.Rule, r.sync)
	return r, nil
}

func (r *resolved) result(d bucket.Decision) transport.CheckResult {
	return transport.CheckResult{Decision: d, Rule: r.id.Rule, Policy: r.limit, Sync: r.sync}
}

// decide runs a resolved check on the store.
func (n *Node) decide(r *resolved) transport.CheckResult {
	d := n.store.AllowN(n.now(), r.id, r.limit, r.cost)
	r.counts.observe(&d, r.limit)
	return r.result(d)
}

// Check decides one check.
func (n *Node) Check(_ context.Context, req *transport.CheckRequest) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	return n.decide(&r), nil
}

// CheckBatch resolves every check before deciding any, so a bad check
// anywhere in the batch changes no state.
func (n *Node) CheckBatch(_ context.Context, reqs []transport.CheckRequest) ([]transport.CheckResult, error) {
	rs := make([]resolved, len(reqs))
	for i := range reqs {
		var err error
		if rs[i], err = n.resolve(&reqs[i]); err != nil {
			return nil, rules.PrefixField(err, "checks["+strconv.Itoa(i)+"].")
		}
	}
	out := make([]transport.CheckResult, len(rs))
	for i := range rs {
		out[i] = n.decide(&rs[i])
	}
	return out, nil
}

// Wait reserves the check's tokens and holds the call until they are due.
// Reservations on one bucket are granted in arrival order: each waits
// behind the tokens reserved before it. If the tokens cannot be granted
// within maxWait it answers at once with a denial and spends nothing. If
// ctx ends first the reserved tokens are given back and ctx's error
// returned.
func (n *Node) Wait(ctx context.Context, req *transport.CheckRequest, maxWait time.Duration) (transport.CheckResult, error) {
	r, err := n.resolve(req)
	if err != nil {
		return transport.CheckResult{}, err
	}
	d := n.store.ReserveN(n.now(), r.id, r.limit, r.cost, maxWait)
	r.counts.observe(&d, r.limit)
	res := r.result(d)
	if !d.Allowed || d.Wait == 0 {
		return res, nil
	}
	timer := time.NewTimer(d.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		res.Waited = d.Wait
		return res, nil
	case <-ctx.Done():
		n.store.RefundN(n.now(), r.id, r.limit, r.cost)
		n.metrics.waitsAbandoned.Inc()
		return transport.CheckResult{}, ctx.Err()
	}
}

// Run keeps the node in its cluster and does its periodic work until ctx
// ends, then leaves the cluster and returns. Checks are answered before,
// during and after Run: a node that has left decides alone.
func (n *Node) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.sweepLoop(ctx) })
	if n.gossip != nil {
		g.Go(func() error { return n.gossip.Run(ctx) })
	}
	return g.Wait()
}

// sweepLoop drops buckets that have refilled completely, which changes no
// decision and frees memory.
func (n *Node) sweepLoop(ctx context.Context) error {
	t := time.NewTicker(n.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			dropped := n.store.Sweep(n.now())
			n.metrics.swept.Add(float64(dropped))
		}
	}
}
