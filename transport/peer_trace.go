package transport

import (
	"context"
	"io"

	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

// Trace context on the peer protocol. A check batch may end with one more
// value after its [id, [check...]] array: an array of [first, trace ID,
// span ID, flags], one for each call in the frame whose span was sampled,
// in order of first, the index of the call's first check (a call's
// checks run to the next entry's first, or to the frame's end; checks
// before the first entry have none). Trace and span IDs are msgpack bin
// of 16 and 8 bytes, as W3C traceparent has them. A peer that predates it
// decodes the array and ignores what follows, and a frame without it
// decodes as before; a malformed one drops the frame, counted.
const traceFields = 4

// peerTrace is the span context the checks of a batch from first on were
// sent under.
type peerTrace struct {
	first int
	sc    trace.SpanContext
}

// encodeTraces writes the batch's trace contexts after its body, if any.
func encodeTraces(e *msgpack.Encoder, traces []peerTrace) {
	if len(traces) == 0 {
		return
	}
	_ = e.EncodeArrayLen(len(traces))
	for _, t := range traces {
		tid, sid := t.sc.TraceID(), t.sc.SpanID()
		_ = e.EncodeArrayLen(traceFields)
		_ = e.EncodeUint(uint64(t.first))
		_ = e.EncodeBytes(tid[:])
		_ = e.EncodeBytes(sid[:])
		_ = e.EncodeUint(uint64(t.sc.TraceFlags()))
	}
}

// decodeTraces reads the trace contexts after a batch of n checks into
// dst[:0]: none if the frame ends there.
func decodeTraces(d *msgpack.Decoder, n int, dst []peerTrace) ([]peerTrace, error) {
	dst = dst[:0]
	if _, err := d.PeekCode(); err == io.EOF {
		return dst, nil
	} else if err != nil {
		return dst, errMalformed
	}
	m, err := d.DecodeArrayLen()
	if err != nil || m < 1 || m > n {
		return dst, errMalformed
	}
	for range m {
		if f, err := d.DecodeArrayLen(); err != nil || f != traceFields {
			return dst, errMalformed
		}
		first, err := d.DecodeUint64()
		if err != nil || first >= uint64(n) || (len(dst) > 0 && first <= uint64(dst[len(dst)-1].first)) {
			return dst, errMalformed
		}
		var cfg trace.SpanContextConfig
		if err := decodeID(d, cfg.TraceID[:]); err != nil {
			return dst, err
		}
		if err := decodeID(d, cfg.SpanID[:]); err != nil {
			return dst, err
		}
		flags, err := d.DecodeUint8()
		if err != nil {
			return dst, errMalformed
		}
		cfg.TraceFlags, cfg.Remote = trace.TraceFlags(flags), true
		sc := trace.NewSpanContext(cfg)
		if !sc.IsValid() {
			return dst, errMalformed
		}
		dst = append(dst, peerTrace{first: int(first), sc: sc})
	}
	return dst, nil
}

// decodeID reads a msgpack bin of exactly len(id) bytes into id.
func decodeID(d *msgpack.Decoder, id []byte) error {
	n, err := d.DecodeBytesLen()
	if err != nil || n != len(id) {
		return errMalformed
	}
	if err := d.ReadFull(id); err != nil {
		return errMalformed
	}
	return nil
}

// callTraces returns the trace contexts of calls, coalesced into one
// frame in order, to send with it: one per call whose span is sampled.
func callTraces(calls []*call, dst []peerTrace) []peerTrace {
	dst = dst[:0]
	first := 0
	for _, cl := range calls {
		if cl.sc.IsSampled() {
			dst = append(dst, peerTrace{first: first, sc: cl.sc})
		}
		first += len(cl.checks)
	}
	return dst
}

// decideTraced has h decide checks, each run of them that came under a
// trace context with that context in its ctx, so that the owner's spans
// are children of the sender's.
func decideTraced(h PeerHandler, checks []cluster.PeerCheck, traces []peerTrace) ([]bucket.Decision, error) {
	if len(traces) == 0 {
		return h.DecideForwarded(context.Background(), checks)
	}
	out := make([]bucket.Decision, 0, len(checks))
	start := 0
	for i := 0; i <= len(traces); i++ {
		end, ctx := len(checks), context.Background()
		if i < len(traces) {
			end = traces[i].first
		}
		if i > 0 {
			ctx = trace.ContextWithRemoteSpanContext(ctx, traces[i-1].sc)
		}
		if end == start {
			continue
		}
		ds, err := h.DecideForwarded(ctx, checks[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
		start = end
	}
	return out, nil
}
