package testcluster

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// A light node is a sluice node reduced to its membership, for clusters
// too large to simulate with full nodes: the gossip package (memberlist,
// its delegate, the node's metadata, its seeds, its leave) configured as
// cluster.New configures it, with the rules part of the cluster's shared
// state, and nothing else: no ring, no stores, no peer RPC, no counters.
// docs/design/scale.md says what that leaves out.

// lightKindRule is cluster's kindRule, the message kind of one rule entry:
// the first kind a gossip.Handler may use. TestLightNodeSpeaksRules checks
// that full and light nodes understand each other.
const lightKindRule = gossip.FirstKind

// lightState is the body of cluster's full state exchange as a light node
// fills it: its rules ("r"). A full node adds replicas ("b") and missing
// members ("m") when it has any, which a cluster without gossip-mode keys
// or partitions does not.
type lightState struct {
	Rules []rules.Entry `msgpack:"r"`
}

// lightNode is one life of a light node. It is the gossip.Handler of its
// membership, and safe for concurrent use as one.
type lightNode struct {
	name    string
	g       atomic.Pointer[gossip.Gossip] // set once gossip.New returns
	catalog *rules.Catalog
	reg     *prometheus.Registry // the gossip metrics, as a full node registers them
	cancel  context.CancelFunc
	done    chan error
}

var _ gossip.Handler = (*lightNode)(nil)

// Message takes in a rule entry, as cluster's sharedState does.
func (l *lightNode) Message(kind byte, body []byte) bool {
	if kind != lightKindRule {
		return false
	}
	var e rules.Entry
	if err := gossip.Unmarshal(body, &e); err != nil {
		return false
	}
	l.merge([]rules.Entry{e})
	return true
}

// LocalState is the node's rules.
func (l *lightNode) LocalState(bool) []byte {
	b, err := msgpack.Marshal(&lightState{Rules: l.catalog.Entries()})
	if err != nil {
		return nil
	}
	return b
}

// MergeState takes in a peer's rules.
func (l *lightNode) MergeState(b []byte, _ bool) bool {
	var st lightState
	if err := gossip.Unmarshal(b, &st); err != nil {
		return false
	}
	l.merge(st.Rules)
	return true
}

// merge puts in the entries that are news and passes them on, as
// cluster.Node's mergeRules does.
func (l *lightNode) merge(entries []rules.Entry) {
	if len(entries) == 0 {
		return
	}
	for _, e := range l.catalog.Merge(entries) {
		l.broadcast(e)
	}
}

// broadcast queues e for gossip under its rule's name and returns it
// encoded (nil if it is not sent), as cluster.Node's broadcastRules does.
func (l *lightNode) broadcast(e rules.Entry) []byte {
	g := l.g.Load()
	if g == nil {
		return nil
	}
	b, err := msgpack.Marshal(&e)
	if err != nil || len(b) > gossip.MaxPacket {
		return nil
	}
	g.Broadcast(lightKindRule, e.Name, b)
	return b
}

// putRule sets a rule here and spreads it as cluster.Node.PutRules does:
// broadcast, and sent at once to every live member.
func (l *lightNode) putRule(s rules.Spec) error {
	entries, err := l.catalog.Put([]rules.Spec{s}, nil)
	if err != nil {
		return err
	}
	g := l.g.Load()
	var to []gossip.Member
	for _, m := range g.Members() {
		if m.State == gossip.StateAlive && !m.Self {
			to = append(to, m)
		}
	}
	for _, e := range entries {
		if b := l.broadcast(e); b != nil && len(to) > 0 {
			_ = g.Send(to, lightKindRule, b) // best effort, as in PutRules
		}
	}
	return nil
}

// hasRule reports whether the node holds the API rule name.
func (l *lightNode) hasRule(name string) bool {
	for _, e := range l.catalog.Entries() {
		if e.Name == name {
			return true
		}
	}
	return false
}

// lightFleet is n light nodes on one Network, all listed under SeedName at
// the addresses a Cluster gives its nodes. Its methods are for the test
// goroutine.
type lightFleet struct {
	t     testing.TB
	net   *Network
	dns   *DNS
	nodes []*lightNode // the current lives; nil while stopped
}

// newLightFleet starts n light nodes, every apart (all at once if every is
// 0), and stops them all when the test ends.
func newLightFleet(t testing.TB, n int, every time.Duration) *lightFleet {
	f := &lightFleet{t: t, net: NewNetwork(1), dns: NewDNS(), nodes: make([]*lightNode, n)}
	ips := make([]string, n)
	for i := range n {
		ips[i] = ipOf(AddrOf(i))
	}
	f.dns.Set(SeedName, ips...)
	t.Cleanup(f.stopAll)
	for i := range n {
		if i > 0 && every > 0 {
			time.Sleep(every)
		}
		f.start(i)
		if every > 0 && (i+1)%250 == 0 { // progress, for sizes that take long
			t.Logf("%d light nodes: %d started", n, i+1)
		}
	}
	return f
}

// start starts a new life of node i, configured as Cluster.Config and
// cluster.New configure a full node's gossip.
func (f *lightFleet) start(i int) {
	f.t.Helper()
	name, addr := "node-"+strconv.Itoa(i), AddrOf(i)
	l := &lightNode{name: name, catalog: rules.NewCatalog(name), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	g, err := gossip.New(gossip.Config{
		Name:       name,
		Seeds:      []string{SeedName},
		Resolver:   f.dns,
		Keys:       [][]byte{DefaultKey},
		Transport:  f.net.Host(addr),
		Meta:       gossip.Meta{API: gossip.APIVersion, Incarnation: time.Now().UnixNano(), PeerAddr: net.JoinHostPort(ipOf(addr), strconv.Itoa(peerPort))},
		Registerer: l.reg,
		Handler:    l,
	})
	if err != nil {
		f.t.Fatalf("light node %s: %v", name, err)
	}
	l.g.Store(g)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- g.Run(ctx) }()
	f.nodes[i] = l
}

// stop stops the given nodes together, each leaving the cluster.
func (f *lightFleet) stop(nodes []int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, i := range nodes {
		l := f.nodes[i]
		if l == nil {
			continue
		}
		f.nodes[i] = nil
		wg.Go(func() {
			l.cancel()
			if err := <-l.done; err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		f.t.Errorf("light node stopped with %v", err)
	}
}

// stopAll stops every node, gracefully, lightStopBatch at a time.
func (f *lightFleet) stopAll() {
	for lo := 0; lo < len(f.nodes); lo += lightStopBatch {
		var batch []int
		for i := lo; i < min(lo+lightStopBatch, len(f.nodes)); i++ {
			batch = append(batch, i)
		}
		f.stop(batch)
	}
}

// killAll crashes every node (the network loses what they send, so no
// leave is heard), then stops them.
func (f *lightFleet) killAll() {
	for i := range f.nodes {
		f.net.Kill(AddrOf(i))
	}
	f.stopAll()
}

// lightStopBatch is how many nodes stopAll stops together. Each stopping
// node reads the process's goroutine profile until its memberlist's
// goroutines are gone (gossip's awaitDrained): thousands at once, each
// reading a profile of tens of thousands of goroutines, would hold
// gigabytes of profiles at the same moment.
const lightStopBatch = 100

// converged reports whether every node sees every node alive. memberlist's
// count (alive or suspect) is checked first, stopping at the first node
// that falls short, because building every view's member list is
// O(n²) per look; then every view, as Cluster.Alive reads it.
func (f *lightFleet) converged() bool {
	n := len(f.nodes)
	for _, l := range f.nodes {
		if l == nil || l.g.Load().NumAlive() != n {
			return false
		}
	}
	for _, l := range f.nodes {
		alive := 0
		for _, m := range l.g.Load().Members() {
			if m.State == gossip.StateAlive {
				alive++
			}
		}
		if alive != n {
			return false
		}
	}
	return true
}

// fewestSeen returns the fewest members alive (or suspect) in any node's
// memberlist.
func (f *lightFleet) fewestSeen() int {
	fewest := len(f.nodes)
	for _, l := range f.nodes {
		if l != nil {
			fewest = min(fewest, l.g.Load().NumAlive())
		}
	}
	return fewest
}

// await waits until cond holds, looking every pollInterval, and returns how
// long that took; past within the test fails.
func (f *lightFleet) await(within time.Duration, what string, cond func() bool) time.Duration {
	f.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			f.t.Fatalf("%d light nodes: %s: not within %v (the fewest members a node sees: %d)", len(f.nodes), what, within, f.fewestSeen())
		}
		time.Sleep(pollInterval)
	}
	return time.Since(start)
}
