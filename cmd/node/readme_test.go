package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeCluster returns the README's "five local nodes on loopback" loop:
// the values of $i, and each node's arguments with $i and $KEY filled in.
func readmeCluster(t *testing.T) (nodes []string, args [][]string) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)for i in ([0-9 ]+); do\n(.*?)done`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README: the five-node loop is gone")
	}
	cmd := strings.ReplaceAll(string(m[2]), "\\\n", " ")
	cmd = strings.TrimSuffix(strings.TrimSpace(cmd), "&")
	fields := strings.Fields(cmd)
	if len(fields) == 0 || !strings.HasSuffix(fields[0], "sluice") {
		t.Fatalf("README loop runs %q", cmd)
	}
	for _, i := range strings.Fields(string(m[1])) {
		var a []string
		for _, f := range fields[1:] {
			f = strings.ReplaceAll(f, "$i", i)
			f = strings.ReplaceAll(f, `"$KEY"`, "c2x1aWNlLXRlc3RjbHVzdGVyLWtleS0zMi1ieXRlcyE=")
			a = append(a, f)
		}
		nodes = append(nodes, i)
		args = append(args, a)
	}
	return nodes, args
}

// TestReadmeClusterCommandStartsFiveNodes: the README's loop starts five
// processes in one directory. Each must get its own data directory (one
// node per directory: a second node on the same rules.db refuses to
// start) and its own addresses, with the defaults.
func TestReadmeClusterCommandStartsFiveNodes(t *testing.T) {
	nodes, args := readmeCluster(t)
	seen := map[string]string{}
	for n, i := range nodes {
		o, err := parseOptions(args[n], func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatalf("node %s: %v", i, err)
		}
		for what, v := range map[string]string{"--data-dir": o.dataDir, "--http-addr": o.httpAddr, "--gossip-addr": o.gossipAddr, "--peer-addr": o.peerAddr, "--grpc-addr": o.grpcAddr} {
			key := what + "=" + v
			if prev, ok := seen[key]; ok {
				t.Errorf("README: nodes %s and %s both get %s %q: the second one cannot start", prev, i, what, v)
			}
			seen[key] = i
		}
	}
}

// TestEndToEndReadmeCluster runs the README's cluster commands as written,
// from one directory, with the defaults they leave (data directories
// among them), and sees every node alive on every node. Only the port
// numbers are replaced by free ones, so that the test runs beside
// anything else on the machine; the loopback addresses are the README's.
func TestEndToEndReadmeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five processes")
	}
	bin := buildBinary(t)
	nodes, args := readmeCluster(t)
	var ips []string
	for _, i := range nodes {
		ips = append(ips, "127.0.0."+i)
	}
	ports := map[string]int{}
	used := map[int]bool{}
	for _, p := range []string{"7946", "7947", "8080", "8081"} {
		port := freeSharedPort(t, ips)
		for used[port] {
			port = freeSharedPort(t, ips)
		}
		used[port], ports[p] = true, port
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	apis := make([]string, len(nodes))
	var names []string
	for n := range nodes {
		a := make([]string, len(args[n]))
		for j, f := range args[n] {
			for from, to := range ports {
				f = strings.ReplaceAll(f, ":"+from, ":"+strconv.Itoa(to))
			}
			if j > 0 && args[n][j-1] == "--seed" && !strings.Contains(f, ":") {
				f = net.JoinHostPort(f, strconv.Itoa(ports["7946"])) // the default gossip port, replaced
			}
			if j > 0 && args[n][j-1] == "--http-addr" {
				apis[n] = "http://" + f
			}
			if j > 0 && args[n][j-1] == "--node-name" {
				names = append(names, f)
			}
			a[j] = f
		}
		cmd := exec.CommandContext(ctx, bin, a...)
		cmd.Dir = dir
		var log strings.Builder // read after Wait only
		cmd.Stderr = &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			if err := cmd.Wait(); err != nil && t.Failed() {
				t.Logf("node %s: %v\n%s", nodes[n], err, log.String())
			}
		})
	}
	if len(names) != len(nodes) || apis[0] == "" {
		t.Fatalf("README loop: no --node-name or --http-addr in %v", args[0])
	}
	for n := range nodes {
		p := &process{name: names[n], api: apis[n]}
		awaitAlive(t, p, names, 30*time.Second)
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dir, nodeDataDir(name), "rules.db")); err != nil {
			t.Errorf("node %s has no rules database in its own default directory: %v", name, err)
		}
	}
}
