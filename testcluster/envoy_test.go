package testcluster

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluicerl/sluice/envoy"
	"github.com/sluicerl/sluice/rules"
)

// envoyRules is one Envoy-format domain: the same limit of 20 an hour in
// the default sync mode (auto: gossip in three nodes) and on its owner.
const envoyRules = `domain: shop
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 20}
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 20, sluice: {sync: owner}}
  - key: plan
    rate_limit: {unit: hour, requests_per_unit: 2, sluice: {sync: owner}}
`

// TestEnvoyLimitsHoldAcrossTheCluster puts one Envoy configuration on
// three nodes and sends Envoy's requests through each node's rate limit
// service in turn (the service in process: the simulated network carries
// no gRPC; cmd/node's TestEndToEndEnvoyCluster sends them over real gRPC):
// owner mode admits exactly the limit; gossip mode admits at most the
// limit in the hour, however the calls are spread over time; a request
// over on one descriptor spends nothing on the other, whichever nodes own
// their keys.
func TestEnvoyLimitsHoldAcrossTheCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3)
		c.AwaitConverged(joinBound, c.All()...)
		cfg, err := envoy.Parse([]rules.Doc{{Name: "shop.yaml", Data: []byte(envoyRules)}})
		if err != nil {
			t.Fatal(err)
		}
		var svcs []*envoy.Service
		for _, i := range c.All() {
			set, err := (&rules.Set{}).With(cfg.Rules())
			if err != nil {
				t.Fatal(err)
			}
			node := c.Node(i)
			node.SetRules(set)
			svc := envoy.NewService(envoy.ServiceConfig{Limiter: node, Ready: node.Ready})
			svc.SetConfig(cfg)
			svcs = append(svcs, svc)
		}
		admitted := func(key, value string, calls int, gap time.Duration) int {
			t.Helper()
			n := 0
			for i := range calls {
				resp, err := svcs[i%len(svcs)].ShouldRateLimit(context.Background(), &rls.RateLimitRequest{Domain: "shop",
					Descriptors: []*rlcommon.RateLimitDescriptor{{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
				if err != nil {
					t.Fatalf("call %d through node %d: %v", i, i%len(svcs), err)
				}
				if resp.OverallCode == rls.RateLimitResponse_OK {
					n++
				}
				time.Sleep(gap)
			}
			return n
		}
		if n := admitted("tenant", "acme", 60, 0); n != 20 {
			t.Fatalf("owner mode: %d of 60 admitted, want exactly 20", n)
		}
		pair := &rls.RateLimitRequest{Domain: "shop", Descriptors: []*rlcommon.RateLimitDescriptor{
			{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "tenant", Value: "t9"}}},
			{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "plan", Value: "free"}}},
		}}
		for i := range 6 {
			resp, err := svcs[i%len(svcs)].ShouldRateLimit(context.Background(), pair)
			if err != nil {
				t.Fatal(err)
			}
			if over := resp.OverallCode == rls.RateLimitResponse_OVER_LIMIT; over != (i >= 2) {
				t.Fatalf("pair %d: over=%v, want %v", i, over, i >= 2)
			}
		}
		if n := admitted("tenant", "t9", 60, 0); n != 18 {
			t.Fatalf("tenant after 2 admitted and 4 denied pairs: %d admitted, want 18 (denied pairs spend nothing)", n)
		}
		// At once, then spread over 30 virtual seconds (gossip syncs
		// between calls): never more than the hour's 20.
		if n := admitted("user", "burst", 60, 0); n > 20 || n == 0 {
			t.Fatalf("gossip mode, all at once: %d of 60 admitted, want 1 to 20", n)
		}
		if n := admitted("user", "spread", 60, 500*time.Millisecond); n > 20 || n < 19 {
			t.Fatalf("gossip mode, spread: %d of 60 admitted, want 19 or 20", n)
		}
	})
}
