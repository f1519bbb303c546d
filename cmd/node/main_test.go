package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestOptionsFromFlagsAndEnv(t *testing.T) {
	env := map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:9999", "SLUICE_MAX_KEYS": "42", "SLUICE_DENY_STATUS": "403"}
	o, err := parseOptions([]string{"--max-keys", "7"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.httpAddr != "127.0.0.1:9999" || o.maxKeys != 7 || o.denyStatus != 403 || o.adminAddr != "127.0.0.1:8081" {
		t.Fatalf("options %+v: want env for http-addr and deny-status, the flag for max-keys, the default for admin-addr", o)
	}
	env = map[string]string{"SLUICE_SEED": "a.svc, b.svc:7000", "SLUICE_GOSSIP_KEY": "k1,k2"}
	o, err = parseOptions([]string{"--seed", "c"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.seeds) != 1 || o.seeds[0] != "c" || len(o.gossipKeys) != 2 {
		t.Fatalf("seeds %v keys %v: a list flag on the command line wins whole; the env takes comma-separated lists", o.seeds, o.gossipKeys)
	}
	o, err = parseOptions([]string{"--peer-idle-timeout", "0"}, func(k string) string {
		return map[string]string{"SLUICE_PEER_MAX_CONNS": "0", "SLUICE_PEER_MAX_ACCEPTED": "0"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if client, server := peerIdle(o.peerIdle); client >= 0 || server >= 0 || peerBound(o.peerMaxConns) >= 0 || peerBound(o.peerMaxAccept) >= 0 {
		t.Fatalf("--peer-idle-timeout 0, --peer-max-conns 0 and --peer-max-accepted 0 map to idle %v/%v and bounds %d, %d; want negative (never, no bound)", client, server, peerBound(o.peerMaxConns), peerBound(o.peerMaxAccept))
	}
	if client, server := peerIdle(time.Minute); client != time.Minute || server != 2*time.Minute {
		t.Fatalf("--peer-idle-timeout 1m maps to %v for the client and %v for the server; want 1m and 2m", client, server)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--deny-status", "500"}, nil, "--deny-status"},
		{[]string{"--max-keys", "0"}, nil, "--max-keys"},
		{nil, map[string]string{"SLUICE_MAX_WAIT": "forever"}, "SLUICE_MAX_WAIT"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"--seed", "sluice.ns.svc"}, nil, "--gossip-key"},
		{[]string{"--seed", "host:0", "--insecure-gossip"}, nil, "--seed"},
		{[]string{"--seed-sample", "0"}, nil, "--seed-sample"},
		{[]string{"--rejoin-interval", "0s"}, nil, "--rejoin-interval"},
		{[]string{"--gossip-sync-interval", "0s"}, nil, "--gossip-sync-interval"},
		{[]string{"--gossip-max-members", "0"}, nil, "--gossip-max-members"},
		{[]string{"--gossip-mode-max-members", "0"}, nil, "--gossip-mode-max-members"},
		{[]string{"--lease-term", "0s"}, nil, "--lease-term"},
		{[]string{"--peer-idle-timeout", "-1s"}, nil, "--peer-idle-timeout"},
		{[]string{"--peer-idle-timeout", "10ms"}, nil, "--peer-idle-timeout"},
		{[]string{"--peer-max-conns", "-1"}, nil, "--peer-max-conns"},
		{[]string{"--peer-max-accepted", "-1"}, nil, "--peer-max-accepted"},
	} {
		_, err := parseOptions(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseOptions(%v, %v) = %v, want an error naming %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// logWatcher collects a node's JSON log lines and waits for one.
type logWatcher struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []map[string]any
}

func newLogWatcher() *logWatcher {
	w := &logWatcher{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *logWatcher) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			line = map[string]any{"msg": sc.Text()}
		}
		w.mu.Lock()
		w.lines = append(w.lines, line)
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.lines = append(w.lines, map[string]any{"msg": "EOF"})
	w.cond.Broadcast()
	w.mu.Unlock()
}

// await returns the first log line whose msg is msg (or "EOF" at the end),
// at or after line index from, and its index.
func (w *logWatcher) await(t *testing.T, msg string, from int) (map[string]any, int) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() {
		w.mu.Lock()
		w.lines = append(w.lines, map[string]any{"msg": "timeout"})
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := from; ; i++ {
		for i >= len(w.lines) {
			w.cond.Wait()
		}
		switch w.lines[i]["msg"] {
		case msg:
			return w.lines[i], i
		case "EOF", "timeout":
			t.Fatalf("log line %q never came; log: %v", msg, w.lines)
		}
	}
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, url, body)
}

// request sends a JSON request and decodes the JSON answer.
func request(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// TestEndToEndBinary builds the sluice binary and runs it as a process on
// loopback: rules from a file, checks over real HTTP, a reload on SIGHUP,
// and a graceful stop on SIGTERM.
func TestEndToEndBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t)
	rulesPath := filepath.Join(dir, "rules.yaml")
	write(t, rulesPath, "rules: [{name: api, limit: 2, period: 1h}]")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--rules", rulesPath, "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "SLUICE_LOG_LEVEL=debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // in case the test fails before the stop
	logs := newLogWatcher()
	go logs.consume(stderr)
	started, at := logs.await(t, "sluice started", 0)
	api := "http://" + started["http_addr"].(string)
	admin := "http://" + started["admin_addr"].(string)

	if resp, err := http.Get(admin + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	for i, want := range []int{200, 200, 429} {
		if code, body := post(t, api+"/v1/check", `{"rule": "api", "key": "k"}`); code != want {
			t.Fatalf("check %d: %d %v", i, code, body)
		}
	}
	// A valid change, delivered by SIGHUP (the file watcher may also see it).
	write(t, rulesPath, "rules: [{name: api, limit: 2, period: 1h}, {name: extra, limit: 1, period: 1s}]")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.await(t, "rules loaded", at)
	if code, body := post(t, api+"/v1/check", `{"rule": "extra", "key": "k"}`); code != 200 {
		t.Fatalf("new rule after reload: %d %v", code, body)
	}
	if code, body := post(t, api+"/v1/check", `{"rule": "api", "key": "k"}`); code != 429 {
		t.Fatalf("a reload must not refill buckets: %d %v", code, body)
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`sluice_checks_total{result="over_limit",rule="api",sync="auto"} 2`)) {
		t.Fatalf("metrics lack the over-limit count:\n%s", metrics)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logs.await(t, "stopped", at)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestRunRejectsBadRulesAndKeepsOld runs a node in process and breaks its
// rules file: the bad version is rejected and the old rules stay in force.
func TestRunRejectsBadRulesAndKeepsOld(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	write(t, rulesPath, "rules: [{name: api, limit: 1, period: 1h}]")
	pr, pw := io.Pipe()
	logs := newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--rules", rulesPath, "--data-dir", t.TempDir()}, func(string) string { return "" }, io.Discard, pw)
		pw.Close()
	}()
	started, at := logs.await(t, "sluice started", 0)
	api := "http://" + started["http_addr"].(string)

	write(t, rulesPath, "rules: [{name: api, limit: -1, period: 1h}]")
	rejected, _ := logs.await(t, "rules rejected; the rules in force stay", at)
	if !strings.Contains(rejected["err"].(string), "rules[0](api).limit") {
		t.Fatalf("rejection does not name the field: %v", rejected)
	}
	if code, body := post(t, api+"/v1/check", `{"rule": "api", "key": "k"}`); code != 200 {
		t.Fatalf("old rules must stay in force: %d %v", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunFailsOnBadStartupRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, "rules: [{name: api, limit: 1}]")
	err := run(context.Background(), []string{"--rules", path, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "period") {
		t.Fatalf("run with invalid rules: %v, want an error naming period", err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
