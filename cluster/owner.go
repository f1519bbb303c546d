package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// owners decides checks of sync: owner (and auto and gossip in a cluster
// above their caps: gossipCaps). The
// key's owner on the ring holds the authoritative bucket: a check of a key
// this node owns is decided here; any other goes to its owner over Peers,
// or is decided from a lease of the owner's tokens (see leases). If the
// owner cannot answer within the forward timeout, the check is decided
// from this node's fair share of the limit, in a fallback bucket of its
// own. As an owner, it answers its peers' checks, leases and handoffs
// (owner_serve.go), and hands buckets on when ownership moves (handoff.go).
type owners struct {
	now     func() time.Time
	log     *slog.Logger
	topo    func() *topology
	peers   Peers
	timeout time.Duration // forward timeout
	ringCfg ring.Config

	// Authoritative buckets, by mode; auto's and gossip's are the
	// replicas' own stores, so that a key keeps its bucket when its mode
	// switches between gossip and owner.
	owner, auto, gossip *bucket.Store
	fallback            *bucket.Store // this node's fair share of keys whose owner it cannot reach

	leases       *leases
	stalls       stalls                   // owners that did not answer in time
	lastFallback atomic.Int64             // Unix ns of the last check decided from the fair share
	fallbacks    atomic.Uint64            // checks decided from the fair share, for the status page's rates
	joined       atomic.Pointer[joined]   // the last join that gave this node keys
	failover     atomic.Pointer[failover] // the last change that removed members
	restarted    bool                     // a new life of a member: it stored its cluster's size
	started      int64                    // this life's start (gossip.Meta.Incarnation, Unix ns)
	jobs         chan peerJob             // lease requests and returns, run by jobLoop
	replicas     *replicas                // where checks of a gossiping mode served as owner are counted
	left         atomic.Bool              // this node is leaving: it answers no peer any more
	// leaving is held for reading by what a peer asks of the
	// authoritative stores (serve, accept), and for writing as left is
	// set: once leave holds it, no peer's handoff or check lands in a
	// store after the buckets were taken from it to be handed on.
	leaving sync.RWMutex
	// after is the ring without this node, once it has handed its buckets
	// on: its own checks go to their new owners.
	after atomic.Pointer[topology]
	m     *ownerMetrics
	tr    *tracing // nil: tracing off
	// reset drops a key's buckets and leases on this node (Node.resetHere),
	// for a peer's OpReset.
	reset func(bucket.ID)
}

// routing returns the topology a check routed in topo is decided in: topo,
// or once this node is leaving, the ring without it (nil while the buckets
// it owned are on their way: decide from the fair share).
func (o *owners) routing(topo *topology) (*topology, bool) {
	if !o.left.Load() {
		return topo, true
	}
	next := o.after.Load()
	return next, next != nil
}

// store returns the authoritative store of mode.
func (o *owners) store(mode rules.Sync) *bucket.Store {
	switch mode {
	case rules.SyncAuto:
		return o.auto
	case rules.SyncGossip:
		return o.gossip
	}
	return o.owner
}

// decide decides c on the authoritative bucket if this node owns the key,
// else from a lease or by asking the owner, and from the fair share if the
// owner cannot answer in time. If the caller goes away meanwhile, it
// returns ctx's error and spends nothing here.
func (o *owners) decide(ctx context.Context, c *check, res *Result) error {
	topo, ok := o.routing(c.topo)
	if !ok {
		var out [1]Result
		o.fallBack(c.topo, c.topo.ownerOf(c.id), []*check{c}, out[:])
		*res = out[0]
		return nil
	}
	owner := topo.ownerOf(c.id)
	if owner == topo.self {
		*res = o.decideHere(c, owner)
		return nil
	}
	if addr := topo.addrs[owner]; o.leases.on() && addr != "" && c.limit.Algo == bucket.TokenBucket {
		out, d, want := o.leases.use(c, owner, o.now().UnixNano())
		if want > 0 {
			j := peerJob{owner: owner, addr: addr, check: c.peerCheck(OpLease, want)}
			if o.tr != nil {
				j.parent = trace.SpanContextFromContext(ctx)
			}
			o.enqueue(j)
		}
		switch out {
		case leaseSpent:
			o.m.leased.Inc()
			o.leases.spent.Add(float64(c.cost))
			*res = c.resultFrom(d, owner, false)
			res.leased = true
			return nil
		case leaseDenied:
			o.m.leaseDenied.Inc()
			*res = c.resultFrom(d, owner, false)
			res.leased = true
			return nil
		}
	}
	var out [1]Result
	err := o.forward(ctx, topo, owner, []*check{c}, out[:])
	*res = out[0]
	return err
}

// decideHere decides c on this node's authoritative bucket.
func (o *owners) decideHere(c *check, owner string) Result {
	now, store := o.now(), o.store(c.mode)
	l := c.topo.share(c.limit)
	o.seedTakeover(store, c.id, l, c.topo, true, false, now)
	d := store.AllowN(now, c.id, l, c.cost)
	o.m.owned.Inc()
	return c.resultFrom(d, owner, false)
}

// reserve makes c's reservation on the key's owner: here, or by asking it
// (from the fair share if it cannot answer). Giving it back refunds the
// bucket it was made on.
func (o *owners) reserve(ctx context.Context, c *check) (Result, func(), error) {
	topo, ok := o.routing(c.topo)
	if !ok { // handing off: from the fair share
		var out [1]Result
		o.fallBack(c.topo, c.topo.ownerOf(c.id), []*check{c}, out[:])
		share := fairShare(c.limit, c.topo.remembered)
		return out[0], func() { o.fallback.RefundN(o.now(), c.id, share, c.cost) }, nil
	}
	owner := topo.ownerOf(c.id)
	if owner == topo.self {
		o.m.owned.Inc()
		store := o.store(c.mode)
		l := topo.share(c.limit)
		o.seedTakeover(store, c.id, l, topo, true, false, o.now())
		d := store.ReserveN(o.now(), c.id, l, c.cost, c.maxWait)
		return c.resultFrom(d, owner, false), func() { store.RefundN(o.now(), c.id, l, c.cost) }, nil
	}
	out := []Result{{}}
	if err := o.forward(ctx, topo, owner, []*check{c}, out); err != nil {
		return Result{}, nil, err
	}
	if out[0].Fallback {
		share := fairShare(c.limit, topo.remembered)
		return out[0], func() { o.fallback.RefundN(o.now(), c.id, share, c.cost) }, nil
	}
	job := peerJob{owner: owner, addr: topo.addrs[owner], check: c.peerCheck(OpReturn, c.cost)}
	return out[0], func() { o.enqueue(job) }, nil
}

// resultFrom is c's answer decided d, with the owner that decided it.
func (c *check) resultFrom(d bucket.Decision, owner string, fallback bool) Result {
	res := c.result(d)
	res.Owner, res.Fallback = owner, fallback
	return res
}

// forward asks owner to decide cs, in one call within the forward timeout,
// and writes the results to out. If the owner cannot answer, each check is
// decided from this node's fair share instead (counted), unless the caller
// went away: then it returns ctx's error. An owner that did not answer in
// time is not asked again until it answers a probe (stalls), so a frozen
// owner costs one timeout, not one per check.
func (o *owners) forward(ctx context.Context, topo *topology, owner string, cs []*check, out []Result) error {
	if o.tr != nil {
		var span trace.Span
		ctx, span = o.tr.startForward(ctx, owner, cs)
		defer endForward(span, out)
	}
	var err error
	addr := topo.addrs[owner]
	ask, probe := o.stalls.ask(owner, o.now())
	switch {
	case addr == "":
		err = errNoPeerAddr
		o.stalls.abandoned(owner, probe)
	case !ask:
		err = errStalled
	default:
		checks := make([]PeerCheck, len(cs))
		for i, c := range cs {
			checks[i] = c.peerCheck(c.op, c.cost)
		}
		fctx, cancel := context.WithTimeout(ctx, o.timeout)
		start := time.Now()
		var ds []bucket.Decision
		ds, err = o.peers.Check(fctx, addr, checks)
		cancel()
		o.m.forwardSeconds.Observe(time.Since(start).Seconds())
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if o.stalls.timedOut(owner, o.now(), probe) {
				o.log.Warn("owner did not answer in time; deciding its keys from the fair share until it answers a probe", "owner", owner, "timeout", o.timeout)
			}
		case ctx.Err() == nil:
			o.stalls.answered(owner)
		default: // the caller left: no verdict on the owner
			o.stalls.abandoned(owner, probe)
		}
		if err == nil {
			o.m.forwarded.Add(float64(len(cs)))
			for i, c := range cs {
				out[i] = c.resultFrom(ds[i], owner, false)
				if d := &ds[i]; !d.Allowed && d.Remaining == 0 && (c.op == OpCheck || c.op == OpReserve) && !c.limit.Algo.Windowed() {
					// Empty at its owner now: if the owner cannot be
					// reached later, this node's share starts from what
					// it earned since (fallBack).
					o.leases.denied(leaseKey{c.mode, c.id}, o.now().UnixNano())
				}
			}
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	o.log.Debug("owner unreachable; deciding from the fair share", "owner", owner, "checks", len(cs), "err", err)
	if o.tr != nil {
		fellBack(ctx, owner, len(cs), err)
	}
	o.fallBack(topo, owner, cs, out)
	return nil
}

// fallBack decides cs from this node's fair share of their limits among
// topo's live members, counted, and writes the results to out.
func (o *owners) fallBack(topo *topology, owner string, cs []*check, out []Result) {
	o.m.fallback.Add(float64(len(cs)))
	o.fallbacks.Add(uint64(len(cs)))
	now, members := o.now(), topo.remembered
	o.lastFallback.Store(now.UnixNano())
	for i, c := range cs {
		share := fairShare(c.limit, members)
		if level, ok := o.leases.emptyShare(leaseKey{c.mode, c.id}, share, now.UnixNano()); ok {
			// A key this node checks often, or one its owner denied
			// lately, is near empty at its owner: its share starts from
			// what it earned since, not with a fresh part of the burst
			// (every member falling back at once spent a whole burst
			// between them, once per leaver when members left apart),
			// and fills at the share's rate.
			o.fallback.Seed(now, c.id, share, level)
		}
		var d bucket.Decision
		if c.op == OpReserve {
			d = o.fallback.ReserveN(now, c.id, share, c.cost, c.maxWait)
		} else {
			d = o.fallback.AllowN(now, c.id, share, c.cost)
		}
		out[i] = c.resultFrom(d, owner, true)
	}
}

// errNoPeerAddr is an owner whose peer address is not known (yet).
var errNoPeerAddr = errors.New("owner's peer address unknown")

// fairShare is a node's part of limit l when n nodes share it and cannot
// reach its owner: the same rate spread over n periods (exact, no
// rounding), and 1/n of the burst, at least 1, counted the same way (a
// window n periods long for the windowed algorithms).
func fairShare(l bucket.Limit, n int64) bucket.Limit {
	if n <= 1 {
		return l
	}
	s := bucket.Limit{Rate: l.Rate, Period: l.Period * time.Duration(n), Burst: max(l.Burst/n, 1), Algo: l.Algo}
	if l.Algo.Windowed() {
		s.Burst = s.Rate
	}
	return s
}

// decideBatch decides the owner-mode checks of a batch (indexes into cs):
// those this node owns at once, the others in one call per owner, all
// owners at the same time.
func (o *owners) decideBatch(ctx context.Context, cs []check, idx []int, out []Result) error {
	topo, ok := o.routing(o.topo())
	if !ok {
		for _, i := range idx {
			var one [1]Result
			o.fallBack(cs[i].topo, cs[i].topo.ownerOf(cs[i].id), []*check{&cs[i]}, one[:])
			out[i] = one[0]
		}
		return nil
	}
	byOwner := map[string][]int{}
	for _, i := range idx {
		owner := topo.ownerOf(cs[i].id)
		if owner == topo.self {
			out[i] = o.decideHere(&cs[i], owner)
			continue
		}
		byOwner[owner] = append(byOwner[owner], i)
	}
	var wg sync.WaitGroup
	errs := make([]error, 0, len(byOwner))
	var mu sync.Mutex
	for owner, ids := range byOwner {
		wg.Go(func() {
			group := make([]*check, len(ids))
			results := make([]Result, len(ids))
			for j, i := range ids {
				group[j] = &cs[i]
			}
			err := o.forward(ctx, topo, owner, group, results)
			for j, i := range ids {
				out[i] = results[j]
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
