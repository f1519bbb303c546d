package cluster

// The configuration of a Node: what New takes.

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
)

// Config configures a Node. Zero fields mean defaults.
type Config struct {
	// Store configures each bucket store (its bound on keys, its shards).
	Store bucket.StoreConfig
	// Now is the clock. If nil, a monotonic clock: wall time at start plus
	// monotonic time since, so a wall-clock step neither mints tokens nor
	// freezes buckets.
	Now func() time.Time
	// SweepInterval is how often buckets that have refilled completely are
	// dropped from the store. If zero, defaults to 10s.
	SweepInterval time.Duration
	// Metrics receives the node's metrics. If nil, they are not registered.
	Metrics Registerer
	// Logger receives the node's logs. If nil, they are discarded.
	Logger *slog.Logger
	// Gossip makes the node a cluster member. If nil, the node stands
	// alone and joins no cluster.
	Gossip *gossip.Config
	// Peers reaches the owners of keys. Required with Gossip; its
	// counterpart serves DecideForwarded and AcceptHandoff at the address
	// in Gossip.Meta.PeerAddr.
	Peers Peers
	// Peer configures owner mode's calls to peers.
	Peer PeerConfig
	// GossipSync configures gossip mode and the switches of auto and
	// gossip mode to owners.
	GossipSync GossipSyncConfig
	// Leases configures token leases for keys checked often in owner mode.
	Leases LeaseConfig
	// LeaveTimeout bounds a graceful leave: the handoff of owned buckets,
	// to all their new owners at once. If zero, defaults to 10s.
	LeaveTimeout time.Duration
	// PartitionWindow is how long a member that failed (declared dead,
	// not left with a goodbye) still counts in the cluster's size: while
	// fewer members are alive than that size, cluster-wide keys are
	// decided at the live members' share of their limits, so that the
	// sides of a partition together stay within them
	// (docs/design/partitions.md). If zero, defaults to 5m; if negative,
	// a failed member stops counting at once.
	PartitionWindow time.Duration
	// Shadow puts the whole node in shadow mode: every check is decided
	// and counted, and allowed.
	Shadow bool
	// Persist stores the rules set through the API, and holds those set
	// before a restart. If nil, the API refuses to change rules (changes
	// made on peers still arrive, and are kept in memory).
	Persist *rules.Persist
	// Tracer starts the node's spans: it annotates the span of the API
	// call in a check's context, and traces forwards to owners, lease
	// requests, fallbacks and, as owner, forwarded checks that come with a
	// trace context. If nil, tracing is off and costs the check path
	// nothing.
	Tracer trace.TracerProvider
	// TraceKeys puts keys in span attributes. If false, they are left out:
	// keys are often user or tenant identifiers.
	TraceKeys bool
}

// GossipSyncConfig configures gossip mode. Zero fields mean defaults.
type GossipSyncConfig struct {
	// Interval is how often a node sends its peers the tokens it admitted
	// in gossip mode; it bounds how long peers decide without knowing.
	// If zero, defaults to 50ms.
	Interval time.Duration
	// MaxMembers is the largest cluster in which auto mode gossips; in a
	// larger one it routes each key to its owner. If zero, defaults to 8.
	// It is capped at GossipModeMaxMembers: auto gossips with gossip
	// mode's machinery, whose traffic that cap bounds.
	MaxMembers int
	// GossipModeMaxMembers is the largest cluster in which gossip mode
	// (sync: gossip, set explicitly) gossips; in a larger one its keys
	// are decided by their owners, as auto's are above MaxMembers, and a
	// switch either way gives no key a fresh burst. Every node tells every
	// other what it admitted each Interval, so gossip's packets grow with
	// the square of the cluster. If zero, defaults to 32.
	GossipModeMaxMembers int
}

// PeerConfig configures owner mode's calls to peers. Zero fields mean
// defaults.
type PeerConfig struct {
	// ForwardTimeout bounds a check forwarded to its owner; past it the
	// node decides from its fair share. If zero, defaults to 250ms.
	ForwardTimeout time.Duration
	// Ring configures the hash ring; every node must use the same.
	Ring ring.Config
	// RingSettle is the least time between two rebuilds of a ring of more
	// than 63 members: the membership changes in between make one rebuild.
	// If zero, defaults to 250ms.
	RingSettle time.Duration
}
