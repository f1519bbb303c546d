package main

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCHealthChecksDoNotHoldUpShutdown: a node that shuts down keeps
// answering until the application has not asked for a second. A health
// checker (Envoy's active health checks on the rate limit cluster, a
// kubelet gRPC probe) keeps probing, all the more once the node says
// NOT_SERVING: its calls are not the application asking, and do not hold
// the node for half of --shutdown-timeout.
func TestGRPCHealthChecksDoNotHoldUpShutdown(t *testing.T) {
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--shutdown-timeout", "20s"},
			func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	started, _ := logs.await(t, "sluice started", 0)
	conn, err := grpc.NewClient(started["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	var probes atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
			if _, err := health.Check(hctx, &healthpb.HealthCheckRequest{}); err == nil {
				probes.Add(1)
			}
			hcancel()
		}
	}()
	defer close(stop)
	for probes.Load() < 3 { // the prober is at work
		select {
		case <-time.After(50 * time.Millisecond):
		case err := <-done:
			t.Fatalf("the node stopped early: %v", err)
		}
	}
	begin := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	t.Logf("shutdown took %v with a health checker probing every 300 ms", took)
	if took > 5*time.Second {
		t.Fatalf("shutdown took %v with a health checker probing every 300 ms, want about drainQuiet (1 s); health checks count as the application asking", took)
	}
}
