package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestTracingRefusesBadEndpoint: an endpoint that is neither an http:// or
// https:// URL with a host nor a host:port stops the node at start, naming
// the variable; the SDK alone would log it and export elsewhere.
func TestTracingRefusesBadEndpoint(t *testing.T) {
	for _, tc := range []struct{ name, endpoint string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "::::"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4317"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "localhost"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", " "},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://:4317"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector"},
	} {
		env := map[string]string{tc.name: tc.endpoint}
		tp, _, err := newTracerProvider(context.Background(), func(k string) string { return env[k] }, "test", slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), tc.name) || tp != nil {
			t.Errorf("%s=%q: %v, %v; want an error naming %s", tc.name, tc.endpoint, tp, err, tc.name)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:4317", "https://collector.example:4317", "collector:4317", "[::1]:4317"} {
		env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ok}
		tp, stop, err := newTracerProvider(context.Background(), func(k string) string { return env[k] }, "test", slog.New(slog.DiscardHandler))
		if err != nil || tp == nil {
			t.Errorf("%q: %v; want a provider", ok, err)
			continue
		}
		stop(context.Background())
	}
}

// failingExporter fails the exports its errs say, in turn.
type failingExporter struct {
	sdktrace.SpanExporter
	errs []error
}

func (f *failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}

// TestTracingExportFailuresLogged: a collector that is down is logged in
// the node's log format when exports start failing and when they recover,
// not once per batch on stderr by the SDK's global handler (the batch
// span processor sees no error).
func TestTracingExportFailuresLogged(t *testing.T) {
	var buf bytes.Buffer
	down := errors.New("connection refused")
	e := &loggedExporter{SpanExporter: &failingExporter{errs: []error{down, down, down, nil, nil, down}},
		log: slog.New(slog.NewJSONHandler(&buf, nil)), endpoint: "http://collector:4317"}
	for i := range 6 {
		if err := e.ExportSpans(context.Background(), nil); err != nil {
			t.Fatalf("export %d: %v; the processor would hand it to the global handler", i, err)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{`"level":"WARN","msg":"spans not exported`, `"level":"INFO","msg":"spans exported to the collector again"`, `"level":"WARN","msg":"spans not exported`}
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines", buf.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s; want %s", i, lines[i], w)
		}
	}
}
