package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCtlReachesANodeOnUnixSockets: sluice ctl takes the node's addresses
// from SLUICE_HTTP_ADDR and SLUICE_ADMIN_ADDR, as the README says ("In
// Kubernetes: kubectl exec POD -c sluice -- /sluice ctl members"), and the
// shipped manifest sets SLUICE_HTTP_ADDR=unix:/run/sluice/api.sock: ctl
// dials a unix: address's socket.
func TestCtlReachesANodeOnUnixSockets(t *testing.T) {
	dir := t.TempDir()
	api, admin := filepath.Join(dir, "api.sock"), filepath.Join(dir, "admin.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "unix:" + api, "--admin-addr", "unix:" + admin, "--grpc-addr", "",
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", ""}, func(string) string { return "" }, io.Discard, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, errAPI := os.Lstat(api)
		_, errAdmin := os.Lstat(admin)
		if errAPI == nil && errAdmin == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node's sockets did not appear")
		}
	}
	env := map[string]string{"SLUICE_HTTP_ADDR": "unix:" + api, "SLUICE_ADMIN_ADDR": "unix:" + admin}
	for _, cmd := range []string{"rules", "members"} {
		var stderr strings.Builder
		if err := runCtl(context.Background(), []string{cmd}, func(k string) string { return env[k] }, io.Discard, &stderr); err != nil {
			t.Errorf("sluice ctl %s with the node's own SLUICE_HTTP_ADDR/SLUICE_ADMIN_ADDR (unix:): %v %s", cmd, err, stderr.String())
		}
	}
}
