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
	route  route      // decides it now: local, replicas or owners
	topo   *topology  // the topology it was routed in, and is decided in
	shadow bool       // allowed whatever the decision
	quiet  bool       // a peek before deciding (CheckAll): not counted
	stats  *ruleStats
	// op and maxWait make a wait's reservation of a check (OpReserve);
	// op is OpCheck otherwise.
	op      PeerOp
	maxWait time.Duration
}

// route names the decider of a check: one for each way a key is kept
// (this node's bucket, replicas kept in step by gossip, or the key's owner
// on the ring). Each decider has two methods: decide spends a check's cost
// if its bucket holds it (only owners may block, on the key's owner,
// within the forward timeout, and fail, if the caller leaves); reserve
// reserves it if it is available within the check's maxWait, and returns
// how to give the reservation back. They are
// called through a switch, not an interface, so that a check stays on
// the stack.
type route uint8

const (
	routeLocal    route = iota // localMode
	routeReplicas              // replicas
	routeOwners                // owners
)

// decide runs c on its decider and writes the answer to res (in place:
// a Result is large, and the check path copies it once).
func (n *Node) decide(ctx context.Context, c *check, res *Result) error {
	switch c.route {
	case routeLocal:
		n.local.decide(c, res)
		return nil
	case routeReplicas:
		if n.leftGossip(c) {
			n.seedLeftShare(c)
			var out [1]Result
			n.owners.fallBack(c.topo, "", []*check{c}, out[:])
			*res = out[0]
			return nil
		}
		n.seedEntered(c)
		n.replicas.decide(c, res)
		return nil
	}
	return n.owners.decide(ctx, c, res)
}

// leftGossip reports whether c is a gossip-mode check on a node that has
// left a cluster of others: its peers no longer hear what it admits, so it
// decides from its fair share until its API closes.
func (n *Node) leftGossip(c *check) bool {
	return n.owners.left.Load() && c.topo.alive() > 1
}

// seedLeftShare starts the fair share a node that has left decides a
// gossip-mode key from at its share of what its replica holds, not at a
// fresh share of the burst: for a hot key, near empty.
func (n *Node) seedLeftShare(c *check) {
	now := n.now()
	if level, ok := n.replicas.store(c.mode).Level(now, c.id); ok {
		n.owners.fallback.Seed(now, c.id, fairShare(c.limit, c.topo.remembered), level/c.topo.remembered)
	}
}

// reserve makes c's reservation on its decider.
func (n *Node) reserve(ctx context.Context, c *check) (Result, func(), error) {
	switch c.route {
	case routeLocal:
		res, giveBack := n.local.reserve(c)
		return res, giveBack, nil
	case routeReplicas:
		if n.leftGossip(c) {
			n.seedLeftShare(c)
			var out [1]Result
			n.owners.fallBack(c.topo, "", []*check{c}, out[:])
			share := fairShare(c.limit, c.topo.remembered)
			return out[0], func() { n.owners.fallback.RefundN(n.now(), c.id, share, c.cost) }, nil
		}
		n.seedEntered(c)
		res, giveBack := n.replicas.reserve(c)
		return res, giveBack, nil
	}
	return n.owners.reserve(ctx, c)
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
	c.topo = n.topo.Load()
	c.route = routeOf(c.mode, c.topo)
	c.stats = n.metrics.forRule(c.id.Rule, c.mode)
	return c, nil
}

// routeOf picks the decider of mode in topo: auto and gossip are kept by
// gossip in a cluster small enough (Config.GossipSync's MaxMembers and
// GossipModeMaxMembers) and decided by their owners above.
func routeOf(mode rules.Sync, topo *topology) route {
	switch {
	case mode == rules.SyncLocal:
		return routeLocal
	case topo.gossips(mode):
		return routeReplicas
	}
	return routeOwners
}

// result is the answer to c, decided d. Under a shadow rule a denial
// becomes an allowance that says it would have been denied (and is
// counted); nothing was spent for it, so the bucket holds what enforcement
// would leave.
func (c *check) result(d bucket.Decision) Result {
	var res Result
	c.answer(&res, d)
	return res
}

// answer writes c's answer, decided d, to res.
func (c *check) answer(res *Result, d bucket.Decision) {
	if !c.quiet {
		c.stats.observe(&d, c.limit)
	}
	*res = Result{Decision: d, Rule: c.id.Rule, Policy: c.limit, Sync: c.mode, Shadow: c.shadow}
	if c.shadow && !d.Allowed {
		res.ShadowDenied = true
		res.Allowed, res.RetryAfter, res.TooLarge = true, 0, false
		if !c.quiet {
			c.stats.shadowAllowed.Add(1)
		}
	}
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

func (l *localMode) decide(c *check, res *Result) {
	c.answer(res, l.store.AllowN(l.now(), c.id, c.limit, c.cost))
}

func (l *localMode) reserve(c *check) (Result, func()) {
	d := l.store.ReserveN(l.now(), c.id, c.limit, c.cost, c.maxWait)
	return c.result(d), func() { l.store.RefundN(l.now(), c.id, c.limit, c.cost) }
}
