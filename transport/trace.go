package transport

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracedEndpoint reports whether endpoint gets a span when tracing is on:
// the checks do; rule and cluster requests do not.
func tracedEndpoint(endpoint string) bool {
	switch endpoint {
	case "check", "batch", "wait":
		return true
	}
	return false
}

// startSpan starts the server span of an API call named name, the child
// of the W3C traceparent in r's headers if there is one, and returns r
// with the span in its context.
func (s *Server) startSpan(r *http.Request, name string) (*http.Request, trace.Span) {
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", r.Pattern)))
	return r.WithContext(ctx), span
}

// endSpan ends an API call's span with the status it answered.
func endSpan(span trace.Span, code int) {
	span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
	span.End()
}
