package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

func spanContext(t byte, sampled bool) trace.SpanContext {
	cfg := trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, t}, SpanID: trace.SpanID{3, t}}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	return trace.NewSpanContext(cfg)
}

func traceChecks(n int) []cluster.PeerCheck {
	cs := make([]cluster.PeerCheck, n)
	for i := range cs {
		cs[i] = cluster.PeerCheck{ID: bucket.ID{Rule: "api", Key: "k"}, Limit: wireLimit, Cost: 1}
	}
	return cs
}

func encodeBody(t *testing.T, b *peerBatch) []byte {
	t.Helper()
	var wire bytes.Buffer
	if err := newFrameWriter().write(&wire, frameCheckBatch, b); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()[5:]
}

// TestPeerBatchTraceContext: the trace contexts of a batch come after its
// array, so a frame without them is the frame of before (byte for byte)
// and an older peer, which decodes the array, reads the same checks; the
// new decoder reads them back, and none from a frame without them.
func TestPeerBatchTraceContext(t *testing.T) {
	plain := &peerBatch{id: 9, checks: traceChecks(5)}
	traced := &peerBatch{id: 9, checks: plain.checks, traces: []peerTrace{
		{first: 1, sc: spanContext(1, true)}, {first: 3, sc: spanContext(2, true)}}}
	without, with := encodeBody(t, plain), encodeBody(t, traced)
	if !bytes.HasPrefix(with, without) || len(with) == len(without) {
		t.Fatalf("a traced batch must be the plain batch and a suffix:\n%x\n%x", without, with)
	}
	var got peerBatch
	if err := got.decode(msgpack.NewDecoder(bytes.NewReader(with))); err != nil {
		t.Fatal(err)
	}
	if len(got.traces) != 2 || got.traces[0].first != 1 || got.traces[1].first != 3 ||
		!got.traces[0].sc.Equal(spanContext(1, true).WithRemote(true)) || !got.traces[1].sc.Equal(spanContext(2, true).WithRemote(true)) {
		t.Fatalf("traces %+v", got.traces)
	}
	if err := got.decode(msgpack.NewDecoder(bytes.NewReader(without))); err != nil || len(got.traces) != 0 || len(got.checks) != 5 {
		t.Fatalf("plain frame: %v, %d traces, %d checks", err, len(got.traces), len(got.checks))
	}
}

// TestPeerBatchBadTraceIsMalformed: trace contexts out of form or bounds
// make the frame malformed.
func TestPeerBatchBadTraceIsMalformed(t *testing.T) {
	body := encodeBody(t, &peerBatch{id: 1, checks: traceChecks(2)})
	entry := func(first uint64, tid, sid []byte) []any { return []any{first, tid, sid, 1} }
	tid, sid := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 8)
	for name, suffix := range map[string]any{
		"not an array":       "x",
		"empty":              []any{},
		"more than checks":   []any{entry(0, tid, sid), entry(1, tid, sid), entry(1, tid, sid)},
		"first out of range": []any{entry(2, tid, sid)},
		"not increasing":     []any{entry(1, tid, sid), entry(1, tid, sid)},
		"short trace id":     []any{entry(0, tid[:15], sid)},
		"zero trace id":      []any{entry(0, make([]byte, 16), sid)},
		"zero span id":       []any{entry(0, tid, make([]byte, 8))},
		"three fields":       []any{[]any{0, tid, sid}},
	} {
		extra, err := msgpack.Marshal(suffix)
		if err != nil {
			t.Fatal(err)
		}
		var b peerBatch
		if err := b.decode(msgpack.NewDecoder(bytes.NewReader(append(slices.Clip(body), extra...)))); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want errMalformed", name, err)
		}
	}
}

// traceHandler records the span context of each call to DecideForwarded
// and the checks it got.
type traceHandler struct {
	storeHandler
	mu    sync.Mutex
	calls []tracedCall
}

type tracedCall struct {
	sc trace.SpanContext
	n  int
}

func (h *traceHandler) DecideForwarded(ctx context.Context, checks []cluster.PeerCheck) ([]bucket.Decision, error) {
	h.mu.Lock()
	h.calls = append(h.calls, tracedCall{trace.SpanContextFromContext(ctx), len(checks)})
	h.mu.Unlock()
	return h.storeHandler.DecideForwarded(ctx, checks)
}

// TestDecideTracedSplitsByContext: each run of checks is decided under
// the span context it came with, in order, and the decisions line up.
func TestDecideTracedSplitsByContext(t *testing.T) {
	h := &traceHandler{storeHandler: storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}}
	a, b := spanContext(1, true), spanContext(2, true)
	ds, err := decideTraced(h, traceChecks(5), []peerTrace{{first: 1, sc: a}, {first: 3, sc: b}})
	if err != nil || len(ds) != 5 {
		t.Fatalf("%d decisions, %v", len(ds), err)
	}
	want := []tracedCall{{trace.SpanContext{}, 1}, {a.WithRemote(true), 2}, {b.WithRemote(true), 2}}
	if len(h.calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", h.calls, want)
	}
	for i := range want {
		if !h.calls[i].sc.Equal(want[i].sc) || h.calls[i].n != want[i].n {
			t.Fatalf("call %d: %+v, want %+v", i, h.calls[i], want[i])
		}
	}
}

// TestPeerClientSendsSampledSpanContext: a check sent under a sampled span
// reaches the owner's handler with that span as its remote parent; one
// under an unsampled span, or none, with no span context.
func TestPeerClientSendsSampledSpanContext(t *testing.T) {
	h := &traceHandler{storeHandler: storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}}
	_, addr := startPeerServer(t, h, nil)
	c := newClient(t, PeerClientConfig{})
	sampled, unsampled := spanContext(7, true), spanContext(8, false)
	for _, sc := range []trace.SpanContext{sampled, unsampled, {}} {
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		if _, err := c.Check(ctx, addr, traceChecks(1)); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 3 || !h.calls[0].sc.Equal(sampled.WithRemote(true)) || h.calls[1].sc.IsValid() || h.calls[2].sc.IsValid() {
		t.Fatalf("owner saw %+v; want the sampled context, then none twice", h.calls)
	}
}

// TestPeerServerDropsBadTrace: a batch whose trace context is malformed
// is dropped and counted, and its connection closed, like any malformed
// frame.
func TestPeerServerDropsBadTrace(t *testing.T) {
	h := &traceHandler{storeHandler: storeHandler{store: bucket.NewStore(bucket.StoreConfig{})}}
	srv, addr := startPeerServer(t, h, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := clientHandshake(conn, nil); err != nil {
		t.Fatal(err)
	}
	body := encodeBody(t, &peerBatch{id: 1, checks: traceChecks(1)})
	body = append(body, 0x91, 0x94, 0x05, 0xc4, 0x01, 0x00, 0xc4, 0x01, 0x00, 0x01) // [[5, bin(1), bin(1), 1]]
	frame := append([]byte{0, 0, 0, byte(len(body) + 1), frameCheckBatch}, body...)
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open after a malformed trace context")
	}
	if got := testutil.ToFloat64(srv.rejected.WithLabelValues("malformed")); got != 1 {
		t.Fatalf("malformed frames %v, want 1", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 0 {
		t.Fatalf("the handler decided %+v from a malformed frame", h.calls)
	}
}
