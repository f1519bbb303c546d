// Package gossip makes a sluice node a member of a peer-to-peer cluster. It
// wraps hashicorp/memberlist (SWIM membership over UDP and TCP) behind
// unexported adapters. No memberlist type leaves this package.
//
// A node joins through seed names that it resolves itself to every A/AAAA
// record, contacting a random sample of them (memberlist spreads the rest
// by gossip). It retries until it has a peer, then keeps re-resolving the
// seeds and re-joining failed members on a timer. memberlist alone never re-merges
// two halves that declared each other dead, and never re-resolves a name.
// Gossip is encrypted with a keyring (AES-GCM) and fenced by a cluster
// label; traffic from nodes without the key or label is rejected and counted.
package gossip

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a node's membership. Zero fields mean defaults.
type Config struct {
	// Name is the node's name in the cluster; unique among live nodes. A
	// node that restarts under the same name, on the same or another
	// address, is accepted as a new life of that node. Required.
	Name string
	// BindAddr is the UDP and TCP address gossip listens on. If empty,
	// defaults to "0.0.0.0:7946". Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is the address peers reach this node at, for NAT and
	// containers. If empty, derived from BindAddr (or the Transport).
	AdvertiseAddr string
	// Seeds are "name[:port]" or "ip[:port]" entries to join through; the
	// port defaults to the gossip port. None: a single-node cluster that
	// others may join.
	Seeds []string
	// Resolver resolves seed names. If nil, the system resolver.
	Resolver Resolver
	// SeedSample is the most addresses one join attempt contacts: a random
	// sample of the seeds' addresses that are not live members and of the
	// failed members still remembered. One answer is enough to learn the
	// whole cluster; each contact is a full state exchange. If zero,
	// defaults to 16; negative: every address.
	SeedSample int
	// Rand draws the sample; only Run's goroutine uses it. If nil, a
	// generator seeded from crypto/rand.
	Rand *rand.Rand
	// Keys is the gossip keyring, each key 16, 24 or 32 bytes; the first is
	// the one used to encrypt. Empty means unencrypted, which New refuses
	// when there are seeds unless Insecure is set.
	Keys [][]byte
	// Insecure allows seeds without a key: any host that reaches the gossip
	// port can then read and forge membership.
	Insecure bool
	// Label fences the cluster: nodes with another label cannot talk to it.
	// At most 255 bytes.
	Label string
	// Meta is advertised to peers.
	Meta Meta
	// Profile picks memberlist's timing defaults: "lan" (the default),
	// "wan" or "local".
	Profile string
	// PushPullInterval is how often a node syncs full state with a random
	// peer; it bounds how long a missed update can stay missed. If zero,
	// defaults to 10s (memberlist's LAN default is 30s).
	PushPullInterval time.Duration
	// RejoinInterval is how often seeds are re-resolved and unknown or
	// failed peers re-joined once the node has a peer; before that it
	// retries with backoff up to this interval. If zero, defaults to 30s.
	RejoinInterval time.Duration
	// ReconnectTimeout is how long a failed (not departed) member is
	// remembered and retried. If zero, defaults to 24h.
	ReconnectTimeout time.Duration
	// Transport carries gossip instead of real sockets (testcluster).
	Transport Transport
	// Jitter returns a random duration in [0, d) to spread retries. If nil,
	// no jitter.
	Jitter func(d time.Duration) time.Duration
	// OnChange is called, never concurrently, after the member list
	// changes. It must not block.
	OnChange func()
	// Joined, if set, is called after each attempt to join the seeds
	// (and failed members) with the number of other members known then:
	// 0 says the attempt found nobody.
	Joined func(others int)
	// Registerer receives the gossip metrics. If nil, not registered.
	Registerer prometheus.Registerer
	// Logger receives memberlist's logs at their levels. If nil, discarded.
	Logger *slog.Logger
	// Handler receives the state peers share (rules, counters). If nil,
	// the node shares only membership.
	Handler Handler
}

// ErrInsecure is returned by New for a node that has seeds but no key and
// was not told it may run without one.
var ErrInsecure = errors.New("gossip: seeds given without a gossip key; set a key, or allow unencrypted gossip explicitly")

// Gossip is a node's membership in the cluster. It is safe for concurrent
// use. Run drives it; when Run returns the node has left the cluster.
type Gossip struct {
	cfg     Config
	ml      *memberlist.Memberlist
	meta    atomic.Pointer[[]byte] // encoded Meta, as advertised
	view    *view
	keyring *memberlist.Keyring // nil when unencrypted
	queue   *memberlist.TransmitLimitedQueue
	traffic *traffic
	addr    string // advertised gossip address, "ip:port"
	port    int    // advertised gossip port

	joins    *prometheus.CounterVec
	rejected *prometheus.CounterVec

	id           string // goroutine label value of this instance
	shutdownOnce sync.Once
	shutdownErr  error
}

// New creates the node's membership and starts listening for gossip. It
// does not join anyone: Run does.
func New(cfg Config) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: a node name is required")
	}
	if len(cfg.Seeds) > 0 && len(cfg.Keys) == 0 && !cfg.Insecure {
		return nil, ErrInsecure
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0:7946"
	}
	if cfg.PushPullInterval == 0 {
		cfg.PushPullInterval = 10 * time.Second
	}
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = 30 * time.Second
	}
	if cfg.ReconnectTimeout == 0 {
		cfg.ReconnectTimeout = 24 * time.Hour
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.SeedSample == 0 {
		cfg.SeedSample = 16
	}
	if cfg.Rand == nil {
		var seed [32]byte
		_, _ = cryptorand.Read(seed[:]) // never fails
		cfg.Rand = rand.New(rand.NewChaCha8(seed))
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(time.Duration) time.Duration { return 0 }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Label) > 255 {
		return nil, fmt.Errorf("gossip: cluster label is %d bytes, over 255", len(cfg.Label))
	}
	meta, err := cfg.Meta.encode()
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g := &Gossip{
		cfg:     cfg,
		id:      newInstanceID(),
		traffic: newTraffic(),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gossip_joins_total",
			Help: "Attempts to join seeds or failed peers, by result (ok: at least one answered; error).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gossip_rejected_total",
			Help: "Gossip packets and streams rejected, by reason: key (cannot be decrypted), label (another cluster), malformed.",
		}, []string{"reason"}),
	}
	g.meta.Store(&meta)
	g.view = newView(cfg.Name, cfg.OnChange)
	// Every label value known in advance, exported at zero from start.
	for _, r := range []string{"ok", "error"} {
		g.joins.WithLabelValues(r)
	}
	for _, r := range []string{rejectKey, rejectLabel, rejectMalformed} {
		g.rejected.WithLabelValues(r)
	}

	mc, err := g.memberlistConfig()
	if err != nil {
		return nil, err
	}
	labeled(g.id, func() { g.ml, err = memberlist.Create(mc) })
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	g.queue = &memberlist.TransmitLimitedQueue{NumNodes: g.ml.NumMembers, RetransmitMult: mc.RetransmitMult}
	// Read once, before anything can update the local node: memberlist's
	// LocalNode returns its own record, which UpdateNode (UpdateMeta)
	// rewrites under a lock that a reader of the record does not hold.
	local := g.ml.LocalNode()
	g.addr, g.port = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port))), int(local.Port)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.joins, g.rejected, g.view.events, newMembersCollector(g.view))
		cfg.Registerer.MustRegister(g.traffic.collectors()...)
	}
	return g, nil
}

func (g *Gossip) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch g.cfg.Profile {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
	default:
		return nil, fmt.Errorf("gossip: unknown profile %q (want lan, wan or local)", g.cfg.Profile)
	}
	host, port, err := splitHostPort(g.cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address: %w", err)
	}
	mc.Name = g.cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if g.cfg.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(g.cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("gossip: advertise address: %w", err)
		}
	}
	mc.PushPullInterval = g.cfg.PushPullInterval
	// A node restarted under its name on a new address (a rescheduled pod)
	// takes the name over once the old life is declared dead.
	mc.DeadNodeReclaimTime = time.Nanosecond
	mc.Label = g.cfg.Label
	mc.Delegate = delegate{g}
	mc.Events = g.view
	mc.Logger = log.New(&logWriter{log: g.cfg.Logger, reject: func(reason string) {
		g.rejected.WithLabelValues(reason).Inc()
	}}, "", 0)
	if len(g.cfg.Keys) > 0 {
		g.keyring, err = memberlist.NewKeyring(g.cfg.Keys, g.cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: key: %w", err)
		}
		mc.Keyring = g.keyring
	}
	if g.cfg.Transport != nil {
		mc.Transport = newAdapter(g.cfg.Transport)
	}
	return mc, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return host, port, nil
}

// Addr returns the gossip address this node advertises ("ip:port").
func (g *Gossip) Addr() string { return g.addr }

// Name returns this node's name.
func (g *Gossip) Name() string { return g.cfg.Name }

// UpdateMeta advertises m instead of the node's metadata so far, and
// returns once memberlist has passed it to a member (at once if there is
// none), or after timeout. Peers see the change as an update of this
// member.
func (g *Gossip) UpdateMeta(m Meta, timeout time.Duration) error {
	b, err := m.encode()
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	g.meta.Store(&b)
	return g.ml.UpdateNode(timeout)
}

// Members returns every member this node knows of, itself included, in
// name order: alive ones and, until memberlist forgets them, dead and
// departed ones.
func (g *Gossip) Members() []Member { return g.view.members() }

// NumAlive returns the number of live members, this node included.
func (g *Gossip) NumAlive() int { return g.ml.NumMembers() }

// Run joins the cluster and keeps it joined until ctx ends; then it leaves
// (telling peers, so they do not wait for failure detection) and shuts
// membership down. It returns only then.
func (g *Gossip) Run(ctx context.Context) error {
	defer g.shutdown()
	backoff := 200 * time.Millisecond
	failed := 0 // join attempts in a row that found no peer
	for {
		failed = g.joinOnce(ctx, failed)
		if g.cfg.Joined != nil {
			g.cfg.Joined(g.ml.NumMembers() - 1)
		}
		wait := g.cfg.RejoinInterval
		if g.ml.NumMembers() < 2 && (len(g.cfg.Seeds) > 0 || g.view.hasFailed()) {
			wait = min(backoff, g.cfg.RejoinInterval) // alone: look for peers sooner
			backoff *= 2
		} else {
			backoff = 200 * time.Millisecond
		}
		t := time.NewTimer(wait + g.cfg.Jitter(wait/5))
		select {
		case <-ctx.Done():
			t.Stop()
			return g.leave()
		case <-t.C:
		}
	}
}

func (g *Gossip) defaultPort() int { return g.port }

// leave tells the cluster this node is going, then stops membership. The
// leaving message goes first, twice, so peers record a departure rather
// than a failure, and do not try to re-join this address.
func (g *Gossip) leave() error {
	msg := encodeLeaving(g.cfg.Name)
	for range 2 {
		for _, m := range g.view.members() {
			if m.State == StateAlive && !m.Self {
				_ = g.ml.SendToAddress(memberlist.Address{Addr: m.Addr, Name: m.Name}, msg) // best effort
			}
		}
	}
	if err := g.ml.Leave(leaveTimeout); err != nil {
		// Nobody left to tell (the whole cluster is stopping), or the
		// network is cut: peers will detect the failure instead. Only
		// the second is worth a warning.
		level := slog.LevelWarn
		if !slices.ContainsFunc(g.view.members(), func(m Member) bool { return m.State == StateAlive && !m.Self }) {
			level = slog.LevelInfo
		}
		g.cfg.Logger.Log(context.Background(), level, "leave not confirmed; peers will detect the departure as a failure", "err", err)
	}
	return g.shutdown()
}

// leaveTimeout bounds the wait for the leave broadcast to go out; it
// normally goes out within one gossip interval (200ms on a LAN).
const leaveTimeout = 2 * time.Second

// Close stops membership without leaving, and waits until its goroutines
// are gone: for a Gossip whose Run never ran, or to make sure. Run leaves
// first and closes on its own. Close may be called more than once.
func (g *Gossip) Close() error { return g.shutdown() }

// shutdown stops memberlist and waits until all its goroutines are gone.
func (g *Gossip) shutdown() error {
	g.shutdownOnce.Do(func() {
		g.shutdownErr = errors.Join(g.ml.Shutdown(), awaitDrained(g.id))
	})
	return g.shutdownErr
}
