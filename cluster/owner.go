package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/ring"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// topology is what the node knows of its cluster for routing: the ring of
// live members and where each one answers peer calls. It is immutable;
// a new one is built, off every lock, when membership changes, and
// published atomically.
type topology struct {
	ring  *ring.Ring
	addrs map[string]string // member name → peer address
	self  string
}

// alive returns the number of live members (at least 1: this node).
func (t *topology) alive() int64 { return int64(max(t.ring.Len(), 1)) }

// buildTopology makes the topology for the live members.
func buildTopology(self string, members []gossip.Member, cfg ring.Config) (*topology, error) {
	t := &topology{self: self, addrs: make(map[string]string)}
	names := []string{self}
	for _, m := range members {
		if m.State != gossip.StateAlive || m.Self {
			continue
		}
		names = append(names, m.Name)
		t.addrs[m.Name] = peerAddr(m)
	}
	r, err := ring.New(names, cfg)
	if err != nil {
		return nil, err
	}
	t.ring = r
	return t, nil
}

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

// fairShare is a node's part of limit l when n nodes share it and cannot
// reach its owner: the same rate spread over n periods (exact, no
// rounding), and 1/n of the burst, at least 1, counted the same way (a
// window n periods long for the windowed algorithms).
func fairShare(l bucket.Limit, n int64) bucket.Limit {
	if n <= 1 {
		return l
	}
	s := bucket.Limit{Rate: l.Rate, Period: l.Period * time.Duration(n), Burst: max(l.Burst/n, 1), Algo: l.Algo}
	if l.Algo.Windowed() {
		s.Burst = s.Rate
	}
	return s
}

// fallbackID is the local bucket holding this node's fair share of id.
func fallbackID(id bucket.ID) bucket.ID {
	id.Rule += "\x00fallback"
	return id
}

// decideOwner decides an owner-mode check: on the authoritative bucket if
// this node owns the key, else by asking the owner; from the fair-share
// fallback bucket if the owner cannot answer in time. If the caller goes
// away meanwhile, it returns ctx's error and spends nothing here.
func (n *Node) decideOwner(ctx context.Context, r *resolved) (transport.CheckResult, error) {
	topo := n.topo.Load()
	owner := topo.ownerOf(r.id)
	if owner == topo.self {
		return n.decideHere(r, owner), nil
	}
	if addr := topo.addrs[owner]; n.leases.on() && addr != "" && r.limit.Algo == bucket.TokenBucket {
		out, d, want := n.leases.use(r, owner, n.now().UnixNano())
		if want > 0 {
			go n.askLease(*r, owner, addr, want)
		}
		switch out {
		case leaseSpent:
			n.metrics.routes.WithLabelValues("leased").Inc()
			return n.finish(r, d, owner, false), nil
		case leaseDenied:
			n.metrics.routes.WithLabelValues("lease_denied").Inc()
			return n.finish(r, d, owner, false), nil
		}
	}
	out := []transport.CheckResult{{}}
	if err := n.forward(ctx, topo, owner, []*resolved{r}, out); err != nil {
		return transport.CheckResult{}, err
	}
	return out[0], nil
}

// decideHere decides r on this node's authoritative bucket.
func (n *Node) decideHere(r *resolved, owner string) transport.CheckResult {
	d := n.buckets[r.sync].AllowN(n.now(), r.id, r.limit, r.cost)
	n.metrics.routes.WithLabelValues("owned").Inc()
	return n.finish(r, d, owner, false)
}

func (n *Node) finish(r *resolved, d bucket.Decision, owner string, fallback bool) transport.CheckResult {
	r.counts.observe(&d, r.limit)
	res := r.result(d)
	res.Owner, res.Fallback = owner, fallback
	return res
}

// forward asks owner to decide rs, in one call within the forward timeout,
// and writes the results to out. If the owner cannot answer, each check is
// decided from this node's fair share instead (counted), unless the caller
// went away: then it returns ctx's error.
func (n *Node) forward(ctx context.Context, topo *topology, owner string, rs []*resolved, out []transport.CheckResult) error {
	var err error
	if addr := topo.addrs[owner]; addr == "" {
		err = errNoPeerAddr
	} else {
		checks := make([]transport.PeerCheck, len(rs))
		for i, r := range rs {
			checks[i] = transport.PeerCheck{ID: r.id, Limit: r.limit, Cost: r.cost, Sync: r.sync, Op: r.op, MaxWait: r.maxWait}
		}
		fctx, cancel := context.WithTimeout(ctx, n.forwardTimeout)
		start := time.Now()
		var ds []bucket.Decision
		ds, err = n.peers.Check(fctx, addr, checks)
		cancel()
		n.metrics.forwardSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			n.metrics.routes.WithLabelValues("forwarded").Add(float64(len(rs)))
			for i, r := range rs {
				out[i] = n.finish(r, ds[i], owner, false)
			}
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n.log.Debug("owner unreachable; deciding from the fair share", "owner", owner, "checks", len(rs), "err", err)
	n.metrics.routes.WithLabelValues("fallback").Add(float64(len(rs)))
	now, share := n.now(), topo.alive()
	for i, r := range rs {
		var d bucket.Decision
		if r.op == transport.OpReserve {
			d = n.buckets[rules.SyncLocal].ReserveN(now, fallbackID(r.id), fairShare(r.limit, share), r.cost, r.maxWait)
		} else {
			d = n.buckets[rules.SyncLocal].AllowN(now, fallbackID(r.id), fairShare(r.limit, share), r.cost)
		}
		out[i] = n.finish(r, d, owner, true)
	}
	return nil
}

// errNoPeerAddr is an owner whose peer address is not known (yet).
var errNoPeerAddr = errors.New("cluster: owner's peer address unknown")

// DecideForwarded implements transport.PeerHandler: it decides checks that
// peers forwarded to this node as their owner, on its authoritative
// buckets. It never forwards again, so views of the ring that differ for a
// moment during membership changes cannot make a check bounce. An auto-mode
// check that arrives while this node already sees a cluster small enough to
// gossip is decided on its replica and counted for its peers.
func (n *Node) DecideForwarded(checks []transport.PeerCheck) []bucket.Decision {
	out := make([]bucket.Decision, len(checks))
	now := n.now()
	topo := n.topo.Load()
	for i, c := range checks {
		sync := c.Sync
		if sync != rules.SyncAuto && sync != rules.SyncOwner {
			sync = rules.SyncOwner
		}
		store := n.buckets[sync]
		n.metrics.ownerOps[c.Op].Inc()
		switch c.Op {
		case transport.OpLease:
			out[i] = n.grantLease(now, store, &c)
			continue
		case transport.OpReturn:
			store.RefundN(now, c.ID, c.Limit, c.Cost)
			continue
		case transport.OpReserve:
			out[i] = store.ReserveN(now, c.ID, c.Limit, c.Cost, c.MaxWait)
		default:
			out[i] = store.AllowN(now, c.ID, c.Limit, c.Cost)
		}
		if n.route(sync, topo) == rules.SyncGossip && out[i].Allowed && c.Cost > 0 {
			n.counters.add(sync, c.ID, c.Limit, c.Cost, now.UnixNano())
		}
	}
	return out
}

// decideOwnerBatch decides the owner-mode checks of a batch (indexes into
// rs): those this node owns at once, the others in one call per owner, all
// owners at the same time.
func (n *Node) decideOwnerBatch(ctx context.Context, rs []resolved, idx []int, out []transport.CheckResult) error {
	topo := n.topo.Load()
	byOwner := map[string][]int{}
	for _, i := range idx {
		owner := topo.ownerOf(rs[i].id)
		if owner == topo.self {
			out[i] = n.decideHere(&rs[i], owner)
			continue
		}
		byOwner[owner] = append(byOwner[owner], i)
	}
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for owner, ids := range byOwner {
		wg.Go(func() {
			group := make([]*resolved, len(ids))
			results := make([]transport.CheckResult, len(ids))
			for j, i := range ids {
				group[j] = &rs[i]
			}
			err := n.forward(ctx, topo, owner, group, results)
			for j, i := range ids {
				out[i] = results[j]
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newRouteMetrics(reg Registerer) (*prometheus.CounterVec, prometheus.Histogram) {
	routes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_owner_checks_total",
		Help: "Owner-mode checks by route: owned (decided here), forwarded (decided by the owner), leased (decided here from tokens leased from the owner), lease_denied (denied here: the owner said its bucket is empty until then), fallback (owner unreachable: decided from this node's fair share).",
	}, []string{"route"})
	forward := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_forward_duration_seconds",
		Help:    "Time to get a forwarded check decided by its owner.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
	if reg != nil {
		reg.MustRegister(routes, forward)
	}
	return routes, forward
}
