// Package testcluster runs a whole sluice cluster in one process: n full
// nodes (the same cluster.Node the sluice binary runs) over an in-memory
// Network that carries their gossip, with a fake DNS server for their seed
// name, and faults the test injects: partition, heal, kill, restart, drop,
// delay.
//
// Run it inside testing/synctest, so that a minute of gossip takes
// milliseconds and the test waits on conditions (Await), never on the wall
// clock:
//
//	synctest.Test(t, func(t *testing.T) {
//		c := testcluster.New(t, 5)
//		c.AwaitConverged(30*time.Second, c.All()...)
//		c.Kill(4)
//		c.AwaitState(40*time.Second, 4, gossip.StateDead, c.Running()...)
//	})
package testcluster

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// SeedName is the DNS name every node joins through.
const SeedName = "sluice.test"

// gossipPort and peerPort are every node's ports on the in-memory network.
const (
	gossipPort = 7946
	peerPort   = 7947
)

// Options shape a cluster. The zero value is a cluster sharing one gossip
// key, with every node listed under SeedName.
type Options struct {
	// Keys is the gossip keyring every node starts with. If nil, one fixed
	// 32-byte key.
	Keys [][]byte
	// Label is the cluster label.
	Label string
	// Seed seeds the network's random drops. If zero, 1.
	Seed uint64
	// Listed are the nodes SeedName lists at start. If nil, all of them;
	// an empty, non-nil slice lists none (the name does not exist yet).
	Listed []int
	// Configure, if set, edits node i's config before it starts.
	Configure func(i int, cfg *cluster.Config)
	// Persist gives each node a data directory that outlives its lives,
	// where it stores the rules set through its API.
	Persist bool
	// PeerMaxConns and PeerIdleTimeout bound each node's peer connections
	// (transport.PeerClientConfig's MaxConns and IdleTimeout), and
	// PeerMaxAccepted those it accepts (transport.PeerServerConfig's
	// MaxAccepted). If zero, the defaults.
	PeerMaxConns    int
	PeerIdleTimeout time.Duration
	PeerMaxAccepted int
}

// DefaultKey is the gossip key of a cluster started without Options.Keys.
var DefaultKey = []byte("sluice-testcluster-key-32-bytes!")

// Cluster is an in-process cluster. Its methods are for the test goroutine.
type Cluster struct {
	t    testing.TB
	opts Options
	Net  *Network
	DNS  *DNS

	mu    sync.Mutex // guards nodes' running state
	nodes []*Member
}

// Member is one node of a Cluster and its current life.
type Member struct {
	Index int
	Name  string
	Addr  string
	// Node is the node's current life (nil before the first start).
	Node *cluster.Node
	// Registry holds the current life's metrics.
	Registry *prometheus.Registry

	// DataDir is where the node stores API rules (with Options.Persist).
	DataDir string

	cancel  context.CancelFunc
	done    chan error
	persist *rules.Persist
	running bool
}

// New starts n nodes, all listed under SeedName, and stops them when the
// test ends. It does not wait for them to converge.
func New(t testing.TB, n int, opts ...Options) *Cluster {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Keys == nil {
		o.Keys = [][]byte{DefaultKey}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	c := &Cluster{t: t, opts: o, Net: NewNetwork(o.Seed), DNS: NewDNS()}
	for range n {
		c.add()
	}
	listed := o.Listed
	if listed == nil {
		listed = c.All()
	}
	c.List(listed...)
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *Cluster) add() *Member {
	i := len(c.nodes)
	m := &Member{Index: i, Name: "node-" + strconv.Itoa(i), Addr: AddrOf(i)}
	if c.opts.Persist {
		m.DataDir = c.t.TempDir()
	}
	c.nodes = append(c.nodes, m)
	return m
}

// AddrOf returns node i's gossip address on the network: 127.0.1.(i+1)
// for the first 255 nodes, 127.1.(i/250).(i%250+1) past them. The network
// is in memory: nothing is sent to that address.
func AddrOf(i int) string { return addrIn(1, i) }

// addrIn returns node i's gossip address in block b (1: first lives, 2:
// relocated ones), unique for every i below 64,000.
func addrIn(b, i int) string {
	ip := "127.0." + strconv.Itoa(b) + "." + strconv.Itoa(i+1)
	if i >= 255 {
		ip = "127." + strconv.Itoa(b) + "." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250+1)
	}
	return net.JoinHostPort(ip, strconv.Itoa(gossipPort))
}

func ipOf(addr string) string {
	ip, _, _ := net.SplitHostPort(addr)
	return ip
}

// List makes SeedName list exactly the given nodes (none: the name does
// not exist).
func (c *Cluster) List(nodes ...int) {
	var ips []string
	for _, i := range nodes {
		ips = append(ips, ipOf(c.nodes[i].Addr))
	}
	c.DNS.Set(SeedName, ips...)
}

// Relocate gives stopped node i a new address, as when a crashed pod is
// rescheduled elsewhere under the same name. SeedName is not changed.
func (c *Cluster) Relocate(i int) {
	m := c.nodes[i]
	m.Addr = addrIn(2, i)
}

// Add adds a node (not listed under SeedName; not started) and returns its
// index.
func (c *Cluster) Add() int { return c.add().Index }

// Member returns node i.
func (c *Cluster) Member(i int) *Member { return c.nodes[i] }

// Live returns node i's current life, or nil while it is stopped.
func (c *Cluster) Live(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.nodes[i].running {
		return nil
	}
	return c.nodes[i].Node
}

// Node returns node i's current life.
func (c *Cluster) Node(i int) *cluster.Node { return c.nodes[i].Node }

// All returns every node's index.
func (c *Cluster) All() []int {
	out := make([]int, len(c.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

// Running returns the indexes of the nodes that are running.
func (c *Cluster) Running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, m := range c.nodes {
		if m.running {
			out = append(out, m.Index)
		}
	}
	return out
}

// PeerAddrOf returns the address node i answers peer calls at.
func (c *Cluster) PeerAddrOf(i int) string {
	return net.JoinHostPort(ipOf(c.nodes[i].Addr), strconv.Itoa(peerPort))
}

// Config returns the config node i starts with: gossip over its host on
// the network, joining SeedName through the fake DNS, with the cluster's
// keys and label, and a new incarnation. StartWith adds its peer RPC.
func (c *Cluster) Config(i int) cluster.Config {
	m := c.nodes[i]
	return cluster.Config{
		Gossip: &gossip.Config{
			Name:      m.Name,
			Seeds:     []string{SeedName},
			Resolver:  c.DNS,
			Keys:      c.opts.Keys,
			Label:     c.opts.Label,
			Transport: c.Net.Host(m.Addr),
			Meta:      gossip.Meta{API: gossip.APIVersion, Incarnation: time.Now().UnixNano(), PeerAddr: c.PeerAddrOf(i)},
		},
	}
}

// Start starts node i (again, after Stop or Kill: a new life under the same
// name and address).
func (c *Cluster) Start(i int) {
	c.StartWith(i, c.Config(i))
}

// StartWith starts node i with cfg (see Config).
func (c *Cluster) StartWith(i int, cfg cluster.Config) {
	c.t.Helper()
	m := c.nodes[i]
	if m.running {
		c.t.Fatalf("testcluster: %s is already running", m.Name)
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	reg := prometheus.NewRegistry()
	if cfg.Metrics == nil {
		cfg.Metrics = reg
	}
	var persist *rules.Persist
	if m.DataDir != "" && cfg.Persist == nil {
		var err error
		if persist, err = rules.OpenPersist(m.DataDir); err != nil {
			c.t.Fatalf("testcluster: start %s: %v", m.Name, err)
		}
		cfg.Persist = persist
	}
	// Peer RPC over the network, as cmd/node wires it over TCP.
	host := c.Net.Host(c.PeerAddrOf(i))
	var node *cluster.Node
	keys := func() [][]byte { return node.PeerKeys() } // called once node is set
	client := transport.NewPeerClient(transport.PeerClientConfig{
		Keys: keys, Registerer: cfg.Metrics,
		MaxConns: c.opts.PeerMaxConns, IdleTimeout: c.opts.PeerIdleTimeout,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			timeout := 5 * time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = time.Until(d)
			}
			return host.DialTimeout(addr, timeout)
		},
	})
	if cfg.Peers == nil {
		cfg.Peers = client
	}
	node, err := cluster.New(cfg)
	if err != nil {
		c.t.Fatalf("testcluster: start %s: %v", m.Name, err)
	}
	server := transport.NewPeerServer(transport.PeerServerConfig{Handler: node, Keys: keys, MaxAccepted: c.opts.PeerMaxAccepted, Registerer: cfg.Metrics})
	node.SetRules(&rules.Set{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, node, server, client, host.Listener()) }()
	c.mu.Lock()
	m.Node, m.Registry, m.cancel, m.done, m.persist, m.running = node, reg, cancel, done, persist, true
	c.mu.Unlock()
}

// runNode runs a node and its peer server until ctx ends, as cmd/node
// does: the node leaves (handing off what it owns), then the peer server
// and client stop.
func runNode(ctx context.Context, node *cluster.Node, server *transport.PeerServer, client *transport.PeerClient, ln net.Listener) error {
	peerCtx, stopPeers := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(peerCtx, ln) }()
	err := node.Run(ctx)
	stopPeers()
	err = errors.Join(err, <-served)
	client.Close()
	return err
}

// Stop stops node i gracefully: it leaves the cluster.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	m := c.nodes[i]
	c.mu.Lock()
	running := m.running
	m.running = false
	c.mu.Unlock()
	if !running {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		c.t.Errorf("testcluster: %s stopped with %v", m.Name, err)
	}
	if m.persist != nil {
		if err := m.persist.Close(); err != nil {
			c.t.Errorf("testcluster: %s: closing its data: %v", m.Name, err)
		}
		m.persist = nil
	}
}

// Kill crashes node i: the network loses everything to and from it at once,
// so it cannot say goodbye, and then its goroutines are stopped.
func (c *Cluster) Kill(i int) {
	c.Net.Kill(c.nodes[i].Addr)
	c.Net.Kill(c.PeerAddrOf(i))
	c.Stop(i)
}

// Restart kills node i and starts a new life of it under the same name and
// address.
func (c *Cluster) Restart(i int) {
	c.Kill(i)
	c.Start(i)
}

// Partition splits the nodes into groups that cannot reach each other.
func (c *Cluster) Partition(groups ...[]int) {
	var addrs [][]string
	for _, g := range groups {
		var a []string
		for _, i := range g {
			a = append(a, c.nodes[i].Addr, c.PeerAddrOf(i))
		}
		addrs = append(addrs, a)
	}
	c.Net.Partition(addrs...)
}

// Heal removes every partition.
func (c *Cluster) Heal() { c.Net.Heal() }

func (c *Cluster) stopAll() {
	for i := range c.nodes {
		c.Stop(i)
	}
}
