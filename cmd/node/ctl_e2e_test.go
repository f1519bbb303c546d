package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ctlNode is a node process and its ports, for the client.
type ctlNode struct {
	*process
	admin, apiAddr string
}

// ctl runs `sluice ctl` in process against n with args, and returns its
// output and error.
func (n ctlNode) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	all := append([]string{"ctl", "--admin", n.admin, "--api", n.apiAddr}, args...)
	err := run(ctx, all, func(string) string { return "" }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// ctlJSON runs `sluice ctl --json` and decodes its output.
func (n ctlNode) ctlJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, err := n.ctl(t, append([]string{"--json"}, args...)...)
	if err != nil {
		t.Fatalf("%s: sluice ctl %v: %v\n%s", n.name, args, err, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("sluice ctl --json %v: %q is not JSON", args, out)
	}
	return v
}

// TestEndToEndCtl runs three node processes on loopback and drives them
// with `sluice ctl`: rules put through one node reach the others, a key
// spent in owner mode is inspected on its owner from another node, shows
// among the top denied keys, and is reset cluster-wide; a gossip-mode key
// is reset on every replica; members are listed; the binary's subcommand
// answers too.
func TestEndToEndCtl(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three processes")
	}
	bin := buildBinary(t)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := freeSharedPort(t, ips)
	peerPort := freeSharedPort(t, ips)
	for peerPort == port {
		peerPort = freeSharedPort(t, ips)
	}
	key := base64.StdEncoding.EncodeToString([]byte("an-end-to-end-test-key-32-bytes!"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var nodes []ctlNode
	var names []string
	for i, ip := range ips {
		p := startProcess(t, ctx, bin, "--node-name", "ctl-"+strconv.Itoa(i),
			"--gossip-addr", net.JoinHostPort(ip, strconv.Itoa(port)),
			"--peer-addr", net.JoinHostPort(ip, strconv.Itoa(peerPort)),
			"--seed", net.JoinHostPort(ips[0], strconv.Itoa(port)), "--gossip-key", key, "--cluster-label", "ctl",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--lease-threshold", "0")
		started, _ := p.logs.await(t, "sluice started", 0)
		nodes = append(nodes, ctlNode{p, started["admin_addr"].(string), started["http_addr"].(string)})
		names = append(names, p.name)
	}
	for _, n := range nodes {
		awaitAlive(t, n.process, names, 20*time.Second)
	}

	// Members, as text.
	out, err := nodes[0].ctl(t, "members")
	if err != nil || strings.Count(out, "alive") != 3 || !strings.Contains(out, "ctl-0 (this node)") {
		t.Fatalf("ctl members: %v\n%s", err, out)
	}

	// A rule put through node 0 is in force on node 2, with its version.
	if out, err := nodes[0].ctl(t, "rules", "put", "checkout", "--limit", "3", "--period", "1h", "--sync", "owner"); err != nil || !strings.Contains(out, "set checkout (version 1 @ ctl-0)") {
		t.Fatalf("ctl rules put: %v\n%s", err, out)
	}
	awaitAPI(t, nodes[2].process, 10*time.Second, "the rule put on node 0", func() bool {
		out, err := nodes[2].ctl(t, "rules")
		return err == nil && strings.Contains(out, "checkout") && strings.Contains(out, "1 @ ctl-0")
	})

	// Spend the key through node 1: three pass, the fourth is denied.
	for i := range 4 {
		code, body := post(t, nodes[1].api+"/v1/check", `{"rule": "checkout", "key": "bob"}`)
		if (code == 200) != (i < 3) {
			t.Fatalf("check %d: %d %v", i, code, body)
		}
	}
	in := nodes[2].ctlJSON(t, "inspect", "checkout", "bob")
	owner, _ := in["owner"].(string)
	if in["remaining"] != 0.0 || in["route"] != "owner" || in["decided_by"] != owner || owner == "" || in["reset_after_ms"].(float64) < 3_500_000 {
		t.Fatalf("inspect from node 2: %v, want the owner's empty bucket", in)
	}
	if out, err := nodes[2].ctl(t, "inspect", "checkout", "bob"); err != nil || !regexp.MustCompile(`owner +`+owner+`\n`).MatchString(out) ||
		!regexp.MustCompile(`remaining +0\n`).MatchString(out) {
		t.Fatalf("ctl inspect as text: %v\n%s", err, out)
	}
	top := nodes[1].ctlJSON(t, "top-denied")
	if keys, _ := top["keys"].([]any); len(keys) != 1 || keys[0].(map[string]any)["key"] != "bob" {
		t.Fatalf("top denied on node 1: %v", top)
	}

	// Reset it from node 2: every member acknowledges; the burst is back.
	out, err = nodes[2].ctl(t, "reset", "checkout", "bob")
	if err != nil || !strings.Contains(out, "on every live member (3)") {
		t.Fatalf("ctl reset: %v\n%s", err, out)
	}
	for i := range 4 {
		code, body := post(t, nodes[0].api+"/v1/check", `{"rule": "checkout", "key": "bob"}`)
		if (code == 200) != (i < 3) {
			t.Fatalf("after the reset, check %d: %d %v", i, code, body)
		}
	}

	// A gossip-mode key: spent through node 0 until node 2's replica
	// knows; reset from node 1; every replica is full.
	gossipKey := []string{"--limit", "4", "--period", "1h", "--sync", "gossip", "g"}
	awaitAPI(t, nodes[0].process, 10*time.Second, "spent the gossip key", func() bool {
		post(t, nodes[0].api+"/v1/check", `{"key": "g", "limit": 4, "period": "1h", "sync": "gossip"}`)
		return nodes[2].ctlJSON(t, append([]string{"inspect"}, gossipKey...)...)["remaining"] == 0.0
	})
	if rep := nodes[1].ctlJSON(t, append([]string{"reset"}, gossipKey...)...); rep["complete"] != true || len(rep["members"].([]any)) != 3 {
		t.Fatalf("reset of the gossip key: %v", rep)
	}
	for _, n := range nodes {
		if in := n.ctlJSON(t, append([]string{"inspect"}, gossipKey...)...); in["remaining"] != 4.0 {
			t.Fatalf("%s after the reset: %v, want a full replica", n.name, in)
		}
	}

	// Bad input: the node's message, naming the field, and an error.
	if out, err := nodes[0].ctl(t, "inspect", "nope", "bob"); err == nil || !strings.Contains(out+err.Error(), `rule: no rule named "nope"`) {
		t.Fatalf("inspect under an unknown rule: %v\n%s", err, out)
	}

	// The rule is deleted; the binary's own subcommand says so.
	cmd := exec.CommandContext(ctx, bin, "ctl", "--admin", nodes[1].admin, "--api", nodes[1].apiAddr, "rules", "delete", "checkout")
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "deleted checkout") {
		t.Fatalf("sluice ctl rules delete: %v\n%s", err, b)
	}
}

// TestCtlUsage: the client's own mistakes are errors that say what to
// give, before any node is asked; --json is taken after the command too.
func TestCtlUsage(t *testing.T) {
	n := ctlNode{process: &process{name: "none"}, admin: "127.0.0.1:1", apiAddr: "127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "a command is required"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"inspect"}, "give RULE KEY"},
		{[]string{"inspect", "a", "b", "c"}, "give RULE KEY"},
		{[]string{"reset", "--cost", "1", "k"}, "-cost"},
		{[]string{"members", "extra"}, "unexpected argument"},
		{[]string{"rules", "put"}, "give the rule's NAME"},
		{[]string{"rules", "put", "x", "--limt", "1"}, "-limt"},
		{[]string{"rules", "delete"}, "give the rule's NAME"},
		{[]string{"rules", "rename"}, "unknown subcommand"},
		{[]string{"top-denied", "--n", "x"}, "invalid value"},
		{[]string{"members", "--json"}, "connection refused"}, // parsed; no node there
		// Invalid UTF-8 would become U+FFFD in a JSON body: another key.
		{[]string{"reset", "api", "\xff"}, "must be valid UTF-8"},
		{[]string{"reset", "--descriptor", "user:\xff"}, "must be valid UTF-8"},
		{[]string{"inspect", "--rule", "a\xffb", "k"}, "must be valid UTF-8"},
		{[]string{"rules", "put", "x", "--limit", "1", "--period", "1s", "--descriptor", "user=\xff"}, "must be valid UTF-8"},
		// The selector's NAME:VALUE given to rules put, which takes KEY=VALUE.
		{[]string{"rules", "put", "x", "--limit", "1", "--period", "1s", "--descriptor", "route:/api"}, "write KEY=VALUE"},
	} {
		out, err := n.ctl(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("sluice ctl %v: %v\n%s\nwant an error saying %q", tc.args, err, out, tc.want)
		}
	}
}

// TestCtlAdminToken: a node started with an admin token (from the
// environment) refuses the key endpoints without it, even on loopback;
// sluice ctl sends SLUICE_ADMIN_TOKEN.
func TestCtlAdminToken(t *testing.T) {
	_, logs, stop := startNode(t, localArgs(t.TempDir()), map[string]string{"SLUICE_ADMIN_TOKEN": "t0k3n"})
	defer stop()
	started, _ := logs.await(t, "sluice started", 0)
	base := []string{"ctl", "--admin", started["admin_addr"].(string), "--api", started["http_addr"].(string), "top-denied"}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "401 Unauthorized: authorization: a valid admin token is required"},
		{map[string]string{"SLUICE_ADMIN_TOKEN": "wrong"}, "401 Unauthorized"},
		{map[string]string{"SLUICE_ADMIN_TOKEN": "t0k3n"}, ""},
	} {
		var out bytes.Buffer
		err := run(context.Background(), base, func(k string) string { return tc.env[k] }, &out, &out)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("with the token: %v\n%s", err, out.String())
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("env %v: %v, want an error saying %q", tc.env, err, tc.want)
		}
	}
}
