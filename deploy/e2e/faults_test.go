package e2e

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fault suite drives one key at 1,000 times its rate through all five
// pods (12 a minute for the fleet, 200 checks a second) while the cluster
// is split, while the key's owner is frozen, and while every sidecar is
// restarted in turn, in auto mode (gossip, at five pods) and in owner
// mode. In each phase the fleet admits at most rate × elapsed plus one
// burst (the key is near empty when a phase starts, so rate × elapsed is
// what it earns), with no failed check. Checks an application decided
// itself because its own sidecar did not answer are reported apart; they
// are its client's local fallback, not the cluster's.
const (
	abusedLimit  = 12 // per minute
	abusedBurst  = 12
	abusedPerApp = 40 // checks per second: 200 for the fleet, 1,000× the rate
)

func abusedSpec(mode string) spec {
	return spec{
		rules:   fmt.Sprintf("rules:\n  - {name: abused, limit: %d, period: 1m, burst: %d, sync: %s}\n", abusedLimit, abusedBurst, mode),
		rule:    "abused",
		appRate: abusedPerApp, fallbackLimit: 1, fallbackPeriod: time.Hour,
	}
}

// splitFor is how long the fault suite keeps a partition: past failure
// detection. SLUICE_E2E_SPLIT sets another (the load report's 45 s and
// 120 s runs).
func splitFor(t *testing.T) time.Duration {
	if v := os.Getenv("SLUICE_E2E_SPLIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SLUICE_E2E_SPLIT: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

func TestFaultsAtAnyRate(t *testing.T) {
	for _, mode := range []string{"auto", "owner"} {
		t.Run(mode, func(t *testing.T) {
			f := start(t, abusedSpec(mode))
			f.awaitConverged(pods, all()...)
			time.Sleep(3 * time.Second) // past the start-up
			f.faultPhase("steady", func() { time.Sleep(10 * time.Second) })
			f.faultPhase("partition 2|3", func() {
				for _, i := range []int{0, 1} {
					f.docker("network", "disconnect", f.network, f.app(i))
				}
				time.Sleep(splitFor(t))
				for _, i := range []int{0, 1} {
					f.docker("network", "connect", "--alias", "sluice", "--ip", f.ips[i], f.network, f.app(i))
				}
				f.awaitConverged(pods, all()...)
			})
			frozen := f.ownerOf()
			f.faultPhase(fmt.Sprintf("frozen pod %d", frozen), func() {
				f.docker("pause", f.sidecar(frozen))
				time.Sleep(10 * time.Second)
				f.docker("unpause", f.sidecar(frozen))
				f.awaitConverged(pods, all()...)
			})
			f.faultPhase("rolling restart", func() {
				for i := range pods {
					f.docker("restart", "-t", "10", f.sidecar(i))
					f.awaitConverged(pods, all()...)
					time.Sleep(4 * time.Second)
				}
			})
		})
	}
}

// faultPhase runs disrupt under the load and checks what the applications
// saw: no failed check, and at most rate × elapsed plus one burst admitted
// by the cluster.
func (f *fleet) faultPhase(name string, disrupt func()) {
	f.t.Helper()
	before, start := f.total(), time.Now()
	disrupt()
	time.Sleep(2 * time.Second) // some load on the healed cluster too
	d := f.total().minus(before)
	elapsed := time.Since(start)
	earned := float64(abusedLimit) * elapsed.Minutes()
	bound := int64(math.Floor(earned)) + abusedBurst
	byCluster := d.Allowed - d.FallbackAllowed
	f.t.Logf("%-16s %5.1fs: %6d checks, %3d admitted by the cluster (rate × elapsed %.1f, bound %d), %d client fallbacks (%d allowed), %d errors",
		name, elapsed.Seconds(), d.Checks, byCluster, earned, bound, d.Fallbacks, d.FallbackAllowed, d.Errors)
	if d.Errors != 0 {
		f.t.Errorf("%s: %d checks failed in the applications", name, d.Errors)
	}
	if byCluster > bound {
		f.t.Errorf("%s: the cluster admitted %d > rate × elapsed + burst (%d)", name, byCluster, bound)
	}
	if d.Checks < int64(abusedPerApp*pods*elapsed.Seconds()/2) {
		f.t.Errorf("%s: only %d checks in %v: the load did not run", name, d.Checks, elapsed)
	}
}

// ownerOf returns the pod whose sidecar decides the abused key as its
// owner (the most owned checks), or the last pod if none does (gossip).
func (f *fleet) ownerOf() int {
	best, most := pods-1, 0.0
	for i := range pods {
		if n := f.metric(i, `sluice_owner_checks_total{route="owned"} `); n > most {
			best, most = i, n
		}
	}
	return best
}

// metric returns the value of the series whose line starts with prefix on
// pod i's sidecar's /metrics, or 0.
func (f *fleet) metric(i int, prefix string) float64 {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + f.ips[i] + ":8081/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}
