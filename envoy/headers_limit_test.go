package envoy

import (
	"context"
	"strings"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestOversizedHeadersAreRefused: the server bounds a request message at
// 64 KiB ("Oversized messages are refused by the server's limits"), but not
// its headers: grpc-go's default header list limit is 16 MiB, so one call
// carries 15 MiB of metadata, and 1,024 such streams a connection
// (MaxStreams) hold gigabytes. Envoy sends a few hundred bytes of headers.
func TestOversizedHeadersAreRefused(t *testing.T) {
	h := newHarness(t, exampleConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("a", 15<<20))
	_, err := h.client.ShouldRateLimit(ctx, &rls.RateLimitRequest{Domain: "edge", Descriptors: []*rlcommon.RateLimitDescriptor{desc("a", "b")}})
	if err == nil || status.Code(err) == codes.OK {
		t.Fatalf("a call with 15 MiB of headers was answered; want it refused (grpc.MaxHeaderListSize)")
	}
}
