package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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
//
// An endpoint that is not an http:// or https:// URL with a host, nor a
// host:port, is an error: the SDK would log it and export to its default
// endpoint instead. Export failures go to log (once when exports start
// failing, once when they succeed again), not to the SDK's global
// handler, which writes unstructured lines to stderr.
func newTracerProvider(ctx context.Context, getenv func(string) string, version string, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	name := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	endpoint := getenv(name)
	if endpoint == "" {
		name = "OTEL_EXPORTER_OTLP_ENDPOINT"
		endpoint = getenv(name)
	}
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	opt, err := endpointOption(endpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %s: %w", name, err)
	}
	exp, err := otlptracegrpc.New(ctx, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", endpoint, err)
	}
	service := getenv("OTEL_SERVICE_NAME")
	if service == "" {
		service = "sluice"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", service), attribute.String("service.version", version)))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(&loggedExporter{SpanExporter: exp, log: log, endpoint: endpoint}), sdktrace.WithResource(res))
	var once sync.Once
	return tp, func(ctx context.Context) (err error) {
		once.Do(func() { err = tp.Shutdown(ctx) })
		return err
	}, nil
}

// endpointOption returns the exporter's option for an OTLP endpoint: an
// http:// (no TLS) or https:// URL with a host, or a bare host:port (TLS).
func endpointOption(endpoint string) (otlptracegrpc.Option, error) {
	if !strings.Contains(endpoint, "://") {
		if host, port, err := net.SplitHostPort(endpoint); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%q is neither an http:// or https:// URL nor a host:port", endpoint)
		}
		return otlptracegrpc.WithEndpoint(endpoint), nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL with a host", endpoint)
	}
	return otlptracegrpc.WithEndpointURL(endpoint), nil
}

// loggedExporter logs its exporter's failures, once when exports start
// failing and once when they succeed again, and hides them from the
// batch span processor, which would hand each one to the SDK's global
// error handler (a line on stderr every batch, outside the node's log
// format, for as long as the collector is down). The spans of a failed
// export are dropped either way. Safe for concurrent use.
type loggedExporter struct {
	sdktrace.SpanExporter
	log      *slog.Logger
	endpoint string
	failing  atomic.Bool
}

// ExportSpans exports spans, and logs a change between failing and not.
func (e *loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	switch {
	case err != nil && !e.failing.Swap(true):
		e.log.Warn("spans not exported to the collector; dropping spans until it answers", "endpoint", e.endpoint, "spans", len(spans), "err", err)
	case err == nil && e.failing.Swap(false):
		e.log.Info("spans exported to the collector again", "endpoint", e.endpoint)
	}
	return nil
}
