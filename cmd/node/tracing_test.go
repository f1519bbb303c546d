package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// receiver is an OTLP/gRPC trace collector that keeps what it is sent.
type receiver struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	names []string // service.name of each span's resource
}

func (r *receiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s)
				r.names = append(r.names, service)
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r, ln.Addr().String()
}

// TestTracingExportsAPICall runs a node with OTEL_EXPORTER_OTLP_ENDPOINT
// set to an in-process collector: a check sent with a traceparent is
// exported, at the latest when the node shuts down, as a span of that
// trace, under service "sluice", with the check's attributes and without
// its key.
func TestTracingExportsAPICall(t *testing.T) {
	rcv, addr := startReceiver(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr}
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "", "--gossip-addr", "127.0.0.1:0",
			"--peer-addr", "127.0.0.1:0", "--data-dir", ""}, func(k string) string { return env[k] }, io.Discard, pw)
		pw.Close()
	}()
	started, _ := logs.await(t, "sluice started", 0)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest("POST", "http://"+started["http_addr"].(string)+"/v1/check", strings.NewReader(`{"key": "user:secret", "limit": 10, "period": "1s"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("check: %d", resp.StatusCode)
	}
	cancel() // shutting down flushes the spans
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not stop")
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for i, s := range rcv.spans {
		if s.GetName() != "POST /v1/check" {
			continue
		}
		attrs := map[string]string{}
		for _, a := range s.GetAttributes() {
			attrs[a.GetKey()] = a.GetValue().GetStringValue()
		}
		if got := hexID(s.GetTraceId()); got != traceID || rcv.names[i] != "sluice" ||
			attrs["sluice.decision"] != "allowed" || attrs["sluice.route"] != "gossip" {
			t.Fatalf("span of trace %s, service %q, attributes %v", got, rcv.names[i], attrs)
		}
		if _, ok := attrs["sluice.key"]; ok {
			t.Fatal("the key is in the span without --trace-keys")
		}
		return
	}
	t.Fatalf("no span of the check among %d exported", len(rcv.spans))
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestTracingOffWithoutEndpoint: no OTLP endpoint in the environment, no
// tracer provider: tracing is off.
func TestTracingOffWithoutEndpoint(t *testing.T) {
	tp, stop, err := newTracerProvider(context.Background(), func(string) string { return "" }, "test", slog.New(slog.DiscardHandler))
	if err != nil || tp != nil {
		t.Fatalf("provider %v, %v; want none", tp, err)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil || o.traceKeys {
		t.Fatalf("--trace-keys defaults to %v (%v); want false", o.traceKeys, err)
	}
}
