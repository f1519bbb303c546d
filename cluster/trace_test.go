package cluster

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// traced checks req on n inside a span of its own provider and returns
// that span as exported.
func traced(t *testing.T, n *Node, req *Request) tracetest.SpanStub {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, span := tp.Tracer("api").Start(context.Background(), "api")
	if _, err := n.Check(ctx, req); err != nil {
		t.Fatal(err)
	}
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the API's alone", len(spans))
	}
	return spans[0]
}

// TestTraceKeysOnlyWhenAsked: a check adds its rule, sync mode, route and
// decision to the API call's span, and its key only with TraceKeys.
func TestTraceKeysOnlyWhenAsked(t *testing.T) {
	for _, keys := range []bool{false, true} {
		exp := tracetest.NewInMemoryExporter()
		n := readyNode(t, Config{Tracer: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)), TraceKeys: keys})
		got := map[string]string{}
		for _, a := range traced(t, n, inline("user:secret", 1, time.Hour, 1)).Attributes {
			got[string(a.Key)] = a.Value.Emit()
		}
		want := map[string]string{"sluice.rule": "", "sluice.sync": "auto", "sluice.route": "gossip", "sluice.decision": "allowed"}
		if keys {
			want["sluice.key"] = "user:secret"
		}
		if len(got) != len(want) {
			t.Fatalf("TraceKeys %v: attributes %v, want %v", keys, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("TraceKeys %v: attributes %v, want %v", keys, got, want)
			}
		}
		if len(exp.GetSpans()) != 0 {
			t.Fatalf("a local check started %d spans of its own", len(exp.GetSpans()))
		}
	}
}

// TestTracingOffAddsNothing: with no Tracer, a check adds nothing to a
// span in its context and allocates nothing.
func TestTracingOffAddsNothing(t *testing.T) {
	n := readyNode(t, Config{})
	if s := traced(t, n, inline("user:secret", 1, time.Hour, 1)); len(s.Attributes) != 0 {
		t.Fatalf("tracing off, the check set %v", s.Attributes)
	}
	req, ctx := inline("k", 1_000_000_000, time.Second, 1000), context.Background()
	if allocs := testing.AllocsPerRun(100, func() { n.Check(ctx, req) }); allocs != 0 {
		t.Fatalf("a check allocates %v times with tracing off", allocs)
	}
}
