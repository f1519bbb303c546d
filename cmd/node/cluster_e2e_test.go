package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicerl/sluice/internal/dnstest"
)

// TestEndToEndCluster runs five sluice processes on loopback addresses
// 127.0.0.2 to .6, sharing one gossip port, joining through a seed name
// answered by a real DNS server in the test. They must form one cluster;
// one is killed (SIGKILL) and must be seen dead; it restarts and must be
// seen alive again.
func TestEndToEndCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five processes")
	}
	bin := buildBinary(t)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	port := freeSharedPort(t, ips)
	peerPort := freeSharedPort(t, ips)
	for peerPort == port {
		peerPort = freeSharedPort(t, ips)
	}
	dnsAddr := startDNS(t, "sluice.test.", ips)
	key := base64.StdEncoding.EncodeToString([]byte("an-end-to-end-test-key-32-bytes!"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDirs := make([]string, len(ips))
	for i := range dataDirs {
		dataDirs[i] = t.TempDir()
	}
	start := func(i int) *process {
		return startProcess(t, ctx, bin,
			"--node-name", "node-"+strconv.Itoa(i),
			"--gossip-addr", net.JoinHostPort(ips[i], strconv.Itoa(port)),
			"--peer-addr", net.JoinHostPort(ips[i], strconv.Itoa(peerPort)),
			"--seed", "sluice.test",
			"--dns-server", dnsAddr,
			"--gossip-key", key,
			"--cluster-label", "e2e",
			"--http-addr", "127.0.0.1:0",
			"--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--rejoin-interval", "5s",
			"--data-dir", dataDirs[i],
		)
	}
	procs := make([]*process, len(ips))
	for i := range ips {
		procs[i] = start(i)
	}
	all := []string{"node-0", "node-1", "node-2", "node-3", "node-4"}
	for _, p := range procs {
		awaitAlive(t, p, all, 20*time.Second)
	}

	// Owner mode across processes: one limit, whatever node a check enters
	// by. The rings agree once every node sees the same members (above).
	allowed, owners := 0, map[string]bool{}
	for i := range 100 {
		code, body := post(t, procs[i%5].api+"/v1/check", `{"key": "e2e", "limit": 20, "period": "1h", "sync": "owner"}`)
		if code == 200 {
			allowed++
		}
		if body["fallback"] == true {
			t.Fatalf("check %d fell back on a healthy cluster: %v", i, body)
		}
		owners[body["owner"].(string)] = true
	}
	if allowed != 20 || len(owners) != 1 {
		t.Fatalf("owner mode over 5 processes: %d allowed (want exactly 20), owners %v (want one)", allowed, owners)
	}

	// Gossip mode across processes: what node 0 admits, node 4 learns
	// of over real UDP within a few sync intervals. A key no node wanted
	// lately gets 1/N of its burst through one node at once and the rest
	// once a flush has been heard (the share, docs/design/gossip.md): node
	// 0 spends the burst of 20 over a few intervals, and never more.
	spendGossipBurst(t, procs[0], `{"key": "g", "limit": 20, "period": "1h", "sync": "gossip"}`, 20, 5)
	awaitAPI(t, procs[4], 5*time.Second, "its gossip replica spent", func() bool {
		_, body := post(t, procs[4].api+"/v1/check", `{"key": "g", "limit": 20, "period": "1h", "sync": "gossip", "cost": 0}`)
		return body["remaining"] == 0.0
	})

	// A rule set through node 0's API reaches node 4 by gossip.
	if code, body := request(t, http.MethodPut, procs[0].api+"/v1/rules/e2e-api", `{"limit": 5, "period": "1h"}`); code != 200 {
		t.Fatalf("PUT /v1/rules/e2e-api: %d %v", code, body)
	}
	hasRule := func(p *process, name string) func() bool {
		return func() bool {
			code, body := request(t, http.MethodGet, p.api+"/v1/rules", "")
			if code != 200 {
				return false
			}
			for _, r := range body["rules"].([]any) {
				if r := r.(map[string]any); r["name"] == name && r["origin"] == "api" {
					return true
				}
			}
			return false
		}
	}
	hasAPIRule := func(p *process) func() bool { return hasRule(p, "e2e-api") }
	awaitAPI(t, procs[4], 5*time.Second, "the rule set on node 0", hasAPIRule(procs[4]))

	// An exact sliding-log rule set through the API, checked through every
	// node: auto mode keeps it on its owner, so exactly its limit passes.
	if code, body := request(t, http.MethodPut, procs[0].api+"/v1/rules/e2e-log", `{"limit": 10, "period": "1h", "algorithm": "sliding_window_log"}`); code != 200 {
		t.Fatalf("PUT /v1/rules/e2e-log: %d %v", code, body)
	}
	for _, p := range procs {
		awaitAPI(t, p, 5*time.Second, "the sliding-log rule", hasRule(p, "e2e-log"))
	}
	allowed = 0
	for i := range 30 {
		code, body := post(t, procs[i%5].api+"/v1/check", `{"rule": "e2e-log", "key": "k"}`)
		if code == 200 {
			allowed++
		}
		if body["sync"] != "owner" || body["algorithm"] != "sliding_window_log" {
			t.Fatalf("sliding-log check %d: %v", i, body)
		}
	}
	if allowed != 10 {
		t.Fatalf("sliding log over 5 processes: %d allowed, want exactly 10", allowed)
	}

	// A fixed window in gossip mode: what node 0 counts, node 4 learns. (A
	// year-long window, so no boundary falls inside the test.)
	spendGossipBurst(t, procs[0], `{"key": "fw", "limit": 10, "period": "8760h", "algorithm": "fixed_window", "sync": "gossip"}`, 10, 5)
	awaitAPI(t, procs[4], 5*time.Second, "its fixed window counted node 0's admissions", func() bool {
		_, body := post(t, procs[4].api+"/v1/check", `{"key": "fw", "limit": 10, "period": "8760h", "algorithm": "fixed_window", "sync": "gossip", "cost": 0}`)
		return body["remaining"] == 0.0
	})

	procs[4].kill(t)
	for _, p := range procs[:4] {
		awaitState(t, p, "node-4", "dead", 45*time.Second)
	}
	procs[4] = start(4)
	for _, p := range procs {
		awaitAlive(t, p, all, 30*time.Second)
	}
	awaitAPI(t, procs[4], 5*time.Second, "the API rule after its restart", hasAPIRule(procs[4]))
	for _, p := range procs {
		p.stop(t)
	}
}

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	binPath   string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds the sluice binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sluice-test-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sluice")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// freeSharedPort finds a port free for UDP and TCP on every address.
func freeSharedPort(t *testing.T, ips []string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, ip := range ips {
			hp := net.JoinHostPort(ip, strconv.Itoa(port))
			tl, err1 := net.Listen("tcp", hp)
			ul, err2 := net.ListenPacket("udp", hp)
			if tl != nil {
				tl.Close()
			}
			if ul != nil {
				ul.Close()
			}
			ok = ok && err1 == nil && err2 == nil
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every loopback address")
	return 0
}

// startDNS serves A records for name (and an empty answer for other types)
// on a random port of 127.0.0.1, over UDP and TCP, until the test ends.
func startDNS(t *testing.T, name string, ips []string) string {
	t.Helper()
	return dnstest.Start(t, map[string][]string{name: ips}).Addr
}

// process is one sluice node run by a test.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *logWatcher
	api  string
	grpc string // host:port of Envoy's rate limit service, if served
}

func startProcess(t *testing.T, ctx context.Context, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{name: args[1], cmd: cmd, logs: newLogWatcher()}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	go p.logs.consume(stderr)
	started, _ := p.logs.await(t, "sluice started", 0)
	p.api = "http://" + started["http_addr"].(string)
	p.grpc, _ = started["grpc_addr"].(string)
	return p
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("%s: exit after SIGTERM: %v", p.name, err)
	}
}

type clusterView struct {
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"members"`
}

func (p *process) view() (map[string]string, error) {
	resp, err := http.Get(p.api + "/v1/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range v.Members {
		out[m.Name] = m.State
	}
	return out, nil
}

// awaitAlive polls p's /v1/cluster until exactly names are alive.
func awaitAlive(t *testing.T, p *process, names []string, within time.Duration) {
	t.Helper()
	awaitView(t, p, within, fmt.Sprintf("%v alive", names), func(v map[string]string) bool {
		alive := 0
		for _, s := range v {
			if s == "alive" {
				alive++
			}
		}
		for _, n := range names {
			if v[n] != "alive" {
				return false
			}
		}
		return alive == len(names)
	})
}

// awaitAPI waits until cond, which asks p's API, holds.
// spendGossipBurst spends the burst of a gossip-mode key that no node
// wanted before through p, and checks that p admits no more. Such a key
// gets 1/members of its burst through one node at once and the rest once
// a flush has been heard (the share, docs/design/gossip.md), so the checks
// go on until the burst is spent.
func spendGossipBurst(t *testing.T, p *process, check string, burst, members int) {
	t.Helper()
	admitted := 0
	awaitAPI(t, p, 5*time.Second, "spent a gossip burst", func() bool {
		code, body := post(t, p.api+"/v1/check", check)
		switch {
		case code == 200:
			admitted++
		case admitted < burst/members:
			t.Fatalf("%s denied after %d, less than its share of %d among %d: %v", check, admitted, burst, members, body)
		}
		return admitted == burst
	})
	if code, body := post(t, p.api+"/v1/check", check); code == 200 {
		t.Fatalf("%s admitted more than its burst of %d: %v", check, burst, body)
	}
}

func awaitAPI(t *testing.T, p *process, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within %v", p.name, what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func awaitState(t *testing.T, p *process, name, state string, within time.Duration) {
	t.Helper()
	awaitView(t, p, within, name+" "+state, func(v map[string]string) bool { return v[name] == state })
}

func awaitView(t *testing.T, p *process, within time.Duration, what string, cond func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last map[string]string
	for {
		v, err := p.view()
		if err == nil && cond(v) {
			return
		}
		last = v
		if time.Now().After(deadline) {
			t.Fatalf("%s does not see %s within %v; it sees %v (err %v)", p.name, what, within, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
