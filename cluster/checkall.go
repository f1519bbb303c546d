package cluster

import "context"

// CheckAll decides checks that stand or fall together, as the descriptors
// of one request of Envoy's rate limit protocol: the request is allowed
// only if every check is, and a request that is denied on one check spends
// nothing on the others. It resolves every check before deciding any, so
// bad input anywhere changes no state (the error names the check, as
// CheckBatch's does).
//
// When at most one check can deny and spend (cost above zero, not under a
// shadow rule) it is CheckBatch. Otherwise it decides in two steps. First
// it reads every check's bucket without spending (a peek, not counted in
// the metrics). If a check cannot fit its cost, only those checks are
// decided: they are denied and counted, nothing is spent, and the others
// answer allowed with what their buckets hold, unspent. If every check
// fits, all are decided, spending. A check can still be denied then: a
// concurrent check took the last tokens between the two steps, or, in
// gossip mode, this node has spent its share of a key that peers also
// spend on (the read sees the replica, the decision the share). That
// check is denied and the others keep what they spent, as if decided one
// by one. The results
// are in request order; Result.Unspent marks the answers of the first
// step.
func (n *Node) CheckAll(ctx context.Context, reqs []Request) ([]Result, error) {
	cs, err := n.resolveAll(reqs)
	if err != nil {
		return nil, err
	}
	if err := n.settle(ctx, cs); err != nil {
		return nil, err
	}
	out, err := n.checkAll(ctx, cs)
	if err == nil && n.tr != nil {
		n.tr.annotateBatch(ctx, cs, out)
	}
	return out, err
}

// checkAll decides the resolved checks cs of CheckAll.
func (n *Node) checkAll(ctx context.Context, cs []check) ([]Result, error) {
	var err error
	out := make([]Result, len(cs))
	binding := 0
	for i := range cs {
		if n.hot.sampled() {
			n.hot.record(cs[i].id, n.now())
		}
		if cs[i].cost > 0 && !cs[i].shadow {
			binding++
		}
	}
	if binding <= 1 {
		if len(cs) == 1 {
			err = n.decide(ctx, &cs[0], &out[0])
		} else {
			err = n.decideSome(ctx, cs, every(len(cs)), out)
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	peeks := make([]check, len(cs))
	for i := range cs {
		peeks[i] = cs[i]
		peeks[i].cost, peeks[i].quiet = 0, true
	}
	seen := make([]Result, len(cs))
	if err := n.decideSome(ctx, peeks, every(len(cs)), seen); err != nil {
		return nil, err
	}
	var over, rest []int
	for i := range cs {
		if cs[i].cost > 0 && !cs[i].shadow && (seen[i].TooLarge || seen[i].Remaining < cs[i].cost) {
			over = append(over, i)
		} else {
			rest = append(rest, i)
		}
	}
	if len(over) == 0 {
		if err := n.decideSome(ctx, cs, every(len(cs)), out); err != nil {
			return nil, err
		}
		return out, nil
	}
	if err := n.decideSome(ctx, cs, over, out); err != nil {
		return nil, err
	}
	for _, i := range over {
		if !out[i].Allowed {
			for _, j := range rest {
				out[j] = seen[j]
				out[j].Unspent = true
			}
			return out, nil
		}
	}
	// Every check that seemed over fitted when decided (its window rolled
	// over meanwhile, say): decide the others too.
	if err := n.decideSome(ctx, cs, rest, out); err != nil {
		return nil, err
	}
	return out, nil
}
