package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// topology is what the node knows of its cluster for routing: the ring of
// live members, where each one answers peer calls, and the sizes up to
// which auto and gossip mode gossip. It is immutable; a new one is built,
// off every lock, when membership changes, and published atomically.
type topology struct {
	ring  *ring.Ring
	addrs map[string]string // member name → peer address
	self  string
	caps  gossipCaps
	// remembered is how many members the cluster is remembered to have:
	// alive, and failed within the partition window (partition.go); at
	// least alive.
	remembered int64
	// reachable is how many members are alive and heard (silence.go): at
	// most alive.
	reachable int64
	// beaters are the live peers whose metadata says they heartbeat while
	// gossip mode gossips (expectsBeats); nil if none.
	beaters map[string]bool
	// firstStart is the earliest start (gossip.Meta.Incarnation, Unix ns)
	// of the live peers; 0 when a peer did not say, or there is none.
	firstStart int64
}

// alive returns the number of live members (at least 1: this node).
func (t *topology) alive() int64 { return int64(max(t.ring.Len(), 1)) }

// gossipCaps are the largest clusters in which the modes that gossip do
// (Config.GossipSync): auto, and gossip itself. Above its cap a mode's keys
// are decided by their owners on the ring.
type gossipCaps struct {
	auto, gossip int
}

// lowest returns the caps lowered to those a member says in its metadata:
// a topology goes by the smallest cap of any live member, so that nodes
// started with different --gossip-max-members or --gossip-mode-max-members
// still agree on how each key is kept. (They did not: with caps of 4 and 8
// on three nodes each, a six-node cluster gossiped a key on three and
// routed it to its owner on the others, and admitted 1.51 times what it
// earned, then half.) An older node says nothing and changes nothing.
func (c gossipCaps) lowest(m gossip.Meta) gossipCaps {
	if m.GossipMax > 0 {
		c.auto = min(c.auto, m.GossipMax)
	}
	if m.GossipModeMax > 0 {
		c.gossip = min(c.gossip, m.GossipModeMax)
	}
	c.auto = min(c.auto, c.gossip) // auto gossips with the same machinery
	return c
}

// autoGossips reports whether auto mode gossips in t, rather than routing
// each key to its owner.
func (t *topology) autoGossips() bool { return t.alive() <= int64(t.caps.auto) }

// gossips reports whether keys of mode are kept by gossip in t, a replica
// on every member, rather than decided by their owners: auto's and gossip
// mode's each up to its cap. No other mode gossips.
func (t *topology) gossips(mode rules.Sync) bool {
	switch mode {
	case rules.SyncAuto:
		return t.autoGossips()
	case rules.SyncGossip:
		return t.alive() <= int64(t.caps.gossip)
	}
	return false
}

// buildTopology makes the topology for the live members.
func buildTopology(self string, members []gossip.Member, cfg ring.Config, caps gossipCaps) (*topology, error) {
	t := &topology{self: self, addrs: make(map[string]string), caps: caps}
	names := []string{self}
	for _, m := range members {
		if m.State != gossip.StateAlive || m.Self {
			continue
		}
		names = append(names, m.Name)
		t.addrs[m.Name] = peerAddr(m)
		t.caps = t.caps.lowest(m.Meta)
		if m.Meta.Beats {
			if t.beaters == nil {
				t.beaters = make(map[string]bool)
			}
			t.beaters[m.Name] = true
		}
		if start := m.Meta.Incarnation; len(names) == 2 || start < t.firstStart {
			t.firstStart = start
		}
	}
	r, err := ring.New(names, cfg)
	if err != nil {
		return nil, err
	}
	t.ring = r
	t.remembered = t.alive()
	t.reachable = t.alive()
	return t, nil
}

// without returns t without the named members: the ring this node's keys
// go to when it leaves (without(cfg, t.self)), or when the members their
// owner is on refuse them (they are leaving too). errNoMembers if no
// member is left.
func (t *topology) without(cfg ring.Config, names ...string) (*topology, error) {
	var others []string
	for _, m := range t.ring.Members() {
		if !slices.Contains(names, m) {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		return nil, errNoMembers
	}
	r, err := ring.New(others, cfg)
	if err != nil {
		return nil, err
	}
	next := &topology{ring: r, addrs: t.addrs, self: t.self, caps: t.caps, beaters: t.beaters}
	next.remembered = max(t.remembered-int64(t.ring.Len()-len(others)), next.alive())
	next.reachable = next.alive()
	return next, nil
}

// errNoMembers: a ring without anyone.
var errNoMembers = errors.New("no member left to own the keys")

// peerAddr is where member answers peer calls: its advertised peer
// address, whose host defaults to the host of its gossip address.
func peerAddr(m gossip.Member) string {
	host, port, err := net.SplitHostPort(m.Meta.PeerAddr)
	if err != nil || port == "" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host, _, _ = net.SplitHostPort(m.Addr)
	}
	return net.JoinHostPort(host, port)
}

// ringKey appends the key by which id is placed on the ring: the rule
// name, or the inline limit, and the key. Every node builds the same bytes.
func ringKey(b []byte, id bucket.ID) []byte {
	b = append(b, id.Rule...)
	b = append(b, 0)
	if id.Inline != (bucket.Limit{}) {
		b = binary.BigEndian.AppendUint64(b, uint64(id.Inline.Rate))
		b = binary.BigEndian.AppendUint64(b, uint64(id.Inline.Period))
		b = binary.BigEndian.AppendUint64(b, uint64(id.Inline.Burst))
	}
	return append(b, id.Key...)
}

// ownerOf returns the member that owns id in t. With the default hasher
// the ring key is streamed into a digest on the stack: no allocation.
func (t *topology) ownerOf(id bucket.ID) string {
	if !t.ring.DefaultHasher() {
		return t.ring.OwnerBytes(ringKey(nil, id))
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(id.Rule)
	d.Write([]byte{0})
	if id.Inline != (bucket.Limit{}) {
		var b [24]byte
		binary.BigEndian.PutUint64(b[0:], uint64(id.Inline.Rate))
		binary.BigEndian.PutUint64(b[8:], uint64(id.Inline.Period))
		binary.BigEndian.PutUint64(b[16:], uint64(id.Inline.Burst))
		d.Write(b[:])
	}
	d.WriteString(id.Key)
	return t.ring.OwnerOfHash(d.Sum64())
}

// membershipChanged is gossip's OnChange: it must not block, so it only
// flags the change for topologyLoop.
func (n *Node) membershipChanged() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// topologyLoop rebuilds the ring when membership changes, off every lock,
// publishes it, and moves buckets whose keeping changed with it. It also
// rebuilds it when a failed member ages out of the partition window.
func (n *Node) topologyLoop(ctx context.Context) error {
	expire := time.NewTimer(time.Hour)
	expire.Stop()
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.changed:
		case <-expire.C:
		}
		// Read before the members: memberlist merges a peer's member
		// list before its state, so once a state has arrived the members
		// read after include every one it brought. A list read half-way
		// through the first merge (a restarted node's join) must neither
		// end the boot memory nor open the boot gate.
		exchanged := n.learned.exchanged.Load()
		members := n.gossip.Members()
		var next time.Time
		topo, err := buildTopology(n.self, members, n.ringCfg, n.gossipCaps)
		if err != nil {
			n.log.Error("ring not rebuilt; keeping the previous one", "err", err)
			continue
		}
		now := time.Now() // the clock of the members' Since
		topo.remembered, next = remembered(topo.alive(), missingMembers(members, n.learned.copy(), now, n.partitionWindow))
		topo.reachable = max(topo.alive()-n.replicas.hearing.silentOn(topo), 1)
		if size, until := n.boot.remembered(topo.alive(), exchanged, now); size > 0 {
			topo.remembered = max(topo.remembered, size)
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		expire.Stop()
		if !next.IsZero() {
			expire.Reset(next.Sub(now))
		}
		n.noteGossipEntry(n.topo.Load(), topo) // before any check routes by topo
		old := n.topo.Swap(topo)
		if exchanged && topo.alive() > 1 {
			n.gate.open() // a peer's whole member list is in: checks go by this ring
		}
		n.observePartition(old, topo)
		n.observeGossipCap(old, topo)
		n.saveSize(topo, topo.remembered != old.remembered)
		n.owners.topologyChanged(ctx, old, topo)
		if topo.alive() > settleAbove {
			// Changes meanwhile wait in n.changed and make one rebuild.
			settle := time.NewTimer(n.ringSettle)
			select {
			case <-ctx.Done():
				settle.Stop()
				return nil
			case <-settle.C:
			}
		}
	}
}

// A ring of more than settleAbove members is rebuilt at most once per
// Config.Peer.RingSettle (defaultRingSettle): a build costs milliseconds
// there (16 ms at 2,000 members), and while a fleet starts or restarts,
// members join one after another, so a node rebuilding on each would spend
// seconds of CPU (2,000 builds, 32 s, at 2,000 members). The ring lags the
// membership by at most that much more, against seconds for gossip to
// spread a change.
const (
	settleAbove       = 63
	defaultRingSettle = 250 * time.Millisecond
)
