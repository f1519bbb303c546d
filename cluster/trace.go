package cluster

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
)

// Span attributes. The key is set only when the operator asks
// (Config.TraceKeys): keys are often user or tenant identifiers.
const (
	AttrRule      = attribute.Key("sluice.rule")       // the rule's name; "" for an inline limit
	AttrSync      = attribute.Key("sluice.sync")       // the sync mode: local, gossip, owner, auto
	AttrRoute     = attribute.Key("sluice.route")      // how it was decided: see decidedBy
	AttrDecision  = attribute.Key("sluice.decision")   // allowed or denied
	AttrBatchSize = attribute.Key("sluice.batch.size") // checks in the call, batch or frame
	AttrDenied    = attribute.Key("sluice.denied")     // checks of a batch that were denied
	AttrOwner     = attribute.Key("sluice.owner")      // the member that owns the key
	AttrKey       = attribute.Key("sluice.key")        // the key, only with Config.TraceKeys
)

// tracing starts a node's spans. A nil *tracing is tracing off: every
// caller tests for nil first, so the check path then costs one comparison
// and allocates nothing.
type tracing struct {
	tracer trace.Tracer
	keys   bool // put keys in attributes
}

// newTracing returns the tracing of tp, or nil (off) if tp is nil.
func newTracing(tp trace.TracerProvider, keys bool) *tracing {
	if tp == nil {
		return nil
	}
	return &tracing{tracer: tp.Tracer("github.com/sluicerl/sluice/cluster"), keys: keys}
}

// decision names a decision for the decision attribute.
func decision(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// decidedBy names how c was decided, res its answer: local, gossip (a
// replica), owned (here, as owner), forwarded (by the owner), leased or
// lease_denied (from a lease of the owner's tokens), or fallback (from
// this node's fair share: the owner could not be reached).
func decidedBy(c *check, res *Result) string {
	switch {
	case c.route == routeLocal:
		return "local"
	case res.Fallback:
		return "fallback"
	case c.route == routeReplicas:
		return "gossip"
	case res.leased && res.Allowed:
		return "leased"
	case res.leased:
		return "lease_denied"
	case c.topo != nil && res.Owner == c.topo.self:
		return "owned"
	}
	return "forwarded"
}

// annotate adds c's attributes and its answer to the span in ctx (the
// API call's), if it records.
func (t *tracing) annotate(ctx context.Context, c *check, res *Result) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrRule.String(c.id.Rule), AttrSync.String(c.mode.String()),
		AttrRoute.String(decidedBy(c, res)), AttrDecision.String(decision(res.Allowed)))
	if t.keys {
		span.SetAttributes(AttrKey.String(c.id.Key))
	}
}

// annotateBatch adds a batch's size and denials to the span in ctx; with a
// single check, that check's attributes.
func (t *tracing) annotateBatch(ctx context.Context, cs []check, out []Result) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if len(cs) == 1 {
		t.annotate(ctx, &cs[0], &out[0])
	}
	denied := 0
	for i := range out {
		if !out[i].Allowed {
			denied++
		}
	}
	span.SetAttributes(AttrBatchSize.Int(len(cs)), AttrDenied.Int(denied))
}

// startForward starts the span of a call to owner deciding cs.
func (t *tracing) startForward(ctx context.Context, owner string, cs []*check) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{AttrOwner.String(owner), AttrBatchSize.Int(len(cs)), AttrRoute.String("forwarded")}
	if len(cs) == 1 {
		attrs = append(attrs, AttrRule.String(cs[0].id.Rule), AttrSync.String(cs[0].mode.String()))
		if t.keys {
			attrs = append(attrs, AttrKey.String(cs[0].id.Key))
		}
	}
	return t.tracer.Start(ctx, "sluice.forward", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endForward ends a forward's span with its answers.
func endForward(span trace.Span, out []Result) {
	denied := 0
	for i := range out {
		if !out[i].Allowed {
			denied++
		}
	}
	if len(out) == 1 {
		span.SetAttributes(AttrDecision.String(decision(out[0].Allowed)))
	}
	span.SetAttributes(AttrDenied.Int(denied))
	span.End()
}

// fellBack records on the span in ctx that the owner could not answer
// and the checks were decided from this node's fair share.
func fellBack(ctx context.Context, owner string, n int, err error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(AttrRoute.String("fallback"))
	span.AddEvent("sluice.fallback", trace.WithAttributes(AttrOwner.String(owner), AttrBatchSize.Int(n),
		attribute.String("error", err.Error())))
}

// startLease starts the span of a lease request made for a check whose
// span context is parent.
func (t *tracing) startLease(ctx context.Context, parent trace.SpanContext, j *peerJob) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{AttrOwner.String(j.owner), AttrRoute.String("lease"), AttrRule.String(j.check.ID.Rule),
		AttrSync.String(j.check.Sync.String()), attribute.Int64("sluice.lease.asked", j.check.Cost)}
	if t.keys {
		attrs = append(attrs, AttrKey.String(j.check.ID.Key))
	}
	return t.tracer.Start(trace.ContextWithSpanContext(ctx, parent), "sluice.lease",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endLease ends a lease request's span with what the owner granted.
func endLease(span trace.Span, ds []bucket.Decision, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else if len(ds) == 1 {
		span.SetAttributes(attribute.Int64("sluice.lease.granted", ds[0].Granted))
	}
	span.End()
}

// serve decides checks forwarded under the remote span context in ctx in
// a child span of it, with serve.
func (t *tracing) serve(ctx context.Context, checks []PeerCheck, serve func([]PeerCheck) ([]bucket.Decision, error)) ([]bucket.Decision, error) {
	route := "owned"
	if checks[0].Op == OpLease {
		route = "lease"
	}
	attrs := []attribute.KeyValue{AttrBatchSize.Int(len(checks)), AttrRoute.String(route)}
	if len(checks) == 1 {
		attrs = append(attrs, AttrRule.String(checks[0].ID.Rule), AttrSync.String(checks[0].Sync.String()))
		if t.keys {
			attrs = append(attrs, AttrKey.String(checks[0].ID.Key))
		}
	}
	_, span := t.tracer.Start(ctx, "sluice.owner.decide", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	defer span.End()
	ds, err := serve(checks)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return ds, err
	}
	denied := 0
	for i := range ds {
		if !ds[i].Allowed {
			denied++
		}
	}
	if len(ds) == 1 && checks[0].Op != OpLease {
		span.SetAttributes(AttrDecision.String(decision(ds[0].Allowed)))
	}
	span.SetAttributes(AttrDenied.Int(denied))
	return ds, nil
}
