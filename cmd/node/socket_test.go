package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicerl/sluice/transport"
)

// TestUnixSockets runs a node with its API and admin port on Unix sockets:
// they serve with the mode asked for; a second node given the same live
// API socket refuses to start and leaves it alone; the first node removes
// both sockets when it stops.
func TestUnixSockets(t *testing.T) {
	dir := t.TempDir()
	api, admin := filepath.Join(dir, "api.sock"), filepath.Join(dir, "admin.sock")
	args := func(httpAddr string) []string {
		return []string{"--http-addr", "unix:" + httpAddr, "--admin-addr", "unix:" + admin + "2", "--socket-mode", "0600",
			"--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", ""}
	}
	first := args(api)
	first[3] = "unix:" + admin
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, first, func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	logs.await(t, "sluice started", 0)

	for _, path := range []string{api, admin} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want a socket of mode 0600", path, fi, err)
		}
	}
	client := unixHTTP(api)
	if code := postVia(t, client, `{"key": "k", "limit": 5, "period": "1s"}`); code != 200 {
		t.Fatalf("check over the socket: %d", code)
	}
	if resp, err := unixHTTP(admin).Get("http://sluice/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin over its socket: %v %v", resp, err)
	}

	err := run(context.Background(), args(api), func(string) string { return "" }, io.Discard, io.Discard)
	if !errors.Is(err, transport.ErrSocketInUse) || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("a second node on the live socket: %v, want ErrSocketInUse naming --http-addr", err)
	}
	if code := postVia(t, client, `{"key": "k", "limit": 5, "period": "1s"}`); code != 200 {
		t.Fatalf("the first node no longer serves after the second was refused: %d", code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{api, admin, admin + "2"} {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left after the node stopped: %v", path, err)
		}
	}
}

func TestSocketModeFlag(t *testing.T) {
	o, err := parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil || o.socketMode != 0o660 {
		t.Fatalf("default socket mode %v (%v), want 0660", o.socketMode, err)
	}
	for _, bad := range []string{"rw", "0", "1777", "999"} {
		if _, err := parseOptions([]string{"--socket-mode", bad}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("--socket-mode %s accepted", bad)
		}
	}
}

func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

func postVia(t *testing.T, c *http.Client, body string) int {
	t.Helper()
	resp, err := c.Post("http://sluice/v1/check", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
