package cluster

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
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

// sharedState is the Node as gossip's Handler: what the cluster shares
// beyond membership, the rules catalog and the gossip-mode replicas.
// Its methods run on memberlist's goroutines and do not block.
type sharedState Node

// Message takes in a peer's rule change or totals packet.
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
	case kindTotals:
		p, err := decodeTotals(body)
		if err != nil {
			return false
		}
		n.replicas.applyTotals(&p)
		return true
	}
	return false
}

// LocalState is this node's rules and, for a joining peer, its replicas.
func (s *sharedState) LocalState(join bool) []byte {
	n := (*Node)(s)
	st := state{Rules: n.catalog.Entries(), Missing: n.missingState()}
	if join {
		for _, r := range n.replicas.joinState() {
			st.Replicas = append(st.Replicas, toReplica(r))
		}
	}
	b, err := msgpack.Marshal(&st)
	if err != nil {
		n.log.Error("encoding shared state", "err", err)
		return nil
	}
	return b
}

// MergeState takes in a peer's LocalState: its rules, and on a join the
// replicas it holds (see replicas.mergeJoinState).
func (s *sharedState) MergeState(b []byte, join bool) bool {
	n := (*Node)(s)
	var st state
	if err := gossip.Unmarshal(b, &st); err != nil {
		return false
	}
	n.mergeRules(st.Rules)
	n.mergeMissing(st.Missing)
	if !join {
		return true
	}
	states := make([]replicaState, 0, len(st.Replicas))
	for _, r := range st.Replicas {
		if rs, ok := fromReplica(r); ok {
			states = append(states, rs)
		}
	}
	n.replicas.mergeJoinState(states)
	return true
}
