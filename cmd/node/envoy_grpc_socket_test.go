package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCAddrOnUnixSocket: the README's deployment section says Envoy can
// reach a rate limit service over a Unix socket (a pipe address in its
// cluster), beside --http-addr and --admin-addr, which take unix:/path.
// --grpc-addr is listened on as TCP only, so unix:/path is refused at
// start ("listen on --grpc-addr: ...").
func TestGRPCAddrOnUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "rls.sock")
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "unix:" + sock,
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", t.TempDir()},
			func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	select {
	case err := <-done:
		t.Fatalf("--grpc-addr unix:%s: the node did not start: %v", sock, err)
	case <-time.After(2 * time.Second):
	}
	logs.await(t, "sluice started", 0)
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health over the socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
