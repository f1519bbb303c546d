// Package e2e runs sluice as users deploy it: containers built from the
// project's image, one pod per application instance (the demo application
// owns the pod's network namespace, the sidecar joins it), on a private
// Docker network, joining through a DNS name that Docker's resolver answers
// with every pod. The chaos suite drives load through every pod's
// application while it kills, pauses, cuts off and restarts nodes, and
// checks counts, errors and membership after each phase.
//
// It needs a Docker engine and is skipped without one, or with -short:
//
//	go test -run TestChaos -v ./deploy/e2e
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	pods = 5
	// The rule every application checks: 50 a second for the whole fleet,
	// bursts of 100, auto mode (so gossip, with 5 pods).
	rate, burst = 50, 100
	// appRate is each application's checks per second: 4× the limit in all.
	appRate = 40
	// fallbackLimit is each application's share when its sidecar is
	// unreachable (its client's local bucket, per second).
	fallbackLimit = 16
	// converge is how long the cluster may take to see every pod alive
	// again after a phase; the rejoin interval is 5s here.
	converge = 60 * time.Second
)

// counts is an application's GET /stats.
type counts struct {
	Checks, Allowed, Denied, Fallbacks, Errors int64
	FallbackAllowed                            int64 `json:"fallback_allowed"`
}

func (c counts) minus(o counts) counts {
	return counts{c.Checks - o.Checks, c.Allowed - o.Allowed, c.Denied - o.Denied, c.Fallbacks - o.Fallbacks, c.Errors - o.Errors, c.FallbackAllowed - o.FallbackAllowed}
}

func (c counts) plus(o counts) counts {
	return counts{c.Checks + o.Checks, c.Allowed + o.Allowed, c.Denied + o.Denied, c.Fallbacks + o.Fallbacks, c.Errors + o.Errors, c.FallbackAllowed + o.FallbackAllowed}
}

// spec is what a fleet's applications check, and how hard.
type spec struct {
	rules   string // the rules file every sidecar reads
	rule    string // the rule each application checks
	appRate int    // each application's checks per second
	// fallbackLimit per fallbackPeriod is each application's own bucket
	// while its sidecar is unreachable.
	fallbackLimit  int
	fallbackPeriod time.Duration
}

// chaosSpec: 50 a second for the whole fleet, bursts of 100, auto mode;
// 4× the limit in all.
var chaosSpec = spec{
	rules:   fmt.Sprintf("rules:\n  - {name: demo, limit: %d, period: 1s, burst: %d}\n", rate, burst),
	rule:    "demo",
	appRate: appRate, fallbackLimit: fallbackLimit, fallbackPeriod: time.Second,
}

// fleet is the pods of one run.
type fleet struct {
	t       *testing.T
	id      string // names everything this run creates
	image   string
	network string
	rules   string
	ips     []string // each pod's address
}

func (f *fleet) app(i int) string     { return fmt.Sprintf("%s-app-%d", f.id, i) }
func (f *fleet) sidecar(i int) string { return fmt.Sprintf("%s-sidecar-%d", f.id, i) }

// docker runs the docker CLI and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (f *fleet) docker(args ...string) string {
	f.t.Helper()
	out, err := docker(context.Background(), args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// start builds the image and starts the pods, as sp says. Everything is
// removed when the test ends, whether it passed or not.
func start(t *testing.T, sp spec) *fleet {
	if testing.Short() {
		t.Skip("runs containers")
	}
	if _, err := docker(context.Background(), "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("no Docker engine: %v", err)
	}
	f := &fleet{t: t, id: fmt.Sprintf("sluice-e2e-%d", rand.Uint32()%1_000_000)}
	f.image = f.id + ":test"
	f.network = f.id
	t.Cleanup(f.remove)

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(filepath.Join(root, "deploy/docker/build.sh"), f.image)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the image: %v\n%s", err, out)
	}
	f.rules = t.TempDir()
	if err := os.WriteFile(filepath.Join(f.rules, "rules.yaml"), []byte(sp.rules), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.rules, 0o755)
	f.createNetwork()
	for i := range pods {
		f.docker("run", "-d", "--name", f.app(i), "--network", f.network, "--network-alias", "sluice",
			"--entrypoint", "/demo", f.image,
			"--rate", strconv.Itoa(sp.appRate), "--rule", sp.rule,
			"--fallback-limit", strconv.Itoa(sp.fallbackLimit), "--fallback-period", sp.fallbackPeriod.String())
		f.ips = append(f.ips, f.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", f.app(i)))
	}
	for i := range pods {
		f.startSidecar(i)
	}
	return f
}

func (f *fleet) startSidecar(i int) {
	f.t.Helper()
	f.docker("run", "-d", "--name", f.sidecar(i), "--network", "container:"+f.app(i),
		"-v", f.rules+":/etc/sluice/rules:ro",
		"-e", "SLUICE_NODE_NAME=pod-"+strconv.Itoa(i),
		"-e", "SLUICE_SEED=sluice",
		"-e", "SLUICE_GOSSIP_KEY=c2x1aWNlLWUyZS1jaGFvcy10ZXN0LWtleS0zMmJ5dGU=",
		"-e", "SLUICE_CLUSTER_LABEL="+f.id,
		"-e", "SLUICE_RULES=/etc/sluice/rules",
		"-e", "SLUICE_REJOIN_INTERVAL=5s",
		"-e", "SLUICE_SHUTDOWN_TIMEOUT=5s",
		f.image)
}

// createNetwork creates the run's network on a subnet of its own, so that a
// pod cut off the network can come back at the same address.
func (f *fleet) createNetwork() {
	f.t.Helper()
	var err error
	for range 10 {
		subnet := fmt.Sprintf("10.%d.%d.0/24", 100+rand.IntN(100), rand.IntN(256))
		if _, err = docker(context.Background(), "network", "create", "--subnet", subnet, f.network); err == nil {
			return
		}
	}
	f.t.Fatal(err)
}

// remove removes every container, the network and the image of the run.
func (f *fleet) remove() {
	ctx := context.Background()
	var names []string
	for i := range pods {
		names = append(names, f.sidecar(i), f.app(i))
	}
	if f.t.Failed() {
		for i := range pods {
			if logs, err := docker(ctx, "logs", "--tail", "30", f.sidecar(i)); err == nil {
				f.t.Logf("last logs of %s:\n%s", f.sidecar(i), logs)
			}
		}
	}
	docker(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
	docker(ctx, "network", "rm", f.network)
	docker(ctx, "rmi", "-f", f.image)
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// stats returns what pod i's application has counted.
func (f *fleet) stats(i int) counts {
	f.t.Helper()
	resp, err := httpClient.Get("http://" + f.ips[i] + ":9090/stats")
	if err != nil {
		f.t.Fatalf("pod %d's application: %v", i, err)
	}
	defer resp.Body.Close()
	var c counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		f.t.Fatal(err)
	}
	return c
}

// total returns the sum of every application's counts.
func (f *fleet) total() counts {
	var c counts
	for i := range pods {
		c = c.plus(f.stats(i))
	}
	return c
}

// alive returns how many members pod i's sidecar sees alive, from its
// metrics; -1 if it does not answer.
func (f *fleet) alive(i int) int {
	resp, err := httpClient.Get("http://" + f.ips[i] + ":8081/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `sluice_gossip_members{state="alive"} `); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

// awaitConverged waits until every listed pod's sidecar sees want members
// alive, and returns how long that took.
func (f *fleet) awaitConverged(want int, nodes ...int) time.Duration {
	f.t.Helper()
	start := time.Now()
	for {
		ok := true
		for _, i := range nodes {
			if f.alive(i) != want {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > converge {
			var seen []int
			for _, i := range nodes {
				seen = append(seen, f.alive(i))
			}
			f.t.Fatalf("membership did not converge on %d alive within %v: pods see %v", want, converge, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func all() []int {
	out := make([]int, pods)
	for i := range out {
		out[i] = i
	}
	return out
}

// phase runs disrupt under load, then waits for the cluster to converge,
// and checks what the applications saw: no check failed, and the fleet
// admitted at most burst + rate × elapsed, plus gossip mode's slack, plus,
// for each node disrupted, two bursts (its application's fallback bucket,
// and its replicas if it restarts before it has rejoined) and the rate for
// as long as it was out (docs/design/deployment.md). disrupt returns the
// nodes it disrupted and their outage in node-seconds.
func (f *fleet) phase(name string, disrupt func() (nodes int, outage float64)) {
	f.t.Helper()
	before := f.total()
	start := time.Now()
	nodes, outage := disrupt()
	took := f.awaitConverged(pods, all()...)
	time.Sleep(2 * time.Second) // some load on the healed cluster too
	d := f.total().minus(before)
	elapsed := time.Since(start).Seconds()
	exact := float64(burst) + rate*elapsed
	slack := float64(pods-1) * (appRate*0.1 + 1) // others' admissions within 100ms
	bound := exact + slack + float64(nodes)*2*burst + outage*rate
	f.t.Logf("%-16s %5.1fs: %5d checks, %4d admitted (burst + rate × elapsed %.0f, bound %.0f), %3d from client fallbacks, %d errors; converged %v after",
		name, elapsed, d.Checks, d.Allowed, exact, bound, d.Fallbacks, d.Errors, took.Round(100*time.Millisecond))
	if d.Errors != 0 {
		f.t.Errorf("%s: %d checks failed in the applications", name, d.Errors)
	}
	if float64(d.Allowed) > bound {
		f.t.Errorf("%s: admitted %d > bound %.0f", name, d.Allowed, bound)
	}
	if d.Checks < int64(appRate*pods*elapsed/2) {
		f.t.Errorf("%s: only %d checks in %.1fs: the load did not run", name, d.Checks, elapsed)
	}
}

// TestChaos: 5 pods under load; a sidecar killed and restarted; a pod
// frozen and thawed (a gray failure); a pod cut off the network and
// reconnected (a partition); every sidecar restarted in turn.
func TestChaos(t *testing.T) {
	f := start(t, chaosSpec)
	took := f.awaitConverged(pods, all()...)
	t.Logf("5 pods converged %v after their sidecars started", took.Round(100*time.Millisecond))
	time.Sleep(3 * time.Second) // past the start-up fallbacks

	f.phase("steady", func() (int, float64) {
		time.Sleep(10 * time.Second)
		return 0, 0
	})
	f.phase("kill", func() (int, float64) {
		f.docker("kill", f.sidecar(1))
		f.awaitConverged(pods-1, 0, 2, 3, 4)
		f.docker("rm", f.sidecar(1))
		start := time.Now()
		time.Sleep(3 * time.Second)
		f.startSidecar(1)
		return 1, time.Since(start).Seconds() + 1
	})
	f.phase("pause", func() (int, float64) {
		start := time.Now()
		f.docker("pause", f.sidecar(2))
		f.awaitConverged(pods-1, 0, 1, 3, 4)
		f.docker("unpause", f.sidecar(2))
		return 1, time.Since(start).Seconds()
	})
	f.phase("partition", func() (int, float64) {
		start := time.Now()
		f.docker("network", "disconnect", f.network, f.app(3))
		f.awaitConverged(pods-1, 0, 1, 2, 4)
		time.Sleep(5 * time.Second)
		f.docker("network", "connect", "--alias", "sluice", "--ip", f.ips[3], f.network, f.app(3))
		return 1, time.Since(start).Seconds()
	})
	f.phase("rolling restart", func() (int, float64) {
		var outage float64
		for i := range pods {
			start := time.Now()
			f.docker("restart", "-t", "10", f.sidecar(i))
			f.awaitConverged(pods, all()...)
			outage += time.Since(start).Seconds()
		}
		return pods, outage
	})
}
