package main

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// envoyE2EConfig is one Envoy-format domain: a limit per user in the
// default sync mode (auto: gossip in a cluster this small), and the same
// limit on its owner (the sluice extension), exact.
const envoyE2EConfig = `domain: e2e
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 20
  - key: tenant
    rate_limit:
      unit: hour
      requests_per_unit: 20
      sluice: {sync: owner}
`

// TestEndToEndEnvoyCluster runs three sluice processes on loopback
// addresses that form one cluster, each reading the same Envoy rate limit
// configuration, and sends Envoy's ShouldRateLimit through every node's
// gRPC endpoint in turn: in owner mode exactly the limit is admitted, in
// gossip mode no more than the limit (each node spends at most its share
// until it has heard its peers), and each node's health service is
// SERVING.
func TestEndToEndEnvoyCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three processes")
	}
	bin := buildBinary(t)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := freeSharedPort(t, ips)
	peerPort := freeSharedPort(t, ips)
	for peerPort == port {
		peerPort = freeSharedPort(t, ips)
	}
	dnsAddr := startDNS(t, "sluice-envoy.test.", ips)
	key := base64.StdEncoding.EncodeToString([]byte("an-end-to-end-test-key-32-bytes!"))
	cfg := filepath.Join(t.TempDir(), "e2e.yaml")
	if err := os.WriteFile(cfg, []byte(envoyE2EConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	procs := make([]*process, len(ips))
	names := make([]string, len(ips))
	for i := range ips {
		names[i] = "envoy-" + strconv.Itoa(i)
		procs[i] = startProcess(t, ctx, bin,
			"--node-name", names[i],
			"--gossip-addr", net.JoinHostPort(ips[i], strconv.Itoa(port)),
			"--peer-addr", net.JoinHostPort(ips[i], strconv.Itoa(peerPort)),
			"--seed", "sluice-envoy.test", "--dns-server", dnsAddr,
			"--gossip-key", key, "--cluster-label", "envoy-e2e",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--envoy-config", cfg, "--data-dir", t.TempDir(),
		)
	}
	for _, p := range procs {
		awaitAlive(t, p, names, 20*time.Second)
	}
	clients := make([]rls.RateLimitServiceClient, len(procs))
	for i, p := range procs {
		conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[i] = rls.NewRateLimitServiceClient(conn)
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s health: %v %v, want SERVING", p.name, h, err)
		}
	}
	admitted := func(key, value string, calls int) int {
		t.Helper()
		n := 0
		for i := range calls {
			resp, err := clients[i%len(clients)].ShouldRateLimit(ctx, &rls.RateLimitRequest{Domain: "e2e",
				Descriptors: []*rlcommon.RateLimitDescriptor{{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
			if err != nil {
				t.Fatalf("call %d through %s: %v", i, procs[i%len(procs)].name, err)
			}
			if resp.OverallCode == rls.RateLimitResponse_OK {
				n++
			}
		}
		return n
	}
	if n := admitted("tenant", "acme", 60); n != 20 {
		t.Fatalf("owner mode through 3 nodes: %d admitted of 60, want exactly 20", n)
	}
	n := admitted("user", "u1", 60)
	if n > 20 || n == 0 {
		t.Fatalf("gossip mode through 3 nodes: %d admitted of 60, want 1 to 20", n)
	}
	t.Logf("gossip mode through 3 nodes: %d admitted of 60 (limit 20)", n)
}
