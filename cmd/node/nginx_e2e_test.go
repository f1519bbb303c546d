package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNginxAuthRequest puts a real nginx (Debian's package) with the
// shipped deploy/nginx/sluice.conf in front of an application, asking a
// real sluice before every request: the requests within the limit reach the
// application, the others get 429 with Retry-After; with sluice gone,
// requests go through (fail open).
func TestNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
		if _, err := os.Stat(nginx); err != nil {
			t.Skip("nginx is not installed (apt-get install nginx)")
		}
	}
	bin := buildBinary(t)
	// The shipped file asks sluice on loopback TCP; its comment gives the
	// line for a Unix socket, which the second run uses.
	for _, unix := range []bool{false, true} {
		name := "tcp"
		if unix {
			name = "unix socket"
		}
		t.Run(name, func(t *testing.T) { nginxAuthRequest(t, nginx, bin, unix) })
	}
}

func nginxAuthRequest(t *testing.T, nginx, bin string, unix bool) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	write(t, rulesPath, "rules:\n  - {name: per-client, limit: 5, period: 1h}\n")

	var reached atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		io.WriteString(w, "hello from the application\n")
	}))
	defer app.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	httpAddr := "127.0.0.1:0"
	if unix {
		httpAddr = "unix:" + filepath.Join(dir, "api.sock")
		// nginx's workers run as an unprivileged user when the test runs as
		// root: they must reach the socket through its directories.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	sluice := startProcess(t, ctx, bin, "--node-name", "nginx-e2e", "--rules", rulesPath, "--deny-status", "403",
		"--http-addr", httpAddr, "--socket-mode", "0666", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	api := sluice.api
	if unix {
		api = "http://" + strings.TrimPrefix(httpAddr, "http://") + ":" // nginx's form: http://unix:/path:/uri
	}

	port := freePort(t)
	conf, err := os.ReadFile("../../deploy/nginx/sluice.conf")
	if err != nil {
		t.Fatal(err)
	}
	server := strings.NewReplacer(
		"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"http://127.0.0.1:8080", api,
		"http://127.0.0.1:3000", app.URL,
	).Replace(string(conf))
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, server)
	write(t, filepath.Join(dir, "nginx.conf"), main)
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	out, _ := os.Create(filepath.Join(dir, "nginx.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", logs)
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	awaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	codes := map[int]int{}
	for i := range 8 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		switch resp.StatusCode {
		case 200:
			if !strings.Contains(string(body), "hello") || resp.Header.Get("RateLimit") == "" {
				t.Fatalf("request %d: allowed without the application's body or the RateLimit header: %q %v", i, body, resp.Header)
			}
		case 429:
			if resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit-Policy") == "" {
				t.Fatalf("request %d: 429 without Retry-After and RateLimit-Policy: %v", i, resp.Header)
			}
		default:
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	if codes[200] != 5 || codes[429] != 3 || reached.Load() != 5 {
		t.Fatalf("statuses %v, application reached %d times; want 5 allowed, 3 limited", codes, reached.Load())
	}

	// Without sluice, requests go through.
	sluice.kill(t)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || reached.Load() != 6 {
		t.Fatalf("with sluice gone: status %d, application reached %d times; want it to fail open", resp.StatusCode, reached.Load())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func awaitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
