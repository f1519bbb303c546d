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
// rounding), and 1/n of the burst, at least 1.
func fairShare(l bucket.Limit, n int64) bucket.Limit {
	if n <= 1 {
		return l
	}
	return bucket.Limit{Rate: l.Rate, Period: l.Period * time.Duration(n), Burst: max(l.Burst/n, 1)}
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
	var d bucket.Decision
	fallback := false
	switch {
	case owner == topo.self:
		d = n.owned.AllowN(n.now(), r.id, r.limit, r.cost)
		n.metrics.routes.WithLabelValues("owned").Inc()
	default:
		var ok bool
		if d, ok = n.forward(ctx, topo, owner, r); !ok {
			if err := ctx.Err(); err != nil {
				return transport.CheckResult{}, err
			}
			d = n.store.AllowN(n.now(), fallbackID(r.id), fairShare(r.limit, topo.alive()), r.cost)
			fallback = true
		}
	}
	r.counts.observe(&d, r.limit)
	res := r.result(d)
	res.Owner, res.Fallback = owner, fallback
	return res, nil
}

// forward asks the owner to decide r, within the forward timeout. It
// reports false if the owner could not answer; the failure is counted.
func (n *Node) forward(ctx context.Context, topo *topology, owner string, r *resolved) (bucket.Decision, bool) {
	addr := topo.addrs[owner]
	if addr == "" {
		n.metrics.routes.WithLabelValues("fallback").Inc()
		return bucket.Decision{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, n.forwardTimeout)
	defer cancel()
	start := time.Now()
	ds, err := n.peers.Check(ctx, addr, []transport.PeerCheck{{ID: r.id, Limit: r.limit, Cost: r.cost}})
	n.metrics.forwardSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		n.metrics.routes.WithLabelValues("fallback").Inc()
		n.log.Debug("owner unreachable; deciding from the fair share", "owner", owner, "err", err)
		return bucket.Decision{}, false
	}
	n.metrics.routes.WithLabelValues("forwarded").Inc()
	return ds[0], true
}

// DecideForwarded implements transport.PeerHandler: it decides checks that
// peers forwarded to this node as their owner, on its authoritative
// buckets. It never forwards again, so views of the ring that differ for a
// moment during membership changes cannot make a check bounce.
func (n *Node) DecideForwarded(checks []transport.PeerCheck) []bucket.Decision {
	out := make([]bucket.Decision, len(checks))
	now := n.now()
	for i, c := range checks {
		out[i] = n.owned.AllowN(now, c.ID, c.Limit, c.Cost)
	}
	return out
}

// decideOwnerBatch decides the owner-mode checks of a batch (indexes into
// rs), all at once; the peer client coalesces those bound for one owner
// into one frame.
func (n *Node) decideOwnerBatch(ctx context.Context, rs []resolved, idx []int, out []transport.CheckResult) error {
	var wg sync.WaitGroup
	errs := make([]error, len(idx))
	for j, i := range idx {
		wg.Go(func() { out[i], errs[j] = n.decideOwner(ctx, &rs[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newRouteMetrics(reg Registerer) (*prometheus.CounterVec, prometheus.Histogram) {
	routes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_owner_checks_total",
		Help: "Owner-mode checks by route: owned (decided here), forwarded (decided by the owner), fallback (owner unreachable: decided from this node's fair share).",
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
