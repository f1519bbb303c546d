package cluster

import (
	"maps"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// A partition cannot be told from a crash: either way some members stop
// answering. A node therefore remembers the cluster's recent size: the
// members alive now, and those that failed (were declared dead, not left
// with a goodbye) within the partition window. While fewer are alive than
// it remembers, each cluster-wide key is decided at the side's share of
// its limit: alive / remembered of the rate and of the burst. The sides of
// a partition each take their share, so together they stay within the
// limit, however long the split lasts (up to the window). When the
// members come back, or the window passes with them still gone (a
// scale-down or a crash, not a partition), the full limit returns. The
// bound and the trade-off are in docs/design/partitions.md.

// defaultPartitionWindow is how long a failed member is remembered.
const defaultPartitionWindow = 5 * time.Minute

// missingMembers returns the members this node counts as missing, each
// with when it ages out: those its own view declared dead (not left)
// within window before now, and those its peers told it of (learned: a
// node that joined during a partition cannot see the far side's members
// die, as memberlist tells a newcomer of no dead member). None that is
// alive, has left, or is this node.
func missingMembers(members []gossip.Member, learned map[string]time.Time, now time.Time, window time.Duration) map[string]time.Time {
	if window <= 0 {
		return nil
	}
	missing := map[string]time.Time{}
	known := map[string]gossip.State{}
	for _, m := range members {
		known[m.Name] = m.State
		if m.Self {
			known[m.Name] = gossip.StateAlive
			continue
		}
		if until := m.Since.Add(window); m.State == gossip.StateDead && now.Before(until) {
			missing[m.Name] = until
		}
	}
	for name, until := range learned {
		if st, ok := known[name]; ok && st != gossip.StateDead || !now.Before(until) {
			continue // alive, left, or this node; or aged out
		}
		if until.After(missing[name]) {
			missing[name] = until
		}
	}
	return missing
}

// remembered is alive plus the missing members, and when the count next
// falls as one ages out (zero if it will not).
func remembered(alive int64, missing map[string]time.Time) (n int64, next time.Time) {
	n = alive + int64(len(missing))
	for _, until := range missing {
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return n, next
}

// learnedMissing is what peers said of members missing on their side.
type learnedMissing struct {
	mu    sync.Mutex
	until map[string]time.Time
	// exchanged: a peer's state has arrived since start.
	exchanged atomic.Bool
}

// copy returns the members learned of.
func (l *learnedMissing) copy() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.until)
}

// learn records that name is missing for another d, at most window. It
// reports whether that is news.
func (l *learnedMissing) learn(name string, d, window time.Duration, now time.Time) bool {
	if d <= 0 || window <= 0 {
		return false
	}
	until := now.Add(min(d, window))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until == nil {
		l.until = map[string]time.Time{}
	}
	for n, u := range l.until {
		if !now.Before(u) {
			delete(l.until, n)
		}
	}
	if old, ok := l.until[name]; ok && !until.After(old.Add(time.Second)) {
		return false // nothing new (to within a second)
	}
	l.until[name] = until
	return true
}

// missingState is this node's missing members as its push/pull state
// carries them: names, and how long each is still missing for.
func (n *Node) missingState() []missingMember {
	g := n.member.Load() // memberlist may call in before New has returned
	if g == nil {
		return nil
	}
	now := time.Now()
	missing := missingMembers(g.Members(), n.learned.copy(), now, n.partitionWindow)
	out := make([]missingMember, 0, len(missing))
	for name, until := range missing {
		if len(out) == maxMissingShared {
			break
		}
		out = append(out, missingMember{Name: name, For: int64(until.Sub(now))})
	}
	return out
}

// mergeMissing takes in a peer's missing members.
func (n *Node) mergeMissing(ms []missingMember) {
	now, news := time.Now(), !n.learned.exchanged.Swap(true)
	for i, m := range ms {
		if i == maxMissingShared || m.Name == "" || len(m.Name) > maxNameBytes || m.Name == n.self {
			continue
		}
		news = n.learned.learn(m.Name, time.Duration(m.For), n.partitionWindow, now) || news
	}
	if news {
		n.membershipChanged()
	}
}

// maxMissingShared bounds the missing members a state carries.
const maxMissingShared = 1024

// reduced reports whether t decides at a reduced share: fewer members are
// alive than the cluster is remembered to have.
func (t *topology) reduced() bool { return t.remembered > t.reachable }

// share is the limit l is decided at in t: l itself while the whole
// cluster is alive, the side's share of it while members are missing.
// Each decider applies it with its own view when it decides, whoever
// asked: a forwarded check, a lease or a total carries the limit as
// configured.
func (t *topology) share(l bucket.Limit) bucket.Limit {
	if !t.reduced() {
		return l
	}
	return sideShare(l, t.reachable, t.remembered)
}

// sideShare is the part of limit l that a side of a partition decides at
// when alive of the remembered members are on it: alive/remembered of the
// rate and of the burst (at least 1 token). The bucket algorithms keep
// the rate exact by lengthening the period (Rate·alive per
// Period·remembered, reduced); where that would pass MaxPeriod, and for
// the windowed algorithms (whose windows must stay aligned), the rate is
// rounded down instead, at least 1.
func sideShare(l bucket.Limit, alive, remembered int64) bucket.Limit {
	if alive >= remembered || remembered <= 0 {
		return l
	}
	s := l
	s.Burst = max(mulDiv(l.Burst, alive, remembered), 1)
	if l.Algo.Windowed() {
		s.Rate = max(mulDiv(l.Rate, alive, remembered), 1)
		s.Burst = s.Rate
		return s
	}
	if num, ok := mul(l.Rate, alive); ok {
		g := gcd(num, remembered)
		if period, ok := mul(int64(l.Period), remembered/g); ok && time.Duration(period) <= bucket.MaxPeriod {
			s.Rate, s.Period = num/g, time.Duration(period)
			return s
		}
	}
	s.Rate = max(mulDiv(l.Rate, alive, remembered), 1)
	return s
}

// mul is a·b for a, b ≥ 0, and whether it fits in an int64.
func mul(a, b int64) (int64, bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	return int64(lo), hi == 0 && lo <= math.MaxInt64
}

// mulDiv is a·b/c rounded down, for a ≥ 0 and 0 ≤ b ≤ c, without overflow.
func mulDiv(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c)) // hi < c since b ≤ c
	return int64(q)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// partitionMetrics show whether the node decides at a reduced share.
type partitionMetrics struct {
	remembered prometheus.Gauge
	share      prometheus.Gauge
}

func newPartitionMetrics(reg Registerer) *partitionMetrics {
	m := &partitionMetrics{
		remembered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_members_remembered",
			Help: "Members the cluster is remembered to have: alive, and failed (not left) within the partition window. While more than are alive, cluster-wide keys are decided at a reduced share.",
		}),
		share: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_partition_share",
			Help: "Share of each cluster-wide limit this node's side decides at: live members / remembered members (1 when the whole cluster is alive).",
		}),
	}
	m.remembered.Set(1)
	m.share.Set(1)
	if reg != nil {
		reg.MustRegister(m.remembered, m.share)
	}
	return m
}

// observe publishes t's share, and logs when it changes between full and
// reduced.
func (n *Node) observePartition(old, t *topology) {
	n.partition.remembered.Set(float64(t.remembered))
	n.partition.share.Set(float64(t.reachable) / float64(t.remembered))
	switch {
	case t.reduced() && (old == nil || !old.reduced() || old.reachable != t.reachable || old.remembered != t.remembered):
		n.log.Warn("deciding cluster-wide keys at a reduced share: members are missing (silent, or failed within the partition window)",
			"alive", t.reachable, "remembered", t.remembered, "window", n.partitionWindow)
	case !t.reduced() && old != nil && old.reduced():
		n.log.Info("deciding cluster-wide keys at the full limit again", "alive", t.reachable)
	}
}

// bootMemory is the cluster size a node stored before it restarted: until
// it has found its peers again, it decides at its share of that many
// members, not at the whole limit alone. It lasts until the partition
// window after the size was stored, and ends once the node sees that many
// members alive, once a peer's state has told it who is missing now (the
// cluster may have shrunk meanwhile), or joinSettle after its first peer
// appeared.
type bootMemory struct {
	size      int64
	until     time.Time
	firstPeer time.Time // set by the topology loop
}

// joinSettle is how long after a restarted node finds its first peer it
// keeps the stored size: a full state exchange.
const joinSettle = 10 * time.Second

// remembered returns the stored size still in force at now with alive
// members seen, and until when it may be (0 when over).
func (b *bootMemory) remembered(alive int64, exchanged bool, now time.Time) (int64, time.Time) {
	if b.size == 0 {
		return 0, time.Time{}
	}
	if exchanged && alive > 1 {
		// A peer's state has told this node who is missing now: the
		// cluster may have shrunk (gracefully) since the size was stored.
		b.size = 0
		return 0, time.Time{}
	}
	if alive > 1 && b.firstPeer.IsZero() {
		b.firstPeer = now
	}
	until := b.until
	if !b.firstPeer.IsZero() && b.firstPeer.Add(joinSettle).Before(until) {
		until = b.firstPeer.Add(joinSettle)
	}
	if alive >= b.size || !now.Before(until) {
		b.size = 0
		return 0, time.Time{}
	}
	return b.size, until
}

// storedSize reads the size stored before a restart, if it is recent
// enough to matter (within the partition window).
func (n *Node) storedSize(p *rules.Persist) bootMemory {
	if p == nil || n.partitionWindow <= 0 {
		return bootMemory{}
	}
	size, at, err := p.ClusterSize()
	if err != nil {
		n.log.Warn("stored cluster size not read; deciding as if alone until peers are found", "err", err)
		return bootMemory{}
	}
	if size <= 1 || time.Since(at) >= n.partitionWindow || at.After(time.Now().Add(time.Minute)) {
		return bootMemory{} // none, too old, or from a clock since stepped back
	}
	n.log.Info("deciding cluster-wide keys at a share of the cluster size stored before the restart, until the peers are found (its cluster-wide checks wait for the first peer, at most 2s)",
		"members", size, "stored", at)
	return bootMemory{size: size, until: at.Add(n.partitionWindow)}
}

// saveSize stores t's remembered size in the data directory, when it
// changed or the stored one is half a window old, so that a restart finds
// it (bootMemory).
func (n *Node) saveSize(t *topology, changed bool) {
	if n.persist == nil || n.gossip == nil || n.partitionWindow <= 0 {
		return
	}
	now := time.Now()
	if !changed && now.UnixNano()-n.sizeSavedAt.Load() < int64(n.partitionWindow/2) {
		return
	}
	if err := n.persist.SaveClusterSize(t.remembered, now); err != nil {
		n.log.Warn("cluster size not stored", "err", err)
		return
	}
	n.sizeSavedAt.Store(now.UnixNano())
}
