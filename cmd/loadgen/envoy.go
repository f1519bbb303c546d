package main

import (
	"context"
	"fmt"
	"sync/atomic"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// envoyConnsPerTarget is how many gRPC connections the load generator opens
// to each target: calls are spread over them, as over the HTTP client's
// pool, so one connection's frame writer is not the bottleneck.
const envoyConnsPerTarget = 4

// envoyCaller sends checks as Envoy does: ShouldRateLimit calls of
// envoy.service.ratelimit.v3.RateLimitService over gRPC, one descriptor
// {key: <key>} per check, in one domain. It is safe for concurrent use.
type envoyCaller struct {
	domain  string
	conns   []*grpc.ClientConn
	clients []rls.RateLimitServiceClient
	next    atomic.Uint64
}

// newEnvoyCaller connects to the gRPC targets (host:port).
func newEnvoyCaller(targets []string, domain string) (*envoyCaller, error) {
	e := &envoyCaller{domain: domain}
	for _, t := range targets {
		for range envoyConnsPerTarget {
			conn, err := grpc.NewClient(t, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				e.close()
				return nil, fmt.Errorf("gRPC target %s: %w", t, err)
			}
			e.conns = append(e.conns, conn)
			e.clients = append(e.clients, rls.NewRateLimitServiceClient(conn))
		}
	}
	return e, nil
}

// call sends one request with a descriptor per key and returns, per key,
// whether its status is OK.
func (e *envoyCaller) call(ctx context.Context, keys []string) ([]bool, error) {
	req := &rls.RateLimitRequest{Domain: e.domain, Descriptors: make([]*rlcommon.RateLimitDescriptor, len(keys))}
	for i, k := range keys {
		req.Descriptors[i] = &rlcommon.RateLimitDescriptor{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "key", Value: k}}}
	}
	c := e.clients[e.next.Add(1)%uint64(len(e.clients))]
	resp, err := c.ShouldRateLimit(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(resp.Statuses) != len(keys) {
		return nil, fmt.Errorf("%d statuses for %d descriptors", len(resp.Statuses), len(keys))
	}
	out := make([]bool, len(keys))
	for i, st := range resp.Statuses {
		out[i] = st.Code == rls.RateLimitResponse_OK
	}
	return out, nil
}

func (e *envoyCaller) close() {
	for _, c := range e.conns {
		c.Close()
	}
}
