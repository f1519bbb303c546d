// Package transport adapts sluice's cluster to the wire: the local HTTP
// API that applications call (check, batch, wait, rules), the admin
// endpoints (health, readiness, metrics, keyring, status), and the peer
// RPC by which nodes forward checks to their keys' owners. Each codec
// lives beside the carrier it serves: for HTTP, JSON in decode.go,
// json_fast.go and encode.go and msgpack bodies in mp_*.go, chosen per
// request in body.go; msgpack frames in peer_wire.go for peer RPC. Listen
// (listen.go) serves the API on TCP or on a Unix domain socket.
//
// transport decodes and validates syntax, hands cluster a cluster.Request,
// and writes the cluster.Result back. Every error becomes an HTTP status
// in one place (status), so a client always gets a JSON body naming the
// field at fault, and a 5xx says only "internal error".
package transport

import (
	"context"
	"time"

	"github.com/sluicerl/sluice/cluster"
)

// MaxKeyBytes bounds a check's key (cluster.MaxKeyBytes).
const MaxKeyBytes = cluster.MaxKeyBytes

// MaxBatch bounds the number of checks in one batch (cluster.MaxBatch).
const MaxBatch = cluster.MaxBatch

// Limiter decides checks: a *cluster.Node. Implementations are safe for
// concurrent use.
type Limiter interface {
	// Check decides one check. Its errors are bad input (*rules.FieldError),
	// cluster.ErrNotReady, ctx's, or internal failures.
	Check(ctx context.Context, req *cluster.Request) (cluster.Result, error)
	// CheckBatch decides checks in order. If any check is bad input, it
	// returns an error naming it (with the field prefixed by "checks[i].")
	// and changes no state.
	CheckBatch(ctx context.Context, reqs []cluster.Request) ([]cluster.Result, error)
	// Wait blocks until the check's tokens are granted, answering at once
	// with a denial when they cannot be granted within maxWait. It returns
	// ctx's error, giving the reserved tokens back, if ctx ends first.
	Wait(ctx context.Context, req *cluster.Request, maxWait time.Duration) (cluster.Result, error)
}
