package cluster

import (
	"context"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// check is a request with its rule resolved and its decider chosen.
type check struct {
	id     bucket.ID
	limit  bucket.Limit
	cost   int64
	mode   rules.Sync // as configured: picks the bucket store
	by     decider    // decides it now: local, replicas or owners
	shadow bool       // allowed whatever the decision
	stats  *ruleStats
	// op and maxWait make a wait's reservation of a check (OpReserve);
	// op is OpCheck otherwise.
	op      PeerOp
	maxWait time.Duration
}

// decider decides the checks routed to it: one for each way a key is kept
// (this node's bucket, replicas kept in step by gossip, or the key's owner
// on the ring).
type decider interface {
	// decide spends c's cost if its bucket holds it. It may block on the
	// key's owner, within the forward timeout.
	decide(ctx context.Context, c *check) (Result, error)
	// reserve reserves c's cost if it is available within c.maxWait, and
	// returns how to give the reservation back.
	reserve(ctx context.Context, c *check) (Result, func(), error)
}

// resolve finds the rule and bucket for req, and routes it. Its errors
// are *rules.FieldError for bad input, and ErrNotReady.
func (n *Node) resolve(req *Request) (check, error) {
	set := n.rules.Load()
	if set == nil {
		return check{}, ErrNotReady
	}
	var c check
	switch {
	case req.Rule != "":
		rule, err := set.Get(req.Rule)
		if err != nil {
			return c, err
		}
		c = check{id: bucket.ID{Rule: rule.Name, Key: req.Key}, limit: rule.Limit, mode: rule.Sync, shadow: rule.Shadow}
	case req.Descriptors != nil:
		rule, key, err := set.Match(req.Descriptors)
		if err != nil {
			return c, err
		}
		c = check{id: bucket.ID{Rule: rule.Name, Key: key}, limit: rule.Limit, mode: rule.Sync, shadow: rule.Shadow}
	default:
		c = check{id: bucket.ID{Inline: req.Inline, Key: req.Key}, limit: req.Inline}
	}
	if req.SyncSet {
		c.mode = req.Sync
	}
	if err := rules.CheckSync(c.limit.Algo, c.mode); err != nil {
		return c, err
	}
	if c.limit.Algo == bucket.SlidingWindowLog && c.mode == rules.SyncAuto {
		// Gossip cannot keep the log exact: auto keeps it on its owner
		// at every size (and in the owner store, so handoffs move it).
		c.mode = rules.SyncOwner
	}
	c.cost = req.Cost
	c.shadow = c.shadow || n.shadow
	c.by = n.route(c.mode, n.topo.Load())
	c.stats = n.metrics.forRule(c.id.Rule, c.mode)
	return c, nil
}

// route picks the decider of mode in topo: auto is gossip in a cluster
// small enough (Config.GossipSync.MaxMembers) and owner above.
func (n *Node) route(mode rules.Sync, topo *topology) decider {
	switch {
	case mode == rules.SyncLocal:
		return n.local
	case mode == rules.SyncGossip, mode == rules.SyncAuto && topo.autoGossips():
		return n.replicas
	}
	return n.owners
}

// result is the answer to c, decided d. Under a shadow rule a denial
// becomes an allowance that says it would have been denied (and is
// counted); nothing was spent for it, so the bucket holds what enforcement
// would leave.
func (c *check) result(d bucket.Decision) Result {
	c.stats.observe(&d, c.limit)
	res := Result{Decision: d, Rule: c.id.Rule, Policy: c.limit, Sync: c.mode, Shadow: c.shadow}
	if c.shadow && !d.Allowed {
		res.ShadowDenied = true
		res.Allowed, res.RetryAfter, res.TooLarge = true, 0, false
		c.stats.shadowAllowed.Add(1)
	}
	return res
}

// peerCheck is c as sent to its owner: ops other than c.op (a lease, a
// return) say so, with their own cost.
func (c *check) peerCheck(op PeerOp, cost int64) PeerCheck {
	pc := PeerCheck{ID: c.id, Limit: c.limit, Cost: cost, Sync: c.mode, Op: op}
	if op == OpReserve {
		pc.MaxWait = c.maxWait
	}
	return pc
}

// localMode decides checks of sync: local on this node's own bucket; the
// limit applies per node.
type localMode struct {
	now   func() time.Time
	store *bucket.Store
}

func (l *localMode) decide(_ context.Context, c *check) (Result, error) {
	return c.result(l.store.AllowN(l.now(), c.id, c.limit, c.cost)), nil
}

func (l *localMode) reserve(_ context.Context, c *check) (Result, func(), error) {
	d := l.store.ReserveN(l.now(), c.id, c.limit, c.cost, c.maxWait)
	return c.result(d), func() { l.store.RefundN(l.now(), c.id, c.limit, c.cost) }, nil
}
