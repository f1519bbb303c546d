package envoy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// t0 is one second into an hour (and so into a minute): fixed windows of a
// second, a minute and an hour all end after it.
var t0 = time.Unix(1_799_996_400+1, 0)

// harness is one sluice node serving Envoy's rate limit protocol on a
// loopback TCP port, with a real gRPC client, on a clock that stands still
// unless a test moves it.
type harness struct {
	node   *cluster.Node
	svc    *Service
	client rls.RateLimitServiceClient
	health healthpb.HealthClient
	ready  atomic.Bool
	now    atomic.Int64 // Unix ns
}

type harnessOption func(*ServiceConfig, *ServerConfig)

// withShadow puts the node, and so the service, in shadow mode.
func withShadow() harnessOption {
	return func(s *ServiceConfig, _ *ServerConfig) { s.Shadow = true }
}

func withHeaders() harnessOption {
	return func(s *ServiceConfig, _ *ServerConfig) { s.ResponseHeaders = true }
}

func newHarness(t *testing.T, yaml string, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{}
	h.now.Store(t0.UnixNano())
	h.ready.Store(true)
	scfg := ServiceConfig{}
	gcfg := ServerConfig{}
	for _, o := range opts {
		o(&scfg, &gcfg)
	}
	persist, err := rules.OpenPersist(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { persist.Close() })
	node, err := cluster.New(cluster.Config{Now: func() time.Time { return time.Unix(0, h.now.Load()) }, Persist: persist, Shadow: scfg.Shadow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	h.node = node
	cfg := mustParse(t, yaml)
	set, err := (&rules.Set{}).With(cfg.Rules())
	if err != nil {
		t.Fatal(err)
	}
	node.SetRules(set)
	ready := func() bool { return h.ready.Load() && node.Ready() }
	scfg.Limiter, scfg.Ready, gcfg.Ready = node, ready, ready
	h.svc = NewService(scfg)
	h.svc.SetConfig(cfg)
	gcfg.Service = h.svc
	srv := NewServer(gcfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = rls.NewRateLimitServiceClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	return h
}

// desc is a descriptor of key/value pairs.
func desc(kv ...string) *rlcommon.RateLimitDescriptor {
	d := &rlcommon.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &rlcommon.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// withHits sets the descriptor's own hits_addend.
func withHits(d *rlcommon.RateLimitDescriptor, n uint64) *rlcommon.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(n)
	return d
}

// call sends a request and fails the test on a gRPC error.
func (h *harness) call(t *testing.T, domain string, hits uint32, ds ...*rlcommon.RateLimitDescriptor) *rls.RateLimitResponse {
	t.Helper()
	resp, err := h.try(domain, hits, ds...)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Statuses) != len(ds) {
		t.Fatalf("%d statuses for %d descriptors", len(resp.Statuses), len(ds))
	}
	return resp
}

func (h *harness) try(domain string, hits uint32, ds ...*rlcommon.RateLimitDescriptor) (*rls.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.client.ShouldRateLimit(ctx, &rls.RateLimitRequest{Domain: domain, Descriptors: ds, HitsAddend: hits})
}

// want is a descriptor status in short: code, remaining, and the limit
// (0 for none).
type want struct {
	over      bool
	remaining uint32
	limit     uint32
}

func check(t *testing.T, what string, st *rls.RateLimitResponse_DescriptorStatus, w want) {
	t.Helper()
	over := st.Code == rls.RateLimitResponse_OVER_LIMIT
	limit := uint32(0)
	if st.CurrentLimit != nil {
		limit = st.CurrentLimit.RequestsPerUnit
	}
	if over != w.over || st.LimitRemaining != w.remaining || limit != w.limit {
		t.Fatalf("%s: over=%v remaining=%d limit=%d, want over=%v remaining=%d limit=%d",
			what, over, st.LimitRemaining, limit, w.over, w.remaining, w.limit)
	}
}
