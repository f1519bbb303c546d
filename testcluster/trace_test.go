package testcluster

import (
	"context"
	"testing"
	"testing/synctest"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluicerl/sluice/cluster"
)

// spanNamed returns the one span called name, failing if there is not
// exactly one.
func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %s in %d spans, want 1", len(found), name, len(spans))
	}
	return found[0]
}

func attr(s tracetest.SpanStub, k attribute.Key) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestTraceCrossesToOwner: a check forwarded to its owner is one trace:
// the API call's span on the forwarder, its forward span, and on the
// owner a span deciding the check, the forward's child across the peer
// protocol. When the owner is gone, the forward records a fallback.
func TestTraceCrossesToOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exporters := make([]*tracetest.InMemoryExporter, 3)
		c := New(t, 3, Options{Configure: func(i int, cfg *cluster.Config) {
			exporters[i] = tracetest.NewInMemoryExporter()
			cfg.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporters[i]))
			cfg.Leases.Threshold = -1
		}})
		c.AwaitConverged(joinBound, c.All()...)
		key := ""
		for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
			if res, _ := c.Node(0).Check(context.Background(), ownerCheck(k)); res.Owner == c.Member(1).Name {
				key = k
				break
			}
		}
		if key == "" {
			t.Fatal("no key of ten owned by node 1")
		}
		for _, e := range exporters {
			e.Reset()
		}
		api := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporters[0])).Tracer("api")
		ctx, span := api.Start(context.Background(), "POST /v1/check")
		res, err := c.Node(0).Check(ctx, ownerCheck(key))
		span.End()
		if err != nil || !res.Allowed || res.Fallback {
			t.Fatalf("%+v %v", res, err)
		}
		root := spanNamed(t, exporters[0].GetSpans(), "POST /v1/check")
		fwd := spanNamed(t, exporters[0].GetSpans(), "sluice.forward")
		owned := spanNamed(t, exporters[1].GetSpans(), "sluice.owner.decide")
		tid := root.SpanContext.TraceID()
		if fwd.SpanContext.TraceID() != tid || owned.SpanContext.TraceID() != tid {
			t.Fatalf("trace IDs: api %s, forward %s, owner %s; want one", tid, fwd.SpanContext.TraceID(), owned.SpanContext.TraceID())
		}
		if fwd.Parent.SpanID() != root.SpanContext.SpanID() || owned.Parent.SpanID() != fwd.SpanContext.SpanID() || !owned.Parent.IsRemote() {
			t.Fatal("want api -> forward -> owner (a remote parent)")
		}
		if got := attr(root, cluster.AttrRoute); got != "forwarded" || attr(root, cluster.AttrDecision) != "allowed" || attr(root, cluster.AttrSync) != "owner" {
			t.Fatalf("api span route %q decision %q sync %q", got, attr(root, cluster.AttrDecision), attr(root, cluster.AttrSync))
		}
		if attr(owned, cluster.AttrRoute) != "owned" || attr(owned, cluster.AttrBatchSize) != "1" || attr(owned, cluster.AttrDecision) != "allowed" {
			t.Fatalf("owner span attributes %v", owned.Attributes)
		}
		for _, s := range append(exporters[0].GetSpans(), exporters[1].GetSpans()...) {
			for _, a := range s.Attributes {
				if a.Key == cluster.AttrKey || a.Value.Emit() == key {
					t.Fatalf("span %s holds the key (%s) without TraceKeys", s.Name, a.Key)
				}
			}
		}

		// The owner dies: before the cluster notices, the forward times
		// out and the check is decided from the fair share.
		c.Kill(1)
		exporters[0].Reset()
		ctx, span = api.Start(context.Background(), "POST /v1/check")
		res, err = c.Node(0).Check(ctx, ownerCheck(key))
		span.End()
		if err != nil || !res.Fallback {
			t.Fatalf("%+v %v; want a fallback", res, err)
		}
		fwd = spanNamed(t, exporters[0].GetSpans(), "sluice.forward")
		if len(fwd.Events) != 1 || fwd.Events[0].Name != "sluice.fallback" || attr(fwd, cluster.AttrRoute) != "fallback" {
			t.Fatalf("forward span events %v attributes %v; want a fallback", fwd.Events, fwd.Attributes)
		}
		if attr(spanNamed(t, exporters[0].GetSpans(), "POST /v1/check"), cluster.AttrRoute) != "fallback" {
			t.Fatal("the API span does not say fallback")
		}
	})
}
