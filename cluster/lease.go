package cluster

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// LeaseConfig configures token leases: how a node that checks a key often
// decides it locally in owner mode, from tokens its owner handed it,
// instead of forwarding every check. Zero fields mean defaults.
type LeaseConfig struct {
	// Threshold is the checks per second of one key on one node from
	// which the node takes leases for it. If zero, 20; negative turns
	// leases off.
	Threshold float64
	// Term is how long a lease lasts: tokens not spent by then go back to
	// the owner. It bounds how long leased tokens sit idle. If zero, 250ms.
	Term time.Duration
}

// A lease, as the node holding it keeps it. A lease is a reservation on
// the owner's bucket: the owner takes the tokens out when it grants them,
// possibly into debt, and says when they will have been earned; the node
// spends them only from then on. So spending them here is exactly as if the
// owner had admitted the checks at that time, and the limit stays exact.
// Until then the node denies the key itself, without asking: the tokens
// are not there yet for anyone. An owner hands any one request at most a
// fair share (of what its bucket holds, or of what it earns in a term,
// divided by the live members), sized to the requester's demand over one
// term, and reservations are served in order, so no node holds tokens idle
// while another starves for longer than a term. When even a share cannot
// be earned within a term, the owner says for how long, and the node denies
// locally until then.
type lease struct {
	owner string // the member the tokens came from
	limit bucket.Limit

	ready     int64 // leased tokens that may be spent now
	pending   int64 // leased tokens that may be spent from pendingAt
	pendingAt int64 // Unix ns
	expires   int64 // Unix ns the unspent tokens go back
	denyUntil int64 // Unix ns until which the owner said it has none
	deniedAt  int64 // Unix ns the owner last denied a check of the key

	// Demand: checks counted in the current window, and the last
	// window's rate.
	checks      int64
	windowStart int64
	rate        float64
	lastCheck   int64

	asking bool // a lease request is in flight
}

// leaseWindow is the window over which demand is measured.
const leaseWindow = int64(100 * time.Millisecond)

// maxLeaseKeys bounds the keys whose demand a node tracks.
const maxLeaseKeys = 100_000

type leaseKey struct {
	mode rules.Sync
	id   bucket.ID
}

// leases is a node's table of leases and demand, by key.
type leases struct {
	threshold     float64
	term          int64
	seed          maphash.Seed
	shards        [32]leaseShard
	metrics       *prometheus.CounterVec
	grantedTokens prometheus.Counter // the counters of metrics, by event
	spent         prometheus.Counter
	returned      prometheus.Counter
	lost          prometheus.Counter
}

type leaseShard struct {
	mu sync.Mutex
	m  map[leaseKey]*lease
}

func newLeases(cfg LeaseConfig, reg Registerer) *leases {
	if cfg.Threshold == 0 {
		cfg.Threshold = 20
	}
	if cfg.Term <= 0 {
		cfg.Term = 250 * time.Millisecond
	}
	l := &leases{threshold: cfg.Threshold, term: int64(cfg.Term), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[leaseKey]*lease)
	}
	l.metrics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_lease_tokens_total",
		Help: "Tokens of leases held by this node, by event: granted (by owners), spent (checks decided here from a lease), returned (unspent at the end of a term), lost (the owner could not be told).",
	}, []string{"event"})
	l.grantedTokens, l.spent = l.metrics.WithLabelValues("granted"), l.metrics.WithLabelValues("spent")
	l.returned, l.lost = l.metrics.WithLabelValues("returned"), l.metrics.WithLabelValues("lost")
	if reg != nil {
		reg.MustRegister(l.metrics)
	}
	return l
}

func (l *leases) on() bool { return l.threshold > 0 }

func (l *leases) shard(k *leaseKey) *leaseShard {
	return &l.shards[idHash(l.seed, k.id)%uint64(len(l.shards))]
}

// leaseOutcome is what a lease made of a check.
type leaseOutcome uint8

const (
	leaseNone   leaseOutcome = iota // forward it
	leaseSpent                      // allowed from the lease
	leaseDenied                     // denied: the owner said it has none until then
)

// use decides r from its lease if it can, counts the demand, and reports
// whether a lease should be asked for now (and how many tokens).
func (l *leases) use(r *check, owner string, now int64) (leaseOutcome, bucket.Decision, int64) {
	k := leaseKey{r.mode, r.id}
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ls, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= maxLeaseKeys/len(l.shards) {
			return leaseNone, bucket.Decision{}, 0
		}
		ls = &lease{owner: owner, limit: r.limit, windowStart: now}
		sh.m[k] = ls
	}
	ls.limit = r.limit
	ls.checks++
	ls.lastCheck = now
	if now-ls.windowStart >= leaseWindow {
		ls.rate = float64(ls.checks) * float64(time.Second) / float64(now-ls.windowStart)
		ls.checks, ls.windowStart = 0, now
	}
	if ls.pending > 0 && now >= ls.pendingAt {
		ls.ready += ls.pending
		ls.pending = 0
	}
	out := leaseNone
	var d bucket.Decision
	if ls.owner == owner && now < ls.expires {
		switch {
		case ls.ready >= r.cost:
			ls.ready -= r.cost
			out = leaseSpent
			d = bucket.Decision{Allowed: true, Limit: r.limit.Rate, Remaining: ls.ready}
		case ls.pending > 0 && r.cost > 0:
			out = leaseDenied
			d = bucket.Decision{Limit: r.limit.Rate, RetryAfter: time.Duration(ls.pendingAt - now)}
		}
	}
	if out == leaseNone && r.cost > 0 && now < ls.denyUntil && ls.owner == owner {
		out = leaseDenied
		d = bucket.Decision{Limit: r.limit.Rate, RetryAfter: time.Duration(ls.denyUntil - now)}
	}
	var want int64
	demand := ls.rate * float64(l.term) / float64(time.Second) // checks per term
	if ls.rate >= l.threshold && !ls.asking && now >= ls.denyUntil &&
		(ls.owner != owner || now >= ls.expires || float64(ls.ready+ls.pending) < demand/2) {
		want = min(max(int64(demand), r.cost, 1), r.limit.Burst)
		ls.asking = true
	}
	return out, d, want
}

// peerJob is a call to a key's owner made off the check path: a lease
// request (OpLease) or tokens given back (OpReturn).
type peerJob struct {
	owner, addr string
	check       PeerCheck
	lease       bool // a return of leased tokens, counted as such
	// parent is the span context of the check that asked for a lease;
	// invalid when tracing is off.
	parent trace.SpanContext
}

// maxQueuedJobs bounds the peer jobs waiting for jobLoop.
const maxQueuedJobs = 1024

// enqueue hands j to jobLoop without blocking. A job that finds the queue
// full is dropped: a lease request is asked again by the next check; the
// tokens of a return are lost to the owner (counted), which errs on the
// side of the limit.
func (o *owners) enqueue(j peerJob) {
	select {
	case o.jobs <- j:
		return
	default:
	}
	switch {
	case j.check.Op == OpLease:
		o.leases.asked(leaseKey{j.check.Sync, j.check.ID})
	case j.lease:
		o.leases.lost.Add(float64(j.check.Cost))
	}
}

// jobLoop runs queued peer jobs, each on a goroutine of its own, and ends
// leases whose term is over, giving their unspent tokens back, until ctx
// ends; then it waits for the jobs in flight.
func (o *owners) jobLoop(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(time.Duration(o.leases.term) / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-o.jobs:
			wg.Go(func() { o.run(ctx, j) })
		case <-t.C:
			if o.leases.on() {
				o.expireLeases()
			}
		}
	}
}

// run makes one peer job's call, within the forward timeout.
func (o *owners) run(ctx context.Context, j peerJob) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	var span trace.Span
	if o.tr != nil && j.parent.IsValid() {
		ctx, span = o.tr.startLease(ctx, j.parent, &j)
	}
	ds, err := o.peers.Check(ctx, j.addr, []PeerCheck{j.check})
	cancel()
	if span != nil {
		endLease(span, ds, err)
	}
	switch {
	case j.check.Op != OpReturn:
	case !j.lease:
		return
	case err != nil:
		o.leases.lost.Add(float64(j.check.Cost))
		return
	default:
		o.leases.returned.Add(float64(j.check.Cost))
		return
	}
	// The reserved tokens are earned Wait after the owner granted them;
	// counting from now, after the answer came back, errs late: safe.
	o.leases.granted(leaseKey{j.check.Sync, j.check.ID}, j.owner, ds, err, o.now().UnixNano(), o.m)
}

// asked records that a lease request for k will not be answered.
func (l *leases) asked(k leaseKey) {
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ls := sh.m[k]; ls != nil {
		ls.asking = false
	}
}

// granted records the answer to a lease request for k from owner.
func (l *leases) granted(k leaseKey, owner string, ds []bucket.Decision, err error, now int64, m *ownerMetrics) {
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ls := sh.m[k] // never dropped while asking
	ls.asking = false
	if err != nil {
		return // forwarding goes on as before
	}
	d := ds[0]
	if d.Granted == 0 {
		ls.denyUntil = now + min(int64(d.RetryAfter), l.term)
		m.leaseEvents.WithLabelValues("empty").Inc()
		return
	}
	l.grantedTokens.Add(float64(d.Granted))
	if ls.owner != owner {
		// Ownership moved: what is left of the old lease is no longer
		// the new owner's to take back; it lapses (never spent: safe).
		ls.ready, ls.pending = 0, 0
		ls.owner = owner
	}
	if ls.pending > 0 && now >= ls.pendingAt {
		ls.ready += ls.pending
		ls.pending = 0
	}
	ls.pending += d.Granted
	ls.pendingAt = max(ls.pendingAt, now+int64(d.Wait))
	ls.expires = ls.pendingAt + l.term
	ls.denyUntil = 0
}

// expireLeases gives back the unspent tokens of leases whose term is over,
// and forgets keys that went quiet.
func (o *owners) expireLeases() {
	l := o.leases
	now := o.now().UnixNano()
	topo := o.topo()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, ls := range sh.m {
			if now >= ls.expires && ls.ready+ls.pending > 0 && !ls.asking {
				tokens := ls.ready + ls.pending
				ls.ready, ls.pending = 0, 0
				// Enqueued under the shard's lock: enqueue never blocks.
				if addr := topo.addrs[ls.owner]; addr != "" {
					o.enqueue(peerJob{owner: ls.owner, addr: addr, check: PeerCheck{ID: k.id, Limit: ls.limit, Cost: tokens, Sync: k.mode, Op: OpReturn}, lease: true})
				} else {
					l.lost.Add(float64(tokens))
				}
			}
			if now-ls.lastCheck > int64(2*time.Second) && ls.ready+ls.pending == 0 && !ls.asking {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// held returns the tokens of k's lease, spendable now or once earned.
func (l *leases) held(k leaseKey) int64 {
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ls := sh.m[k]; ls != nil {
		return ls.ready + ls.pending
	}
	return 0
}

// drop lets k's lease lapse, unspent and not given back (the key was
// reset: its owner's bucket starts full again).
func (l *leases) drop(k leaseKey) {
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ls := sh.m[k]; ls != nil {
		ls.ready, ls.pending, ls.denyUntil = 0, 0, 0
	}
}
