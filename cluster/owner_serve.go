package cluster

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// ErrLeft is what a node that has left its cluster answers peers: their
// keys are no longer its to decide. A peer's check then falls back to the
// sender's fair share; a handoff to it is lost.
var ErrLeft = errors.New("this node has left the cluster")

// DecideForwarded decides checks that peers sent this node as their keys'
// owner, in order, on its authoritative buckets; it serves leases,
// returns and reservations too. It never forwards again, so views of the
// ring that differ for a moment during membership changes cannot make a
// check bounce. An auto- or gossip-mode check that arrives while this node
// already sees a cluster small enough for its mode to gossip is decided on
// its replica and counted for its peers. It does not block. After Leave it
// returns ErrLeft. If ctx holds the sender's span context and tracing is
// on, they are decided in a child span of it.
func (n *Node) DecideForwarded(ctx context.Context, checks []PeerCheck) ([]bucket.Decision, error) {
	if n.tr == nil || len(checks) == 0 || !trace.SpanContextFromContext(ctx).IsValid() {
		return n.owners.serve(checks)
	}
	return n.tr.serve(ctx, checks, n.owners.serve)
}

// AcceptHandoff merges buckets of mode whose owner this node has
// become, or, for a cluster that shrank below auto or gossip mode's cap,
// that it now keeps a replica of. A bucket it already holds keeps the
// lower level, so a handoff never gives a key a fresh burst. It does not
// block. After Leave it returns ErrLeft.
func (n *Node) AcceptHandoff(mode rules.Sync, entries []bucket.Entry) error {
	return n.owners.accept(mode, entries)
}

func (o *owners) serve(checks []PeerCheck) ([]bucket.Decision, error) {
	o.leaving.RLock()
	defer o.leaving.RUnlock()
	if o.left.Load() {
		return nil, ErrLeft
	}
	out := make([]bucket.Decision, len(checks))
	now := o.now()
	topo := o.topo()
	for i := range checks {
		c := &checks[i]
		mode := c.Sync
		if mode != rules.SyncAuto && mode != rules.SyncGossip {
			mode = rules.SyncOwner
		}
		store := o.store(mode)
		l := topo.share(c.Limit) // decided at this side's share, whatever the asker sees
		o.m.ownerOps[c.Op].Inc()
		switch c.Op {
		case OpInspect:
			// The bucket (meaningful on the owner), and what this node
			// holds leased from it.
			out[i] = store.Peek(now, c.ID, l, 0)
			out[i].Granted = o.leases.held(leaseKey{c.Sync, c.ID})
			continue
		case OpReset:
			o.reset(c.ID)
			continue
		case OpReturn:
			store.RefundN(now, c.ID, l, c.Cost)
			continue
		}
		o.seedTakeover(store, c.ID, l, topo, topo.ownerOf(c.ID) == topo.self, c.Op == OpLease, now)
		switch c.Op {
		case OpLease:
			out[i] = o.grantLease(now, store, c, l)
			continue
		case OpReserve:
			out[i] = store.ReserveN(now, c.ID, l, c.Cost, c.MaxWait)
		default:
			out[i] = store.AllowN(now, c.ID, l, c.Cost)
		}
		if topo.gossips(mode) {
			o.replicas.count(topo, mode, c.ID, l, out[i], c.Cost, now)
		}
	}
	return out, nil
}

func (o *owners) accept(mode rules.Sync, entries []bucket.Entry) error {
	o.leaving.RLock()
	defer o.leaving.RUnlock()
	if o.left.Load() {
		return ErrLeft
	}
	if mode != rules.SyncAuto && mode != rules.SyncGossip && mode != rules.SyncOwner {
		return nil
	}
	now := o.now()
	for _, e := range entries {
		o.store(mode).Merge(now, e)
	}
	o.m.handoff.WithLabelValues("received").Add(float64(len(entries)))
	return nil
}

// grantLease is the owner's side of a lease request: it reserves up to the
// tokens asked for on its bucket, at most a fair share for any one member
// (what the bucket holds, or earns in a term, divided by the live members;
// at least 1), if they are earned within a term. Granted says how many,
// Wait when they are earned; if none can be, RetryAfter says when to ask
// again. l is the limit the bucket is decided at (the side's share).
func (o *owners) grantLease(now time.Time, store *bucket.Store, c *PeerCheck, l bucket.Limit) bucket.Decision {
	alive := o.topo().alive()
	held := store.Peek(now, c.ID, l, 0).Remaining
	perTerm := int64(float64(l.Rate) * float64(o.leases.term) / float64(l.Period))
	share := max(held/alive, perTerm/alive, 1)
	want := min(c.Cost, share)
	d := store.ReserveN(now, c.ID, l, want, time.Duration(o.leases.term))
	if !d.Allowed {
		o.m.leaseEvents.WithLabelValues("refused").Inc()
		return d
	}
	d.Granted = want
	o.m.leaseEvents.WithLabelValues("granted").Inc()
	return d
}
