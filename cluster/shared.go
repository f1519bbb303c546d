package cluster

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// What nodes share by gossip, beyond membership.
const (
	// kindRule is one API rule entry (rules.Entry, msgpack), broadcast and,
	// from the node where it changed, sent to every live member.
	kindRule = gossip.FirstKind + iota
	// kindCounters is a transport.CounterPacket, sent to every member.
	kindCounters
)

const (
	// maxReplicasShared bounds the replicas of each gossip store that a
	// node hands a joining peer, so the state stays far below memberlist's
	// 20 MiB; the most recently used go first.
	maxReplicasShared = 20_000
	// idleRecord is how long after its last admission a node drops its
	// record of a gossip bucket (the next admission starts a generation).
	idleRecord = int64(time.Second)
	// forgetOrigin is how long a node keeps a peer's total after last
	// hearing of it.
	forgetOrigin = int64(30 * time.Second)
)

// sharedState is the Node as gossip's Handler: the rules catalog and the
// gossip-mode counters.
type sharedState Node

// state is the body of a full state exchange.
type state struct {
	Rules []rules.Entry `msgpack:"r"`
	// Replicas go only to a joining node (or between the halves of a
	// healed partition, which join again): it starts from them.
	Replicas []replica `msgpack:"b,omitempty"`
}

// replica is one gossip-mode bucket as this node holds it, with the totals
// of each origin that its level accounts for.
type replica struct {
	Sync   rules.Sync `msgpack:"s"`
	Rule   string     `msgpack:"r"`
	Inline [3]int64   `msgpack:"i"`
	Key    string     `msgpack:"k"`
	Limit  [3]int64   `msgpack:"l"`
	// Algo is the algorithm of Limit, and of Inline if set (an inline
	// bucket's limit is its ID's); absent for the token bucket, so older
	// nodes read token buckets as before.
	Algo   bucket.Algorithm `msgpack:"a,omitempty"`
	Tokens int64            `msgpack:"t"`
	Frac   int64            `msgpack:"f"`
	Seen   []originTotal    `msgpack:"o,omitempty"`
}

func limitArray(l bucket.Limit) [3]int64 { return [3]int64{l.Rate, int64(l.Period), l.Burst} }
func arrayLimit(a [3]int64, algo bucket.Algorithm) bucket.Limit {
	return bucket.Limit{Rate: a[0], Period: time.Duration(a[1]), Burst: a[2], Algo: algo}
}

// Message takes in a peer's rule change or counter packet.
func (s *sharedState) Message(kind byte, body []byte) bool {
	n := (*Node)(s)
	switch kind {
	case kindRule:
		var e rules.Entry
		if err := gossip.Unmarshal(body, &e); err != nil {
			return false
		}
		n.mergeRules([]rules.Entry{e})
		return true
	case kindCounters:
		p, err := transport.DecodeCounterPacket(body)
		if err != nil {
			return false
		}
		if p.Origin == n.self {
			return true
		}
		now := n.now()
		for i := range p.Updates {
			u := &p.Updates[i]
			if d := n.counters.apply(p.Origin, u, now.UnixNano()); d > 0 {
				n.buckets[u.Sync].DebitN(now, u.ID, u.Limit, d)
			}
		}
		n.metrics.counterUpdates.Add(float64(len(p.Updates)))
		return true
	}
	return false
}

// LocalState is this node's rules and, for a joining peer, its replicas.
func (s *sharedState) LocalState(join bool) []byte {
	n := (*Node)(s)
	st := state{Rules: n.catalog.Entries()}
	if join {
		now := n.now()
		self := n.self
		for _, sync := range []rules.Sync{rules.SyncGossip, rules.SyncAuto} {
			for _, e := range n.buckets[sync].Levels(now, maxReplicasShared) {
				st.Replicas = append(st.Replicas, replica{
					Sync: sync, Rule: e.ID.Rule, Inline: limitArray(e.ID.Inline), Key: e.ID.Key,
					Limit: limitArray(e.Limit), Algo: e.Limit.Algo, Tokens: e.Tokens, Frac: e.Frac,
					Seen: n.counters.seen(self, sync, e.ID),
				})
			}
		}
	}
	b, err := msgpack.Marshal(&st)
	if err != nil {
		n.log.Error("encoding shared state", "err", err)
		return nil
	}
	return b
}

// MergeState takes in a peer's LocalState: its rules, and the replicas it
// holds. A replica is taken, with the totals it accounts for, only where
// this node has not heard from any peer about that bucket (it is new, or
// was alone), and only if it is lower than its own. A node already in step
// with its peers keeps its level: taking a lower one from a node that
// rejoins after a partition would count the same tokens twice (that node's
// level is low because of debits for what this side admitted).
func (s *sharedState) MergeState(b []byte, join bool) bool {
	n := (*Node)(s)
	var st state
	if err := gossip.Unmarshal(b, &st); err != nil {
		return false
	}
	n.mergeRules(st.Rules)
	if !join {
		return true
	}
	now := n.now()
	self := n.self
	for _, r := range st.Replicas {
		e := bucket.Entry{ID: bucket.ID{Rule: r.Rule, Key: r.Key}, Limit: arrayLimit(r.Limit, r.Algo), Tokens: r.Tokens, Frac: r.Frac}
		if r.Inline != [3]int64{} {
			e.ID.Inline = arrayLimit(r.Inline, r.Algo)
			if !transport.ValidLimit(e.ID.Inline) {
				continue
			}
		}
		if (r.Sync != rules.SyncGossip && r.Sync != rules.SyncAuto) || !transport.ValidLimit(e.Limit) ||
			len(r.Key) > transport.MaxKeyBytes || e.Tokens < -bucket.MaxTokens {
			continue
		}
		if n.counters.heard(r.Sync, e.ID) {
			continue
		}
		if n.buckets[r.Sync].Merge(now, e) {
			n.counters.adopt(self, r.Sync, e.ID, r.Seen, now.UnixNano())
		}
	}
	return true
}

// syncLoop sends this node's gossip-mode totals to every live member each
// interval, in as few packets as they fit in.
func (n *Node) syncLoop(ctx context.Context) error {
	t := time.NewTicker(n.syncInterval)
	defer t.Stop()
	var ups []transport.CounterUpdate
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ups = n.counters.flush(n.now().UnixNano(), idleRecord, forgetOrigin, ups[:0])
		if len(ups) == 0 {
			continue
		}
		to := alivePeers(n.gossip.Members())
		if len(to) == 0 {
			continue
		}
		for _, p := range transport.EncodeCounterPackets(n.self, ups, gossip.MaxPacket) {
			if err := n.gossip.Send(to, kindCounters, p); err != nil {
				n.log.Debug("counter packet not sent", "err", err)
			}
		}
	}
}
