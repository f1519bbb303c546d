package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// traceFlushTimeout bounds flushing spans to the collector at shutdown,
// out of the shutdown budget: a collector that is down must not hold a
// node that is stopping.
const traceFlushTimeout = 2 * time.Second

// newTracerProvider returns the node's tracer provider and how to flush
// and stop it (once; later calls do nothing), or a nil provider (tracing off) if neither
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT is
// set. Spans go by OTLP over gRPC to that endpoint, a URL (http:// for no
// TLS) or host:port; the other OTEL_EXPORTER_OTLP_* settings (headers,
// TLS, timeout), the sampler (OTEL_TRACES_SAMPLER, _ARG; parent-based,
// always on, unless set), the batching (OTEL_BSP_*) and
// OTEL_RESOURCE_ATTRIBUTES are the SDK's, from the process environment.
// The service is OTEL_SERVICE_NAME, "sluice" if unset.
func newTracerProvider(ctx context.Context, getenv func(string) string, version string) (trace.TracerProvider, func(context.Context) error, error) {
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	opt := otlptracegrpc.WithEndpointURL(endpoint)
	if !strings.Contains(endpoint, "://") { // host:port
		opt = otlptracegrpc.WithEndpoint(endpoint)
	}
	exp, err := otlptracegrpc.New(ctx, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "sluice"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", name), attribute.String("service.version", version)))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	var once sync.Once
	return tp, func(ctx context.Context) (err error) {
		once.Do(func() { err = tp.Shutdown(ctx) })
		return err
	}, nil
}
