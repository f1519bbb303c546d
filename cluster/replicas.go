package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// replicas decides checks of sync: gossip (and auto in a small cluster).
// Every node keeps a replica of each such bucket and decides on it, with
// no hop; what it admits goes into its totals, which syncLoop sends to
// every live member each interval, and what its peers admitted is debited
// from its replica as their totals arrive (see totals).
type replicas struct {
	now      func() time.Time
	self     string
	stores   [2]*bucket.Store // by replicaStore
	topo     func() *topology
	totals   *totals
	interval time.Duration
	gossip   *gossip.Gossip // nil when standalone
	log      *slog.Logger
	updates  prometheus.Counter // totals received
	hearing  hearing            // when each peer was last heard (silence.go)
	// seed starts a replica not held yet when a mode has just entered
	// gossip (Node.seedReplica); nil: none.
	seed func(mode rules.Sync, id bucket.ID, l bucket.Limit, topo *topology)
	// onSilence is called when the set of silent peers changes.
	onSilence func()
	// beating reports whether the node advertises that it beats (beats);
	// nil: it does not.
	beating func() bool
}

// replicaStore indexes replicas.stores by mode.
func replicaStore(mode rules.Sync) int {
	if mode == rules.SyncAuto {
		return 1
	}
	return 0
}

func (r *replicas) store(mode rules.Sync) *bucket.Store { return r.stores[replicaStore(mode)] }

// decide decides c on this node's replica: at most this node's share of
// it while peers spend on the key too (share.go). A node alone decides on
// its replica as on a local bucket, and counts nothing.
func (r *replicas) decide(c *check, res *Result) {
	now := r.now()
	store := r.store(c.mode)
	l := c.topo.share(c.limit)
	if members := c.topo.alive(); members > 1 {
		c.answer(res, r.totals.spend(store, c.mode, c.id, l, c.cost, now, members))
		return
	}
	c.answer(res, store.AllowN(now, c.id, l, c.cost))
}

// reserve reserves on this node's replica, counting the reservation for
// its peers as spent even if the caller leaves: totals only grow, which
// errs on the side of the limit.
func (r *replicas) reserve(c *check) (Result, func()) {
	now := r.now()
	store := r.store(c.mode)
	l := c.topo.share(c.limit)
	d := store.ReserveN(now, c.id, l, c.cost, c.maxWait)
	r.count(c.topo, c.mode, c.id, l, d, c.cost, now)
	return c.result(d), func() { store.RefundN(r.now(), c.id, l, c.cost) }
}

// count adds what d admitted to this node's totals, for its peers. A node
// alone counts nothing: a peer that joins later starts from its replica's
// level, which already holds what it admitted.
func (r *replicas) count(topo *topology, mode rules.Sync, id bucket.ID, l bucket.Limit, d bucket.Decision, cost int64, now time.Time) {
	if d.Allowed && cost > 0 && topo.alive() > 1 {
		r.totals.add(mode, id, l, cost, now.UnixNano())
	}
}

// applyTotals debits this node's replicas by what a peer's packet says it
// admitted since its last.
func (r *replicas) applyTotals(p *totalsPacket) {
	if p.Origin == r.self {
		return
	}
	now := r.now()
	r.hearing.heardFrom(p.Origin, now.UnixNano())
	topo := r.topo()
	for i := range p.Updates {
		u := &p.Updates[i]
		d := r.totals.apply(p.Origin, u, now.UnixNano())
		if d <= 0 {
			continue
		}
		store := r.store(u.Sync)
		if !store.Holds(u.ID) {
			if !topo.gossips(u.Sync) {
				continue // its owner holds it, and takes the debit (enter.go)
			}
			if r.seed != nil {
				r.seed(u.Sync, u.ID, u.Limit, topo)
			}
		}
		store.DebitN(now, u.ID, u.Limit, d)
	}
	r.updates.Add(float64(len(p.Updates)))
}

// syncLoop sends this node's totals to every live member each interval,
// in as few packets as they fit in, at the same point of every epoch on
// every node (see share.go).
func (r *replicas) syncLoop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(untilFlush(r.now().UnixNano(), r.interval)):
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	var ups []totalUpdate
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := r.now().UnixNano()
		topo := r.topo()
		beat := beats(topo, r.beating != nil && r.beating())
		if r.hearing.update(topo, now, silentAfter*int64(r.interval)) && r.onSilence != nil {
			r.onSilence()
		}
		ups = r.totals.flush(now, idleRecord, forgetOrigin, ups[:0])
		if len(ups) == 0 && !beat {
			continue
		}
		to := alivePeers(r.gossip.Members())
		if len(to) == 0 {
			continue
		}
		packets := encodeTotals(r.self, ups, gossip.MaxPacket)
		if len(packets) == 0 {
			packets = [][]byte{heartbeat(r.self)}
		}
		for _, p := range packets {
			if err := r.gossip.Send(to, kindTotals, p); err != nil {
				r.log.Debug("totals not sent", "err", err)
			}
		}
	}
}

// joinState returns the replicas this node hands a joining peer, most
// recently used first, with the totals each level accounts for.
func (r *replicas) joinState() []replicaState {
	now := r.now()
	var out []replicaState
	for _, mode := range []rules.Sync{rules.SyncGossip, rules.SyncAuto} {
		for _, e := range r.store(mode).Levels(now, maxReplicasShared) {
			out = append(out, replicaState{Sync: mode, Entry: e, Seen: r.totals.seen(r.self, mode, e.ID)})
		}
	}
	return out
}

// mergeJoinState takes in a peer's replicas on joining. A replica is
// taken, with the totals it accounts for, only where this node has not
// heard from any peer about that bucket (it is new, or was alone), and
// only if it is lower than its own. A node already in step with its peers
// keeps its level: taking a lower one from a node that rejoins after a
// partition would count the same tokens twice (that node's level is low
// because of debits for what this side admitted).
func (r *replicas) mergeJoinState(states []replicaState) {
	now := r.now()
	for _, s := range states {
		if r.totals.heard(s.Sync, s.Entry.ID) {
			continue
		}
		if r.store(s.Sync).Merge(now, s.Entry) {
			r.totals.adopt(r.self, s.Sync, s.Entry.ID, s.Seen, now.UnixNano())
		}
	}
}

// alivePeers returns the members other than this node that are alive.
func alivePeers(members []gossip.Member) []gossip.Member {
	var to []gossip.Member
	for _, m := range members {
		if m.State == gossip.StateAlive && !m.Self {
			to = append(to, m)
		}
	}
	return to
}
