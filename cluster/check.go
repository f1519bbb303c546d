package cluster

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// MaxKeyBytes bounds a check's key.
const MaxKeyBytes = 1024

// MaxBatch bounds the number of checks in one batch, and in one peer call.
const MaxBatch = 1000

// ErrNotReady is returned for checks that arrive before any rules are loaded.
var ErrNotReady = errors.New("node not ready: no rules loaded yet")

// ErrRulesReadOnly is returned for rule changes on a node that cannot store
// them durably, and so refuses them.
var ErrRulesReadOnly = errors.New("this node has no data directory, so it does not accept rule changes: change rules on a node that has one, or start this one with --data-dir")

// Request is one check, syntactically valid. Exactly one of Rule,
// Descriptors or Inline selects the limit.
type Request struct {
	// Key is the caller's key; empty when Descriptors make the key.
	Key string
	// Rule names a rule from the rules in force.
	Rule string
	// Descriptors are matched against the rules in force (see rules.Set.Match).
	Descriptors map[string]string
	// Inline is a limit given in the request itself; zero otherwise.
	Inline bucket.Limit
	// Cost is the number of tokens to spend; 0 peeks.
	Cost int64
	// Sync, when SyncSet, overrides the rule's sync mode.
	Sync    rules.Sync
	SyncSet bool
}

// Result is the answer to a check.
type Result struct {
	bucket.Decision
	// Rule is the rule's name, or "" for an inline limit.
	Rule string
	// Policy is the limit that was applied.
	Policy bucket.Limit
	// Sync is the sync mode the check ran under.
	Sync rules.Sync
	// Waited is, for Wait, how long the call was held before the tokens
	// were granted.
	Waited time.Duration
	// Owner is, in owner mode, the member that owns the key.
	Owner string
	// Fallback reports that the owner could not be reached and the check
	// was decided from this node's fair share of the limit.
	Fallback bool
	// Shadow reports a check under a shadow rule (or on a node in shadow
	// mode): it is allowed whatever the decision, and ShadowDenied says
	// that the limit would have denied it.
	Shadow, ShadowDenied bool
	// Unspent reports, for CheckAll, a check that was only read, not
	// decided, because another check of the same call was denied.
	Unspent bool
	// leased: decided from a lease of the owner's tokens (for traces).
	leased bool
}

// Check decides one check. Its errors are bad input (*rules.FieldError),
// ErrNotReady, or ctx's error if the caller left while the check waited
// on its owner (or, on a restarted node, for its first peer: see
// bootGate).
func (n *Node) Check(ctx context.Context, req *Request) (Result, error) {
	c, err := n.resolve(req)
	if err != nil {
		return Result{}, err
	}
	if err := n.settleOne(ctx, &c); err != nil {
		return Result{}, err
	}
	if n.hot.sampled() {
		n.hot.record(c.id, n.now())
	}
	var res Result
	if err := n.decide(ctx, &c, &res); err != nil {
		return Result{}, err
	}
	if !res.Allowed {
		n.denied.record(c.id, n.now())
	}
	if n.tr != nil {
		n.tr.annotate(ctx, &c, &res)
	}
	return res, nil
}

// CheckBatch decides checks in order. It resolves every check before
// deciding any, so a bad check anywhere in the batch changes no state: the
// error names it, with the field prefixed by "checks[i].". Checks decided
// by owners go to each owner in one call, to all owners at once.
func (n *Node) CheckBatch(ctx context.Context, reqs []Request) ([]Result, error) {
	cs, err := n.resolveAll(reqs)
	if err != nil {
		return nil, err
	}
	if err := n.settle(ctx, cs); err != nil {
		return nil, err
	}
	out := make([]Result, len(cs))
	if err := n.decideSome(ctx, cs, every(len(cs)), out); err != nil {
		return nil, err
	}
	if n.tr != nil {
		n.tr.annotateBatch(ctx, cs, out)
	}
	return out, nil
}

// resolveAll resolves every request, or none: the error names the first
// bad one, with the field prefixed by "checks[i].".
func (n *Node) resolveAll(reqs []Request) ([]check, error) {
	cs := make([]check, len(reqs))
	for i := range reqs {
		var err error
		if cs[i], err = n.resolve(&reqs[i]); err != nil {
			return nil, rules.PrefixField(err, "checks["+strconv.Itoa(i)+"].")
		}
	}
	return cs, nil
}

// every returns the indices 0 to n-1.
func every(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// decideSome decides the checks cs[i] for i in idx, writing out[i].
// Checks decided by owners go to each owner in one call, to all owners at
// once.
func (n *Node) decideSome(ctx context.Context, cs []check, idx []int, out []Result) error {
	var owned []int
	for _, i := range idx {
		if cs[i].route == routeOwners {
			owned = append(owned, i)
			continue
		}
		n.decide(ctx, &cs[i], &out[i]) // local decisions do not fail
	}
	if len(owned) > 0 {
		if err := n.owners.decideBatch(ctx, cs, owned, out); err != nil {
			return err
		}
	}
	now := n.now()
	for _, i := range idx {
		if !out[i].Allowed {
			n.denied.record(cs[i].id, now)
		}
	}
	return nil
}

// Wait reserves the check's tokens and holds the call until they are due.
// Reservations on one bucket are granted in arrival order: each waits
// behind the tokens reserved before it (for a leaky bucket, behind
// everything queued before it, so callers are released evenly spaced). In
// owner mode the owner reserves and this node holds the call. If the
// tokens cannot be granted within maxWait it answers at once with a
// denial and spends nothing. If ctx ends first the reserved tokens are
// given back and ctx's error returned. Windowed algorithms cannot reserve
// ahead: a wait on one is bad input.
func (n *Node) Wait(ctx context.Context, req *Request, maxWait time.Duration) (Result, error) {
	c, err := n.resolve(req)
	if err != nil {
		return Result{}, err
	}
	if err := n.settleOne(ctx, &c); err != nil {
		return Result{}, err
	}
	if c.limit.Algo.Windowed() {
		return Result{}, &rules.FieldError{Field: "algorithm",
			Msg: c.limit.Algo.String() + " does not queue: /v1/wait takes token_bucket or leaky_bucket; use /v1/check and retry after Retry-After"}
	}
	c.op, c.maxWait = OpReserve, maxWait
	res, giveBack, err := n.reserve(ctx, &c)
	if err != nil {
		return Result{}, err
	}
	if !res.Allowed {
		n.denied.record(c.id, n.now())
	}
	if n.tr != nil {
		n.tr.annotate(ctx, &c, &res)
	}
	if !res.Allowed || res.Wait == 0 {
		return res, nil
	}
	timer := time.NewTimer(res.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		res.Waited = res.Wait
		return res, nil
	case <-ctx.Done():
		giveBack()
		n.metrics.waitsAbandoned.Inc()
		return Result{}, ctx.Err()
	}
}
