package envoy

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestTracedJoinsTraceparent: a rate limit call with traceparent in its
// metadata runs in a server span of that trace; a health check gets none.
func TestTracedJoinsTraceparent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	intercept := traced(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("t"))
	ctx := metadata.NewIncomingContext(context.Background(),
		metadata.Pairs("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	var inner []trace.SpanContext
	handler := func(ctx context.Context, _ any) (any, error) {
		inner = append(inner, trace.SpanContextFromContext(ctx))
		return nil, nil
	}
	intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/" + ServiceName + "/ShouldRateLimit"}, handler)
	intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}, handler)
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != ServiceName+"/ShouldRateLimit" {
		t.Fatalf("spans %v; want the rate limit call's alone", spans)
	}
	if got := spans[0].SpanContext.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" || spans[0].SpanKind != trace.SpanKindServer {
		t.Fatalf("span of trace %s, parent %s, kind %v", got, spans[0].Parent.SpanID(), spans[0].SpanKind)
	}
	if len(inner) != 2 || !inner[0].Equal(spans[0].SpanContext) || inner[1].IsValid() {
		t.Fatalf("handlers saw %v; want the call's span, then none", inner)
	}
}
