package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestRunReloadsEnvoyConfig runs a node in process with an Envoy
// configuration directory and changes it: a good change is put in force
// for the next call, a bad one is rejected naming the file and path, and
// the configuration in force stays.
func TestRunReloadsEnvoyConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shop.yaml")
	write(t, cfg, "domain: shop\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 5}\n")
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--envoy-config", dir, "--data-dir", t.TempDir()},
			func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	started, at := logs.await(t, "sluice started", 0)
	conn, err := grpc.NewClient(started["grpc_addr"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rls.NewRateLimitServiceClient(conn)
	limitOf := func(user string) uint32 {
		t.Helper()
		resp, err := client.ShouldRateLimit(ctx, &rls.RateLimitRequest{Domain: "shop",
			Descriptors: []*rlcommon.RateLimitDescriptor{{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Statuses[0].GetCurrentLimit().GetRequestsPerUnit()
	}
	if got := limitOf("a"); got != 5 {
		t.Fatalf("limit %d, want 5", got)
	}

	write(t, cfg, "domain: shop\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 9}\n")
	_, at = logs.await(t, "Envoy configuration loaded", at)
	if got := limitOf("b"); got != 9 {
		t.Fatalf("after the change: limit %d, want 9", got)
	}

	write(t, cfg, "domain: shop\ndescriptors:\n  - key: user\n    rate_limit: {unit: hours, requests_per_unit: 1}\n")
	rejected, _ := logs.await(t, "Envoy configuration rejected; the configuration in force stays", at)
	if msg := rejected["err"].(string); !strings.Contains(msg, "shop.yaml:4: descriptors[0].rate_limit.unit") {
		t.Fatalf("rejection does not name the file and path: %v", msg)
	}
	if got := limitOf("c"); got != 9 {
		t.Fatalf("after a bad change: limit %d, want 9 (kept)", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunWithoutGRPC checks that an empty --grpc-addr turns the gRPC
// service off: the node starts and serves no gRPC address.
func TestRunWithoutGRPC(t *testing.T) {
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "",
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", t.TempDir()},
			func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	started, _ := logs.await(t, "sluice started", 0)
	if addr := started["grpc_addr"]; addr != "" {
		t.Fatalf("grpc_addr %v, want none", addr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
