package envoy

import (
	"context"
	"strings"
	"time"

	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// ServerConfig configures NewServer. Zero fields mean defaults.
type ServerConfig struct {
	// Service answers the rate limit calls. Required.
	Service *Service
	// Ready reports whether the node serves checks: the health service
	// answers SERVING only while it is true. Required.
	Ready func() bool
	// MaxRecvBytes bounds a request message; larger ones are refused with
	// RESOURCE_EXHAUSTED before they are decoded. If zero, defaults to
	// 64 KiB (an Envoy request is a few hundred bytes).
	MaxRecvBytes int
	// MaxStreams bounds the concurrent calls on one connection. If zero,
	// defaults to 1024.
	MaxStreams uint32
	// Registerer receives the gRPC metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// Asked, if not nil, is called as each call arrives (a node that is
	// shutting down waits until its application has stopped asking).
	Asked func()
	// Tracer starts a span for each rate limit call, the child of the W3C
	// traceparent in its metadata if it has one; the Limiter adds its
	// attributes to it. If nil, tracing is off.
	Tracer trace.TracerProvider
}

// ServiceName is the full name of Envoy's rate limit service, as the
// health service knows it.
const ServiceName = "envoy.service.ratelimit.v3.RateLimitService"

// NewServer returns a gRPC server that serves cfg.Service as Envoy's rate
// limit service and the standard health service (grpc.health.v1), which
// answers SERVING, for "" and for ServiceName, only while cfg.Ready does.
// The caller serves it on a listener and stops it.
func NewServer(cfg ServerConfig) *grpc.Server {
	if cfg.MaxRecvBytes == 0 {
		cfg.MaxRecvBytes = 64 << 10
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 1024
	}
	calls := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_grpc_request_duration_seconds",
		Help:    "Time to answer gRPC calls (Envoy's rate limit service and health), by method and status code.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 1, 5},
	}, []string{"method", "code"})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(calls)
	}
	observe := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if cfg.Asked != nil && !strings.HasPrefix(info.FullMethod, "/grpc.health.v1.") {
			cfg.Asked() // a prober is not the application asking
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return resp, err
	}
	interceptors := []grpc.UnaryServerInterceptor{observe}
	if cfg.Tracer != nil {
		interceptors = append(interceptors, traced(cfg.Tracer.Tracer("github.com/sluicerl/sluice/envoy")))
	}
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxHeaderListSize(uint32(cfg.MaxRecvBytes)),
		grpc.MaxConcurrentStreams(cfg.MaxStreams),
		grpc.ChainUnaryInterceptor(interceptors...),
	)
	rls.RegisterRateLimitServiceServer(srv, cfg.Service)
	healthpb.RegisterHealthServer(srv, &health{ready: cfg.Ready})
	return srv
}

// health is grpc.health.v1 answered from the node's readiness at each
// call. Watch is not served (UNIMPLEMENTED): Envoy's and Kubernetes' gRPC
// health checks call Check.
type health struct {
	healthpb.UnimplementedHealthServer
	ready func() bool
}

// Check reports SERVING while the node is ready, NOT_SERVING otherwise.
func (h *health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if s := req.GetService(); s != "" && s != ServiceName {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", s)
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}
