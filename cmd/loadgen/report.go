package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// The report: every scenario is run several times against nodes the report
// starts itself (processes on 127.0.0.x), and the medians are written as a
// Markdown page.

// scenario is one line of the report.
type scenario struct {
	name  string
	nodes int      // sluice nodes to start; 0: the trivial handler
	unix  bool     // serve the API on Unix sockets, not TCP
	flags []string // extra node flags
	cfg   func(targets []string, base map[string]Result) Config
	note  string
}

const reportRules = `rules:
  - {name: limited, limit: 100, period: 1s, burst: 100}
  - {name: abused, limit: 300, period: 1m}
`

// reportEnvoy is the Envoy rate limit configuration of the report's
// nodes: one limit per key, never reached, as for the /v1/check line.
const reportEnvoy = `domain: loadgen
descriptors:
  - key: key
    rate_limit: {unit: second, requests_per_unit: 1000000}
`

// abusedRate is the rate of the rule "abused", per second: a key checked
// 5,000 times a second is checked at 1,000 times its rate.
const abusedRate = 5.0

func reportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "docs/report.md", "where to write the report")
	runs := fs.Int("runs", 3, "runs per scenario; the report shows medians")
	duration := fs.Duration("duration", 5*time.Second, "length of each run")
	only := fs.String("only", "", "run only the scenarios whose name contains this")
	hosts := fs.String("hosts", "127.0.0", "the loopback `network` (three octets) of the processes: nodes on .100 to .104, the trivial handler on .99; change it when another report runs on the machine")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-report")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "sluice")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "building sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/node").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/node (run the report from the repository root): %v\n%s", err, out)
	}
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(reportRules), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(reportEnvoy), 0o644); err != nil {
		return err
	}

	inline := func(limit, burst int64) bucket.Limit {
		return bucket.Limit{Rate: limit, Period: time.Second, Burst: burst}
	}
	closed := func(targets []string, conc int) Config {
		return Config{Targets: targets, Concurrency: conc, Duration: *duration, Keys: 10_000, Dist: "uniform",
			Limit: inline(1_000_000, 1_000_000), Op: "check", Seed: 1}
	}
	var scenarios []scenario
	scenarios = append(scenarios,
		scenario{name: "trivial net/http JSON handler", nodes: 0, cfg: func(t []string, _ map[string]Result) Config { return closed(t, 32) },
			note: "the ceiling: decode a small JSON body, write a small JSON answer"},
		scenario{name: "1 node: /v1/check", nodes: 1, cfg: func(t []string, _ map[string]Result) Config { return closed(t, 32) },
			note: "10,000 keys, uniform, limits never reached"},
		scenario{name: "1 node: /v1/check/batch of 100", nodes: 1, cfg: func(t []string, _ map[string]Result) Config {
			c := closed(t, 8)
			c.Op, c.Batch = "batch", 100
			return c
		}, note: "decisions per second"},
		scenario{name: "trivial handler, open loop at half of /v1/check's maximum", nodes: 0, cfg: func(t []string, base map[string]Result) Config {
			c := closed(t, 32)
			c.Open, c.Rate = true, base["1 node: /v1/check"].RequestsPS/2
			return c
		}, note: "the same arrival rate as the next line, against the ceiling: the latency this machine gives any server"},
		scenario{name: "1 node: /v1/check, open loop at half the maximum", nodes: 1, cfg: func(t []string, base map[string]Result) Config {
			c := closed(t, 32)
			c.Open, c.Rate = true, base["1 node: /v1/check"].RequestsPS/2
			return c
		}, note: "fixed arrival rate, 32 senders; latency counted from when each request was due"},
	)
	envoyCheck := func(t []string, descriptors int) Config {
		c := closed(t, 32)
		c.Op, c.Batch, c.Domain = "envoy", descriptors, "loadgen"
		c.Limit = bucket.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000, Algo: bucket.FixedWindow}
		for _, target := range t {
			c.GRPCTargets = append(c.GRPCTargets, strings.Replace(strings.TrimPrefix(target, "http://"), ":18080", ":18082", 1))
		}
		return c
	}
	scenarios = append(scenarios,
		scenario{name: "1 node: Envoy ShouldRateLimit (gRPC)", nodes: 1, cfg: func(t []string, _ map[string]Result) Config { return envoyCheck(t, 1) },
			note: "Envoy's rate limit protocol on --grpc-addr, one descriptor per call, 32 callers over 4 connections; 10,000 keys, uniform, limit never reached (fixed window, as the configuration format counts)"},
		scenario{name: "1 node: Envoy ShouldRateLimit, 2 descriptors", nodes: 1, cfg: func(t []string, _ map[string]Result) Config { return envoyCheck(t, 2) },
			note: "two descriptors per call: both are read before either is spent (a call over on one spends nothing on the other), so each call decides twice"},
		scenario{name: "3 nodes: /v1/check, auto (beside Envoy)", nodes: 3, cfg: func(t []string, _ map[string]Result) Config {
			c := closed(t, 32)
			c.Sync = "auto"
			return c
		}, note: "the HTTP check the next line is read against: the same keys and callers, round-robin over the nodes"},
		scenario{name: "3 nodes: Envoy ShouldRateLimit, auto", nodes: 3, cfg: func(t []string, _ map[string]Result) Config { return envoyCheck(t, 1) },
			note: "one descriptor per call, round-robin over the nodes' gRPC endpoints; auto mode (gossip at this size)"},
	)
	for _, n := range []int{3, 5} {
		for _, mode := range []string{"local", "gossip", "owner", "auto"} {
			scenarios = append(scenarios, scenario{
				name: fmt.Sprintf("%d nodes: %s", n, mode), nodes: n,
				cfg: func(t []string, _ map[string]Result) Config {
					c := closed(t, 32)
					c.Rule, c.Sync, c.Dist = "limited", mode, "zipf"
					return c
				},
				note: "rule of 100/s, burst 100; 10,000 keys, Zipf 1.1; round-robin over the nodes",
			})
		}
	}
	for _, n := range []int{3, 5} {
		for _, mode := range []string{"local", "gossip", "owner", "auto"} {
			scenarios = append(scenarios, scenario{
				name: fmt.Sprintf("%d nodes: one key far above its rate, %s", n, mode), nodes: n,
				cfg: func(t []string, _ map[string]Result) Config {
					c := closed(t, 32)
					c.Rule, c.Sync, c.Dist = "abused", mode, "hot"
					return c
				},
				note: "one key limited to 300 a minute with its minute's burst, asked as fast as 32 callers can through every node (the multiple of its rate is in the targets); local limits per node, so it admits N times the bound",
			})
		}
	}
	for _, leases := range []bool{true, false} {
		var flags []string
		name := "5 nodes: one hot key, owner, leases on"
		if !leases {
			flags = []string{"--lease-threshold", "0"}
			name = "5 nodes: one hot key, owner, leases off"
		}
		scenarios = append(scenarios, scenario{name: name, nodes: 5, flags: flags,
			cfg: func(t []string, _ map[string]Result) Config {
				c := closed(t, 32)
				c.Rule, c.Sync, c.Dist = "limited", "owner", "hot"
				return c
			},
			note: "one key, 100/s, asked far more often, through all 5 nodes",
		})
	}

	scenarios = append(scenarios, localPathScenarios(closed)...)

	results := map[string][]Result{}
	medians := map[string]Result{}
	// Round after round, each scenario once per round: a burst of other
	// work on the machine then lands on one run of several scenarios, not
	// on every run of one. An open loop takes its rate from the medians so
	// far.
	for r := range *runs {
		for _, sc := range scenarios {
			// The trivial handler and the single-node check always run:
			// the other lines are read against them (and the open loops
			// take their rate from the latter).
			baseline := sc.nodes == 0 || sc.name == "1 node: /v1/check"
			if *only != "" && !baseline && !strings.Contains(sc.name, *only) {
				continue
			}
			fmt.Fprintf(stderr, "%s, run %d of %d\n", sc.name, r+1, *runs)
			targets, procs, stop, err := startTargets(ctx, bin, self, dir, rulesPath, *hosts+".", sc.nodes, sc.unix, sc.flags)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			before := processCPU(procs)
			res, err := run(ctx, sc.cfg(targets, medians))
			res.ServerCPU = (processCPU(procs) - before).Seconds() / res.Elapsed / float64(runtime.NumCPU())
			stop()
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			results[sc.name] = append(results[sc.name], res)
			medians[sc.name] = median(results[sc.name])
		}
	}
	page := render(scenarios, medians, *runs, *duration)
	if err := os.WriteFile(*out, []byte(page), 0o644); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(strings.TrimSuffix(*out, ".md")+".json", raw, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}

// startTargets starts n sluice nodes on hosts+(100+i) (or, for n = 0, the
// trivial handler on hosts+99) and waits until they serve and, in a
// cluster, see each other. With unix, the APIs listen on Unix sockets in
// dir instead.
func startTargets(ctx context.Context, bin, self, dir, rulesPath, hosts string, n int, unix bool, flags []string) ([]string, []*os.Process, func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			c.Process.Signal(os.Interrupt)
		}
		for _, c := range cmds {
			c.Wait()
		}
	}
	if n == 0 {
		addr := hosts + "99:18080"
		target := "http://" + addr
		if unix {
			addr = "unix:" + filepath.Join(dir, "trivial.sock")
			target = addr
		}
		c := exec.CommandContext(ctx, self, "trivial", "--addr", addr)
		if err := c.Start(); err != nil {
			return nil, nil, nil, err
		}
		cmds = append(cmds, c)
		if err := await(ctx, target, "/", func(code int) bool { return code == 400 }); err != nil {
			stop()
			return nil, nil, nil, err
		}
		return []string{target}, processes(cmds), stop, nil
	}
	var targets, admins []string
	key := "c2x1aWNlLWxvYWRnZW4tcmVwb3J0LWtleS0zMmJ5dGU="
	for i := range n {
		ip := hosts + strconv.Itoa(100+i)
		httpAddr, target := ip+":18080", "http://"+ip+":18080"
		if unix {
			httpAddr = "unix:" + filepath.Join(dir, "api-"+strconv.Itoa(i)+".sock")
			target = httpAddr
		}
		args := []string{
			"--node-name", "load-" + strconv.Itoa(i), "--log-level", "warn",
			"--http-addr", httpAddr, "--admin-addr", ip + ":18081",
			"--gossip-addr", ip + ":17946", "--peer-addr", ip + ":17947",
			"--grpc-addr", ip + ":18082", "--envoy-config", filepath.Join(dir, "envoy.yaml"),
			"--rules", rulesPath, "--data-dir", filepath.Join(dir, "data-"+strconv.Itoa(i)),
			"--gossip-key", key, "--gossip-profile", "local",
		}
		if n > 1 {
			args = append(args, "--seed", hosts+"100:17946")
		}
		c := exec.CommandContext(ctx, bin, append(args, flags...)...)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			stop()
			return nil, nil, nil, err
		}
		cmds = append(cmds, c)
		targets = append(targets, target)
		admins = append(admins, "http://"+ip+":18081")
	}
	for i := range n {
		if err := await(ctx, admins[i], "/readyz", func(code int) bool { return code == 200 }); err != nil {
			stop()
			return nil, nil, nil, err
		}
		if err := awaitMembers(ctx, targets[i], n); err != nil {
			stop()
			return nil, nil, nil, err
		}
	}
	return targets, processes(cmds), stop, nil
}

// await waits until target (a base URL, or unix:/path) answers path with
// a status that ok accepts.
func await(ctx context.Context, target, path string, ok func(int) bool) error {
	bases, tr := targetTransport([]string{target}, 1)
	defer tr.CloseIdleConnections()
	url := bases[0] + path
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err == nil {
			resp.Body.Close()
			if ok(resp.StatusCode) {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not up: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func awaitMembers(ctx context.Context, target string, n int) error {
	bases, tr := targetTransport([]string{target}, 1)
	defer tr.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := (&http.Client{Transport: tr}).Get(bases[0] + "/v1/cluster")
		if err == nil {
			var v struct{ Counts map[string]int }
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if v.Counts["alive"] == n {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New(target + " does not see every node")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
