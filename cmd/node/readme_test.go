package main

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeClusterCommandStartsFiveNodes: the README's "five local nodes
// on loopback" loop starts five processes in one directory. Each must get
// its own --data-dir (one node per directory: a second node on the same
// rules.db refuses to start), and its own addresses.
func TestReadmeClusterCommandStartsFiveNodes(t *testing.T) {
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
	seen := map[string]string{}
	for _, i := range strings.Fields(string(m[1])) {
		var args []string
		for _, f := range fields[1:] {
			f = strings.ReplaceAll(f, "$i", i)
			f = strings.ReplaceAll(f, `"$KEY"`, "c2x1aWNlLXRlc3RjbHVzdGVyLWtleS0zMi1ieXRlcyE=")
			args = append(args, f)
		}
		o, err := parseOptions(args, func(string) string { return "" }, io.Discard)
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
