package cluster

import (
	"context"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Peers is how a node reaches the owners of its keys: the peer RPC client
// that cmd/node wires in (transport.PeerClient). Its methods are safe for
// concurrent use.
type Peers interface {
	// Check sends checks to the peer at addr and returns its decisions, in
	// order. It blocks until they come, the peer fails, or ctx ends.
	Check(ctx context.Context, addr string, checks []PeerCheck) ([]bucket.Decision, error)
	// Handoff sends buckets of mode to their new owner at addr and
	// returns once it has merged them. It blocks within ctx.
	Handoff(ctx context.Context, addr string, mode rules.Sync, entries []bucket.Entry) error
	// Forget drops what is kept for the peer at addr (a member that left
	// or moved). It does not block.
	Forget(addr string)
}

// PeerCheck is one check sent to its key's owner. It carries the limit, so
// the owner decides with the sender's rule even if their rule sets briefly
// differ.
type PeerCheck struct {
	// ID is the bucket (rule name or inline limit, and key).
	ID bucket.ID
	// Limit is the limit to apply.
	Limit bucket.Limit
	// Cost is the number of tokens.
	Cost int64
	// Sync is the check's sync mode (owner, or auto in a large cluster):
	// the owner keeps the buckets of each mode apart.
	Sync rules.Sync
	// Op is what the owner is asked to do; a check by default.
	Op PeerOp
	// MaxWait bounds the wait of an OpReserve.
	MaxWait time.Duration
}

// PeerOp is what a PeerCheck asks of the owner.
type PeerOp uint8

const (
	// OpCheck spends Cost tokens if the bucket holds them.
	OpCheck PeerOp = iota
	// OpLease takes up to Cost tokens for the sender to spend itself (a
	// lease); the decision's Granted says how many it got.
	OpLease
	// OpReturn gives back Cost leased or reserved tokens that were not
	// spent.
	OpReturn
	// OpReserve reserves Cost tokens if they are available within MaxWait
	// (a /v1/wait); the decision's Wait says when.
	OpReserve
	// OpInspect reads the receiver's bucket without changing it (Cost 0):
	// the decision's Remaining and ResetAfter describe it (on the owner),
	// and Granted the tokens the receiver holds leased for the key; sent
	// to every live member.
	OpInspect
	// OpReset drops the key's bucket on the receiver, and any lease it
	// holds for it (Node.Reset); sent to every live member.
	OpReset
)

// MaxPeerWait bounds PeerCheck.MaxWait.
const MaxPeerWait = time.Hour

// Valid reports whether c is a check a peer may send: a known op and mode,
// valid limits (bucket.Limit.Validate), a key within MaxKeyBytes, a cost
// within bucket.MaxTokens and a wait only on a reservation.
func (c *PeerCheck) Valid() bool {
	return c.Op <= OpReset && c.Sync <= rules.SyncOwner && c.Limit.Validate() == nil &&
		(c.ID.Inline == bucket.Limit{} || c.ID.Inline.Validate() == nil) &&
		len(c.ID.Key) <= MaxKeyBytes && c.Cost >= 0 && c.Cost <= bucket.MaxTokens &&
		c.MaxWait >= 0 && c.MaxWait <= MaxPeerWait && (c.Op == OpReserve || c.MaxWait == 0)
}
