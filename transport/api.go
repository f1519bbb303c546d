// Package transport is everything sluice puts on the wire: the local HTTP
// API that applications call (check, batch, wait), the admin endpoints
// (health, readiness, metrics), and the types a check travels in.
//
// transport decodes and validates syntax; the Limiter it serves decides.
// Every error becomes an HTTP status in one place (status), so a client
// always gets a JSON body naming the field at fault, and a 5xx says only
// "internal error".
package transport

import (
	"context"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// MaxKeyBytes bounds a check's key.
const MaxKeyBytes = 1024

// MaxBatch bounds the number of checks in one batch.
const MaxBatch = 1000

// CheckRequest is one check, syntactically valid. Exactly one of Rule,
// Descriptors or Inline selects the limit.
type CheckRequest struct {
	// Key is the caller's key; empty when Descriptors make the key.
	Key string
	// Rule names a rule from the rules in force.
	Rule string
	// Descriptors are matched against the rules in force (see rules.Set.Match).
	Descriptors map[string]string
	// Inline is a limit given in the request itself; zero otherwise.
	Inline bucket.Limit
	// Cost is the number of tokens to spend; 0 peeks.
	Cost int64
	// Sync, when SyncSet, overrides the rule's sync mode.
	Sync    rules.Sync
	SyncSet bool
}

// CheckResult is the answer to a check.
type CheckResult struct {
	bucket.Decision
	// Rule is the rule's name, or "" for an inline limit.
	Rule string
	// Policy is the limit that was applied.
	Policy bucket.Limit
	// Sync is the sync mode the check ran under.
	Sync rules.Sync
	// Waited is, for Wait, how long the call was held before the tokens
	// were granted.
	Waited time.Duration
	// Owner is, in owner mode, the member that owns the key.
	Owner string
	// Fallback reports that the owner could not be reached and the check
	// was decided from this node's fair share of the limit.
	Fallback bool
	// Shadow reports a check under a shadow rule (or on a node in shadow
	// mode): it is allowed whatever the decision, and ShadowDenied says
	// that the limit would have denied it.
	Shadow, ShadowDenied bool
}

// Limiter decides checks. Implementations are safe for concurrent use.
type Limiter interface {
	// Check decides one check. Its errors are bad input (*rules.FieldError)
	// or internal failures.
	Check(ctx context.Context, req *CheckRequest) (CheckResult, error)
	// CheckBatch decides checks in order. If any check is bad input, it
	// returns an error naming it (with the field prefixed by "checks[i].")
	// and changes no state.
	CheckBatch(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error)
	// Wait blocks until the check's tokens are granted, answering at once
	// with a denial when they cannot be granted within maxWait. It returns
	// ctx's error, giving the reserved tokens back, if ctx ends first.
	Wait(ctx context.Context, req *CheckRequest, maxWait time.Duration) (CheckResult, error)
	// Ready reports whether the limiter is serving with its rules loaded.
	// It never blocks.
	Ready() bool
}
