package cluster

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sluicerl/sluice/rules"
)

// Failure detection takes seconds (longer on the minority side of a
// partition, where Lifeguard slows its own probes down), and until a
// member is declared dead each side of a partition would decide at the
// full limit. In a cluster small enough for auto mode to gossip, every
// node sends its totals packet every sync interval, empty if it has
// nothing to say: a heartbeat. A live member not heard for silentAfter
// (twenty intervals: no plausible run of lost packets) counts as missing
// for the share (partition.go) at once, before memberlist declares it
// dead; it stays on the ring, so no key moves. So does a cluster within
// gossip mode's cap that has rules set to gossip mode (beats). In a larger
// cluster there are no heartbeats, and the share follows membership alone.

// silentAfter is how many sync intervals without a packet make a live
// member silent.
const silentAfter = 20

// hearing is when each peer was last heard by gossip, and which live
// peers are silent.
type hearing struct {
	mu     sync.Mutex
	heard  map[string]int64 // peer → Unix ns of its last totals packet
	silent atomic.Pointer[[]string]
}

// heardFrom records a packet from origin at now.
func (h *hearing) heardFrom(origin string, now int64) {
	h.mu.Lock()
	if h.heard == nil {
		h.heard = make(map[string]int64)
	}
	h.heard[origin] = now
	h.mu.Unlock()
}

// update recomputes the silent peers of topo at now: live members not
// heard within after. While nodes heartbeat, a live peer not heard yet
// counts from the first update that expects it to (a member that joined,
// or every peer when auto mode has just begun to gossip): one that never
// beats is silent after that long too. Without heartbeats, and for peers
// no longer in topo, nothing is kept, so each starts afresh when
// heartbeats are expected again. It reports whether the set changed.
//
// A node cut off from the rest while its cluster routed to owners (no
// heartbeats) begins to gossip when memberlist declares a first peer dead;
// it has heard none of them, and without this it would count none silent
// and spend at the full limit until they were all declared dead.
func (h *hearing) update(topo *topology, beats bool, now, after int64) bool {
	var silent []string
	h.mu.Lock()
	if h.heard == nil {
		h.heard = make(map[string]int64)
	}
	for name, at := range h.heard {
		_, live := topo.addrs[name]
		switch {
		case !live, !beats:
			delete(h.heard, name)
		case now-at > after:
			silent = append(silent, name)
		}
	}
	if beats {
		for name := range topo.addrs {
			if _, ok := h.heard[name]; !ok {
				h.heard[name] = now
			}
		}
	}
	h.mu.Unlock()
	slices.Sort(silent)
	if old := h.silent.Load(); old != nil && slices.Equal(*old, silent) || old == nil && len(silent) == 0 {
		return false
	}
	h.silent.Store(&silent)
	return true
}

// silentOn returns how many of topo's ring members are silent.
func (h *hearing) silentOn(topo *topology) int64 {
	p := h.silent.Load()
	if p == nil {
		return 0
	}
	var n int64
	for _, name := range *p {
		if _, live := topo.addrs[name]; live {
			n++
		}
	}
	return n
}

// beats reports whether nodes heartbeat in topo: there are peers, and auto
// mode gossips, or gossip mode does (up to its own cap, above auto's) and
// rules in force use it (gossipRules). Rules are the cluster's, so every
// node comes to the same answer; a key checked with sync gossip and no
// rule, in a cluster above auto's cap, has no heartbeats, and its share
// follows membership alone.
func beats(topo *topology, gossipRules bool) bool {
	return topo.alive() > 1 && (topo.autoGossips() || gossipRules && topo.gossips(rules.SyncGossip))
}
