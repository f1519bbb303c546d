package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Inspecting and resetting one key, for operators (the command-line
// client, through the admin port). Neither is on the check path.

// Inspection is the state of one key's bucket, as the node that decides
// it holds it.
type Inspection struct {
	// Rule is the rule's name ("" for an inline limit), Key the key.
	Rule, Key string
	// Limit is the rule's limit.
	Limit bucket.Limit
	// Sync is the key's sync mode; Route how it is decided now: "local",
	// "gossip" (this node's replica) or "owner".
	Sync  rules.Sync
	Route string
	// Owner is, in owner mode, the member that owns the key; DecidedBy is
	// the member whose bucket was read (this node, or the owner).
	Owner, DecidedBy string
	// Remaining is the whole tokens left (for a window, the count left);
	// Level is the tokens held, negative when the bucket is in debt
	// (reservations, or peers' admissions in gossip mode).
	Remaining int64
	Level     float64
	// ResetAfter is the time until the bucket is full again; RetryAfter
	// the time until one token is there (0 if one is there now).
	ResetAfter, RetryAfter time.Duration
	// LeasedHere and LeasedOut are, in owner mode, the tokens of the
	// owner's bucket that this node, and all the members that answered,
	// hold as leases (spendable now or once earned); the owner's level
	// already excludes them. LeasesUnknown are the members that could not
	// be asked.
	LeasedHere, LeasedOut int64
	LeasesUnknown         []string
	// Unreachable reports that the owner could not be asked: Remaining and
	// the rest are then unknown (zero).
	Unreachable bool
}

// ResetReport says which members reset a key.
type ResetReport struct {
	// Rule, Key, Limit, Sync, Route and Owner are as in Inspection.
	Rule, Key string
	Limit     bucket.Limit
	Sync      rules.Sync
	Route     string
	Owner     string
	// Members are every live member asked, with its answer.
	Members []ResetAck
}

// ResetAck is one member's answer to a reset.
type ResetAck struct {
	Member string
	// Err is why the member did not reset the key (nil: it did).
	Err error
}

// Complete reports whether every member asked reset the key.
func (r *ResetReport) Complete() bool {
	for _, a := range r.Members {
		if a.Err != nil {
			return false
		}
	}
	return true
}

// ErrResetIncomplete is returned with a ResetReport whose Complete is false.
var ErrResetIncomplete = errors.New("not every member reset the key")

// resetTimeout bounds the wait for each member's answer to an inspection
// or a reset.
const resetTimeout = 2 * time.Second

func routeName(r route) string {
	switch r {
	case routeLocal:
		return "local"
	case routeReplicas:
		return "gossip"
	}
	return "owner"
}

// Inspect reads the bucket of req's key without spending from it: on this
// node (local mode, or its replica in gossip mode) or on the key's owner,
// asked over the peer protocol; in owner mode every live member is asked
// at the same time for the tokens it holds leased. req's cost is ignored. Its errors are
// those of Check's resolution (bad input, ErrNotReady), or ctx's.
func (n *Node) Inspect(ctx context.Context, req *Request) (Inspection, error) {
	c, err := n.resolve(req)
	if err != nil {
		return Inspection{}, err
	}
	c.cost = 0
	in := Inspection{Rule: c.id.Rule, Key: c.id.Key, Limit: c.limit, Sync: c.mode, Route: routeName(c.route), DecidedBy: n.self}
	now := n.now()
	var d bucket.Decision
	switch c.route {
	case routeLocal:
		d = n.local.store.Peek(now, c.id, c.limit, 0)
	case routeReplicas:
		d = n.replicas.store(c.mode).Peek(now, c.id, c.limit, 0)
	default:
		// The owner's bucket, and the tokens every member holds leased
		// from it (the owner's level already excludes them).
		in.Owner = c.topo.ownerOf(c.id)
		in.DecidedBy = in.Owner
		lk := leaseKey{c.mode, c.id}
		in.LeasedHere = n.owners.leases.held(lk)
		for _, a := range n.askMembers(ctx, c.topo, c.peerCheck(OpInspect, 0), func() bucket.Decision {
			d := n.owners.store(c.mode).Peek(now, c.id, c.limit, 0)
			d.Granted = in.LeasedHere
			return d
		}) {
			switch {
			case a.err != nil && a.member == in.Owner:
				in.Unreachable = true
			case a.err != nil:
				in.LeasesUnknown = append(in.LeasesUnknown, a.member)
			default:
				in.LeasedOut += a.d.Granted
				if a.member == in.Owner {
					d = a.d
				}
			}
		}
		if ctx.Err() != nil {
			return Inspection{}, ctx.Err()
		}
		if in.Unreachable {
			return in, nil
		}
	}
	in.Remaining, in.ResetAfter = d.Remaining, d.ResetAfter
	in.Level = levelOf(d, c.limit)
	if in.Remaining < 1 {
		// One token is there after what refill owes to the debt, and one.
		in.RetryAfter = untilTokens(c.limit, 1-in.Level)
	}
	return in, nil
}

// levelOf is the tokens a bucket holds, from its decision: Burst less
// what refill owes until the bucket is full (so negative in debt). A
// window's level is its count left.
func levelOf(d bucket.Decision, l bucket.Limit) float64 {
	if l.Algo.Windowed() || l.Period <= 0 {
		return float64(d.Remaining)
	}
	owed := float64(d.ResetAfter) * float64(l.Rate) / float64(l.Period)
	level := math.Round((float64(l.Burst)-owed)*1000) / 1000 // ResetAfter is rounded up
	if d.Remaining > 0 {
		level = max(level, float64(d.Remaining)) // never below what is left whole
	}
	return level
}

// untilTokens is how long limit l takes to earn tokens.
func untilTokens(l bucket.Limit, tokens float64) time.Duration {
	if tokens <= 0 || l.Rate <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(l.Rate) * float64(l.Period))
}

// Reset drops req's key's bucket on every live member, this one included,
// so that the key starts again from a full bucket everywhere: the
// authoritative bucket on its owner, every replica in gossip mode, each
// node's own bucket in local mode, and any fair-share bucket and lease
// held for it. Peers are asked over the peer protocol, all at once, each
// within resetTimeout. A member that cannot be asked is reported in the
// answer, with ErrResetIncomplete; the others have reset the key.
//
// A reset is a deliberate exception to the limit: the key gets a fresh
// burst. Tokens a member leased or admitted just before (gossip totals in
// flight, at most one sync interval's) are not given back: they are
// dropped with the lease, or debited from the new bucket as they arrive,
// which errs on the side of the limit.
func (n *Node) Reset(ctx context.Context, req *Request) (ResetReport, error) {
	c, err := n.resolve(req)
	if err != nil {
		return ResetReport{}, err
	}
	topo := c.topo
	rep := ResetReport{Rule: c.id.Rule, Key: c.id.Key, Limit: c.limit, Sync: c.mode, Route: routeName(c.route)}
	if c.route == routeOwners {
		rep.Owner = topo.ownerOf(c.id)
	}
	for _, a := range n.askMembers(ctx, topo, c.peerCheck(OpReset, 0), func() bucket.Decision {
		n.resetHere(c.id)
		return bucket.Decision{}
	}) {
		rep.Members = append(rep.Members, ResetAck{Member: a.member, Err: a.err})
	}
	if !rep.Complete() {
		return rep, ErrResetIncomplete
	}
	return rep, nil
}

// memberAnswer is one member's answer to a peer op sent to every member.
type memberAnswer struct {
	member string
	d      bucket.Decision
	err    error
}

// askMembers sends pc to every live member of topo, all at once, each
// within resetTimeout, and returns their answers sorted by member name;
// this node's answer is here's, without a call.
func (n *Node) askMembers(ctx context.Context, topo *topology, pc PeerCheck, here func() bucket.Decision) []memberAnswer {
	members := topo.ring.Members()
	if len(members) == 0 {
		members = []string{topo.self}
	}
	slices.Sort(members)
	out := make([]memberAnswer, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		out[i].member = m
		if m == topo.self {
			out[i].d = here()
			continue
		}
		addr := topo.addrs[m]
		if addr == "" {
			out[i].err = errNoPeerAddr
			continue
		}
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, resetTimeout)
			defer cancel()
			ds, err := n.owners.peers.Check(actx, addr, []PeerCheck{pc})
			if err != nil {
				out[i].err = fmt.Errorf("%s: %w", m, err)
				return
			}
			out[i].d = ds[0]
		})
	}
	wg.Wait()
	return out
}

// resetHere drops id's bucket from every store of this node, and any
// lease it holds for it (its tokens lapse, unspent).
func (n *Node) resetHere(id bucket.ID) {
	for _, s := range n.stores {
		s.store.Delete(id)
	}
	for _, mode := range []rules.Sync{rules.SyncOwner, rules.SyncAuto, rules.SyncGossip} {
		n.owners.leases.drop(leaseKey{mode, id})
	}
}
