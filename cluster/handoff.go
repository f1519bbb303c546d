package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// handoffTimeout bounds handing buckets to one member.
const handoffTimeout = 5 * time.Second

// deliverLimit bounds handing buckets on, over every owner that refused
// them: a refusal by a member that is leaving too takes a round trip, one
// by a member that cannot be reached takes what is left of handoffTimeout.
// So a leave takes no longer than it did with a single round, and leaves
// the rest of the shutdown budget to the API's drain.
const deliverLimit = handoffTimeout

// topologyChanged follows a change of membership from old to topo: it
// forgets peers that left or moved, hands buckets to members that now own
// them, and moves auto and gossip mode's buckets when the cluster crosses
// their caps, between gossip and owner. Sends to different members go out
// at once, bounded by ctx.
func (o *owners) topologyChanged(ctx context.Context, old, topo *topology) {
	o.m.ringMembers.Set(float64(topo.ring.Len()))
	o.m.ringShare.Set(topo.ring.Share(topo.self))
	for name, addr := range old.addrs {
		if topo.addrs[name] != addr {
			o.peers.Forget(addr) // gone, or moved to another address
			o.stalls.answered(name)
		}
	}
	o.noteJoin(old, topo)
	o.noteFailover(old, topo)
	// A joiner may own some of our keys now.
	o.handOff(ctx, topo, rules.SyncOwner)
	for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncGossip} {
		switch {
		case !topo.gossips(mode):
			// Decided by owners (or grown into it): each owner starts
			// from its replica, and the others' replicas are merged into
			// it (the lower level stays), so the switch gives no key a
			// fresh burst.
			o.handOff(ctx, topo, mode)
		case !old.gossips(mode):
			// Shrunk into gossip: every member starts its replicas from
			// the owners' buckets.
			o.spread(ctx, topo, mode)
		}
	}
}

// takeoverTerm is how long after this node last decided from its fair
// share a new authoritative bucket starts from it (seedTakeover).
const takeoverTerm = int64(10 * time.Second)

// seedTakeover starts the authoritative bucket of id, if this node does not
// hold it yet and owns it in topo, from what its fair share of the key says, when it decided
// the key from its fair share within the takeover term: it has become the
// key's owner because its owner failed (or is on the far side of a
// partition, or is handing off), and every member of its side has been
// spending from such a share. The estimate is this node's share level,
// as many times as members are alive, at most the burst: for a hot key,
// near empty, as it was at the old owner, and not a fresh burst.
//
// For a while after a join (joinGrace), a key this node gained by it (a
// member's new life gains its old keys back) starts from a fair share of
// its burst, not all of it: its bucket is
// on its way from the old owner, which hands it on when it sees the join,
// and the first checks may arrive before it. The handed bucket is merged
// in (the lower level stays), so a restart costs at most that share.
func (o *owners) seedTakeover(store *bucket.Store, id bucket.ID, l bucket.Limit, topo *topology, owned, hot bool, now time.Time) {
	ns := now.UnixNano()
	fellBack := ns-o.lastFallback.Load() <= takeoverTerm
	f, j := o.failover.Load(), o.joined.Load()
	if owned && !fellBack && (f == nil || ns >= f.until) && (j == nil || ns >= j.until) {
		return // no window open: two atomic loads and a clock read
	}
	if store.Holds(id) {
		return // one shard lock: the usual case inside a window
	}
	if fellBack {
		// This node decided the key from its fair share lately (its
		// owner did not answer), as did the rest of its side: the
		// estimate is its share's level times the members alive.
		if level, ok := o.fallback.Level(now, id); ok {
			store.Seed(now, id, l, level*topo.alive())
			return
		}
	}
	share := max(l.Burst/topo.remembered, 1)
	if !owned {
		// A peer with another view of the ring asked (it, or this node,
		// has not caught up with a change yet): the key's bucket is at
		// its owner, or on its way there. It starts here from a fair
		// share of the burst, not a fresh burst; empty if the peer asked
		// for a lease (it checks the key often: near empty at its owner),
		// and refills at the rate.
		if hot {
			share = 0
		}
		store.Seed(now, id, l, share)
		return
	}
	if f != nil && ns < f.until {
		// The key had another owner before a member went: the one that
		// went, or one that stays and hands the key on now (the ring
		// spreads its load again, so a departure moves keys between
		// members that stay too). This node has no share of the key to
		// go by (it did not see its traffic), but the key was not full
		// at the old owner for all it knows; a bucket handed on later
		// is merged in (the lower level stays). It started full here
		// when the old owner stayed (ten nodes less five, 300 ms apart:
		// a key moved twice between two members that stayed, 1.47–1.99×
		// its bound).
		if was := f.before.ownerOf(id); was != topo.self {
			store.Seed(now, id, l, share)
			return
		}
	}
	if j != nil && ns < j.until {
		store.Seed(now, id, l, share)
	}
}

// failover is a change of membership that removed members: until when
// the keys they owned start from a fair share at their new owners, and the
// topology before it.
type failover struct {
	until  int64
	before *topology
}

// noteFailover records that members went in the change from old to topo.
// One that left gracefully handed its buckets on first (they are here
// already); one that failed could not.
func (o *owners) noteFailover(old, topo *topology) {
	for name := range old.addrs {
		if _, still := topo.addrs[name]; !still {
			o.failover.Store(&failover{until: o.now().UnixNano() + takeoverTerm, before: old})
			return
		}
	}
}

// joinGrace is how long after a join the keys it gave this node start from
// a share of their burst: long enough for the old owners' handoffs.
const joinGrace = int64(handoffTimeout)

// joined is a join that gave this node keys back, until when its grace
// lasts.
type joined struct {
	until int64
}

// noteJoin records a join in the change from old to topo that may give
// this node keys held elsewhere: a new life of a member (it stored its
// cluster's size) finding its peers, which hold its old keys and hand them
// back. A node new to the cluster, or a cluster forming, has nothing on
// its way, and decides from full buckets at once; so does a new life whose
// peers all started with it, within startedTogether (the whole cluster
// restarted: no peer held its keys while it was away, and a share of the
// burst would only deny every key that is new in the first seconds).
func (o *owners) noteJoin(old, topo *topology) {
	if !o.restarted || old.alive() > 1 || topo.alive() <= 1 {
		return
	}
	if o.started > 0 && topo.firstStart > o.started-int64(startedTogether) {
		o.log.Info("every peer started with this node: its keys start from full buckets", "peers", topo.alive()-1)
		return
	}
	o.joined.Store(&joined{until: o.now().UnixNano() + joinGrace})
}

// startedTogether is how close to a restarted node's start its peers must
// all have started for the cluster to count as restarted as a whole: the
// longest its checks are held (bootHold), by the peers' own clocks.
const startedTogether = bootHold

// leave hands every owned bucket to its owner on the ring without this
// node, to all of them at once within ctx: what a graceful leave does
// before telling the cluster. From its start this node answers no peer,
// and decides its own checks from its fair share until the handoff is
// done, then by asking the new owners: no check is decided here on a
// bucket already handed on. Replicas of a mode that gossips stay: every
// other member has its own.
func (o *owners) leave(ctx context.Context) {
	o.leaving.Lock()
	o.left.Store(true)
	o.leaving.Unlock()
	topo := o.topo()
	if topo.ring.Len() <= 1 {
		o.after.Store(topo) // alone: nobody to hand on to; it keeps deciding here
		return
	}
	next, err := topo.without(o.ringCfg, topo.self)
	if err != nil {
		o.log.Error("no ring to hand buckets off to", "err", err)
		o.after.Store(topo)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { o.handOff(ctx, next, rules.SyncOwner) })
	for _, mode := range []rules.Sync{rules.SyncAuto, rules.SyncGossip} {
		if !topo.gossips(mode) {
			wg.Go(func() { o.handOff(ctx, next, mode) })
		}
	}
	wg.Wait()
	// From now on this node's own checks go to the new owners, which
	// hold the buckets it handed on; until now they fell back to its
	// fair share, never to a fresh bucket here.
	o.after.Store(next)
}

// handOff sends the buckets of mode that topo assigns to another member to
// that member, and drops them here (deliver).
func (o *owners) handOff(ctx context.Context, topo *topology, mode rules.Sync) {
	moved := o.store(mode).Take(o.now(), func(id bucket.ID) bool { return topo.ownerOf(id) != topo.self })
	o.deliver(ctx, topo, mode, moved)
}

// deliver sends entries of mode to their owners in topo, all owners at
// once. Entries an owner refuses (it is leaving too, as when an autoscaler
// removes several members at once, or it is gone) go to their owner on the
// ring without it, round after round, until every entry is taken: the
// ring the cluster will have once the leavers are gone. An entry whose
// owner is then this node is merged back here, unless this node is
// leaving meanwhile. Entries an owner did not take within handoffTimeout
// (it cannot be reached: a partition) are not sent on, so a partition
// costs one timeout, not one per member behind it. An entry nobody takes
// is lost, and its owner starts it full (bounded: one burst). All rounds
// together take at most deliverLimit: a change of membership waits for
// them before the next is taken in.
func (o *owners) deliver(ctx context.Context, topo *topology, mode rules.Sync, entries []bucket.Entry) {
	ctx, cancel := context.WithTimeout(ctx, deliverLimit)
	defer cancel()
	for len(entries) > 0 {
		byOwner := map[string][]bucket.Entry{}
		for _, e := range entries {
			owner := topo.ownerOf(e.ID)
			byOwner[owner] = append(byOwner[owner], e)
		}
		var (
			mu          sync.Mutex
			refused     []string
			errs        []error
			failed      []bucket.Entry
			unreachable []string
			wg          sync.WaitGroup
		)
		refuse := func(owner string, err error, es []bucket.Entry) {
			mu.Lock()
			refused, errs, failed = append(refused, owner), append(errs, err), append(failed, es...)
			mu.Unlock()
		}
		if mine := byOwner[topo.self]; len(mine) > 0 {
			delete(byOwner, topo.self)
			if !o.keep(mode, mine) {
				refuse(topo.self, ErrLeft, mine)
			}
		}
		for owner, es := range byOwner {
			wg.Go(func() {
				switch err := o.send(ctx, topo, owner, mode, es); {
				case errors.Is(err, errHandoffTimeout):
					mu.Lock()
					unreachable = append(unreachable, owner) // and not asked again
					mu.Unlock()
					o.m.handoff.WithLabelValues("lost").Add(float64(len(es)))
					o.log.Warn("handoff failed; the new owner starts these buckets full", "owner", owner, "buckets", len(es), "err", err)
				case err != nil:
					refuse(owner, err, es)
				}
			})
		}
		wg.Wait()
		if len(failed) == 0 {
			return
		}
		next, err := topo.without(o.ringCfg, append(refused, unreachable...)...)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			o.m.handoff.WithLabelValues("lost").Add(float64(len(failed)))
			level := slog.LevelWarn
			if errors.Is(err, errNoMembers) && o.allLeaving(refused, errs) {
				level = slog.LevelInfo // the whole cluster is stopping: nobody to start them full
			}
			o.log.Log(ctx, level, "handoff failed; the new owners start these buckets full", "owners", refused, "buckets", len(failed), "err", errors.Join(errs...), "stopped", err)
			return
		}
		o.log.Info("new owners did not take their buckets; handing them to the next owners", "owners", refused, "buckets", len(failed), "err", errors.Join(errs...))
		o.m.handoff.WithLabelValues("rerouted").Add(float64(len(failed)))
		topo, entries = next, failed
	}
}

// keep merges entries of mode into this node's own store, unless it is
// leaving (its buckets may be taken already): then it reports false.
func (o *owners) keep(mode rules.Sync, entries []bucket.Entry) bool {
	o.leaving.RLock()
	defer o.leaving.RUnlock()
	if o.left.Load() {
		return false
	}
	now := o.now()
	for _, e := range entries {
		o.store(mode).Merge(now, e)
	}
	return true
}

// allLeaving reports whether every member that refused a handoff (with
// the error at the same index) is leaving: it said so, or it is no longer
// a member.
func (o *owners) allLeaving(refused []string, errs []error) bool {
	now := o.topo()
	for i, name := range refused {
		if _, member := now.addrs[name]; member && !errors.Is(errs[i], ErrLeft) {
			return false
		}
	}
	return true
}

// spread sends a copy of every bucket of mode that is not full to every
// other member, which merge them into their replicas: how a cluster that
// shrank into gossip mode starts its replicas from the owners' buckets.
func (o *owners) spread(ctx context.Context, topo *topology, mode rules.Sync) {
	levels := o.store(mode).Levels(o.now(), math.MaxInt)
	if len(levels) == 0 {
		return
	}
	var wg sync.WaitGroup
	for name := range topo.addrs {
		wg.Go(func() {
			switch err := o.send(ctx, topo, name, mode, levels); {
			case errors.Is(err, ErrLeft):
				// Leaving too: it needs no replicas.
			case err != nil:
				// It starts its replicas from what it has (full, for
				// keys it did not see lately).
				o.m.handoff.WithLabelValues("lost").Add(float64(len(levels)))
				o.log.Warn("spreading buckets failed; the member starts its replicas from its own", "member", name, "buckets", len(levels), "err", err)
			}
		})
	}
	wg.Wait()
}

// send hands entries of mode to member to, within ctx and the handoff
// timeout; errHandoffTimeout if that timeout ran out.
func (o *owners) send(ctx context.Context, topo *topology, to string, mode rules.Sync, entries []bucket.Entry) error {
	hctx, cancel := context.WithTimeoutCause(ctx, handoffTimeout, errHandoffTimeout)
	err := o.peers.Handoff(hctx, topo.addrs[to], mode, entries)
	timedOut := errors.Is(context.Cause(hctx), errHandoffTimeout)
	cancel()
	switch {
	case err == nil:
		o.m.handoff.WithLabelValues("sent").Add(float64(len(entries)))
	case timedOut:
		err = fmt.Errorf("%w: %w", errHandoffTimeout, err)
	}
	return err
}

// errHandoffTimeout: a member did not take a handoff within handoffTimeout.
var errHandoffTimeout = errors.New("no answer within the handoff timeout")

func newHandoffMetrics(reg Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_handoff_buckets_total",
		Help: "Buckets handed over when ownership moved or auto or gossip mode switched between gossip and owner (the cluster crossed --gossip-max-members or --gossip-mode-max-members): sent, received, rerouted (their owner refused them, leaving too, or could not be reached: sent on to the next owner), lost (nobody took them; the owner starts them full).",
	}, []string{"result"})
	for _, r := range []string{"sent", "received", "rerouted", "lost"} {
		c.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
