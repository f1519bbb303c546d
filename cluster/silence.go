package cluster

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
// dead; it stays on the ring, so no key moves. In a cluster within gossip
// mode's cap, nodes with rules set to gossip mode beat too, and say so in
// their metadata (beats, expectsBeats). In a larger cluster there are no
// heartbeats, and the share follows membership alone.

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

// update recomputes the silent peers of topo at now: live members
// expected to heartbeat (topology.expectsBeats) and not heard within
// after. A live peer expected to beat and not heard yet counts from the
// first update that expects it to (a member that joined, a peer that just
// said it beats, or every peer when auto mode has just begun to gossip):
// one that never beats is silent after that long too. For peers not
// expected to beat, and for peers no longer in topo, nothing is kept, so
// each starts afresh when heartbeats are expected of it again. It reports whether the set changed.
//
// A node cut off from the rest while its cluster routed to owners (no
// heartbeats) begins to gossip when memberlist declares a first peer dead;
// it has heard none of them, and without this it would count none silent
// and spend at the full limit until they were all declared dead.
func (h *hearing) update(topo *topology, now, after int64) bool {
	var silent []string
	h.mu.Lock()
	if h.heard == nil {
		h.heard = make(map[string]int64)
	}
	for name, at := range h.heard {
		_, live := topo.addrs[name]
		switch {
		case !live, !topo.expectsBeats(name):
			delete(h.heard, name)
		case now-at > after:
			silent = append(silent, name)
		}
	}
	for name := range topo.addrs {
		if _, ok := h.heard[name]; !ok && topo.expectsBeats(name) {
			h.heard[name] = now
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

// beats reports whether this node heartbeats in topo: there are peers,
// and auto mode gossips, or gossip mode does (up to its own cap, above
// auto's) and the node advertises that it beats (gossip.Meta.Beats: it has
// rules in force set to gossip mode, or had them moments ago).
func beats(topo *topology, beating bool) bool {
	return topo.alive() > 1 && (topo.autoGossips() || beating && topo.gossips(rules.SyncGossip))
}

// expectsBeats reports whether peer heartbeats in t, as beats decides it
// there: always while auto mode gossips (every node does), and while gossip
// mode gossips if the peer's metadata says it beats. Each node says so for
// itself, because rules files are each node's own and an older node never
// beats above auto's cap: a node expecting beats that never come would
// count a live peer silent, and decide every cluster-wide key at a reduced
// share.
func (t *topology) expectsBeats(peer string) bool { return beats(t, t.beaters[peer]) }

// Advertising beats. A node with rules set to gossip mode beats within
// gossip mode's cap, and says so in its metadata (gossip.Meta.Beats) for
// its peers to expect it. It begins to beat before it says so, and stops
// beatsGrace after it said it no longer does, so that no peer expects
// beats it does not send while the update spreads.

// beatsGrace is how long a node goes on beating after advertising that it
// stops: memberlist spreads a metadata update to a cluster of 32 in well
// under a second.
const beatsGrace = 5 * time.Second

// metaUpdateTimeout bounds the wait for memberlist to pass a metadata
// update on.
const metaUpdateTimeout = 2 * time.Second

// advertiseLoop advertises, each time the rules in force change, whether
// the node beats above auto's cap.
func (n *Node) advertiseLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.advertise:
		}
		want := len(n.gossipRules()) > 0
		if want == n.meta.Beats {
			continue
		}
		n.meta.Beats = want
		if want {
			n.beating.Store(true)
		}
		if err := n.gossip.UpdateMeta(n.meta, metaUpdateTimeout); err != nil {
			n.log.Debug("metadata update not passed on yet; memberlist goes on spreading it", "err", err)
		}
		if want {
			continue
		}
		t := time.NewTimer(beatsGrace)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if len(n.gossipRules()) == 0 { // else the next round says so again
			n.beating.Store(false)
		}
	}
}
