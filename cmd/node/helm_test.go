package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// The Helm chart (deploy/helm/sluice) is rendered with the helm binary
// when it is on PATH, and the manifests it renders are checked as the
// shipped ones are (manifests_test.go), plus what only the chart has: the
// PodDisruptionBudget, the generated Secret, the grace period, the
// ServiceMonitor and the image's version.

const chartDir = "../../deploy/helm/sluice"

// helmTemplate renders the chart as release "rel" in namespace "shop" on
// Kubernetes 1.30 with args added, and returns its objects by kind and
// name ("Service/rel-sluice-peers").
func helmTemplate(t *testing.T, args ...string) map[string]obj {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "rel", chartDir, "--namespace", "shop", "--kube-version", "1.30.0"}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := map[string]obj{}
	for _, d := range decodeDocs(t, "helm template", out) {
		objs[d["kind"].(string)+"/"+path(d, "metadata", "name").(string)] = d
	}
	return objs
}

func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("no helm on PATH (go install helm.sh/helm/v3/cmd/helm@v3.22.0): the chart is not rendered")
	}
	// Read the chart here too: helm reads it in another process, which
	// go test's cache does not see, so a changed chart would not run
	// the tests again.
	err = filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, err = os.ReadFile(p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.Bytes(), err
}

func TestHelmChart(t *testing.T) {
	objs := helmTemplate(t, "--api-versions", "monitoring.coreos.com/v1")
	svc, dep := objs["Service/rel-sluice-peers"], objs["Deployment/rel-sluice"]
	cm, secret, pdb := objs["ConfigMap/rel-sluice-rules"], objs["Secret/rel-sluice-gossip"], objs["PodDisruptionBudget/rel-sluice"]
	if svc == nil || dep == nil || cm == nil || secret == nil || pdb == nil {
		t.Fatalf("want the seed Service, a Deployment, the rules ConfigMap, the gossip Secret and a PodDisruptionBudget; got %v", kinds(objs))
	}
	// The seed name: headless, listing pods before they are ready, with
	// the gossip (TCP and UDP) and peer ports.
	if path(svc, "spec", "clusterIP") != "None" || path(svc, "spec", "publishNotReadyAddresses") != true {
		t.Fatal("the seed Service must be headless with publishNotReadyAddresses")
	}
	var ports []string
	for _, p := range list(path(svc, "spec", "ports")) {
		ports = append(ports, strconv.Itoa(path(p, "port").(int))+"/"+path(p, "protocol").(string)+"→"+path(p, "targetPort").(string))
	}
	if got, want := strings.Join(ports, " "), "7946/TCP→gossip-tcp 7946/UDP→gossip-udp 7947/TCP→peer"; got != want {
		t.Fatalf("seed Service ports %s, want %s", got, want)
	}
	podLabels := path(dep, "spec", "template", "metadata", "labels").(obj)
	selects := func(what string, selector any) {
		t.Helper()
		if len(selector.(obj)) == 0 {
			t.Fatalf("%s selects everything", what)
		}
		for k, v := range selector.(obj) {
			if podLabels[k] != v {
				t.Fatalf("%s selects %s=%v, which the pods do not carry", what, k, v)
			}
		}
	}
	selects("the seed Service", path(svc, "spec", "selector"))
	selects("the PodDisruptionBudget", path(pdb, "spec", "selector", "matchLabels"))
	if path(pdb, "spec", "maxUnavailable") != 1 {
		t.Errorf("the PodDisruptionBudget lets %v pods go at once, want 1", path(pdb, "spec", "maxUnavailable"))
	}
	for name, body := range path(cm, "data").(obj) {
		if _, err := rules.Parse([]byte(body.(string))); err != nil {
			t.Fatalf("ConfigMap rules %s: %v", name, err)
		}
	}
	// The generated gossip key is one AES-256 key.
	key, _ := base64.StdEncoding.DecodeString(path(secret, "data", "key").(string))
	if raw, err := base64.StdEncoding.DecodeString(string(key)); err != nil || len(raw) != 32 {
		t.Fatalf("the generated gossip key %q is not base64 of 32 bytes", key)
	}

	pod := path(dep, "spec", "template", "spec")
	o, sidecar := checkSidecarPod(t, pod, svc, "rel-sluice-rules", "rel-sluice-gossip")
	if o.clusterLabel != "rel-sluice" {
		t.Errorf("cluster label %q, want the release's name", o.clusterLabel)
	}
	// The grace period covers the preStop pause and the whole shutdown.
	grace := time.Duration(path(pod, "terminationGracePeriodSeconds").(int)) * time.Second
	preStop := time.Duration(0)
	if s, ok := path(sidecar, "lifecycle", "preStop", "sleep", "seconds").(int); ok {
		preStop = time.Duration(s) * time.Second
	}
	if grace <= preStop+o.shutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v does not cover the preStop pause %v and --shutdown-timeout %v", grace, preStop, o.shutdownTimeout)
	}
	// The image is the chart's version.
	chart := readChart(t)
	if chart["version"] != chart["appVersion"] {
		t.Errorf("Chart.yaml: version %v, appVersion %v: the chart and the image carry the same version", chart["version"], chart["appVersion"])
	}
	if img := path(sidecar, "image"); img != "sluice:"+chart["appVersion"].(string) {
		t.Errorf("image %v, want the chart's appVersion %v", img, chart["appVersion"])
	}
	// The ServiceMonitor scrapes the admin port through a Service that
	// selects the pods.
	sm, metrics := objs["ServiceMonitor/rel-sluice"], objs["Service/rel-sluice-metrics"]
	if sm == nil || metrics == nil {
		t.Fatalf("with the Prometheus operator's API, want a ServiceMonitor and its Service; got %v", kinds(objs))
	}
	selects("the metrics Service", path(metrics, "spec", "selector"))
	for k, v := range path(sm, "spec", "selector", "matchLabels").(obj) {
		if path(metrics, "metadata", "labels", k) != v {
			t.Fatalf("the ServiceMonitor selects %s=%v, which the metrics Service does not carry", k, v)
		}
	}
	if path(list(path(sm, "spec", "endpoints"))[0], "port") != "admin" || path(list(path(metrics, "spec", "ports"))[0], "targetPort") != "admin" {
		t.Error("the ServiceMonitor must scrape the admin port")
	}
	if a := path(dep, "spec", "template", "metadata", "annotations", "prometheus.io/scrape"); a != nil {
		t.Error("with a ServiceMonitor, the pods also carry prometheus.io/scrape: each would be scraped twice")
	}
}

// TestHelmChartOptions renders the chart with other values: no
// ServiceMonitor without the operator's API, a gossip key Secret of one's
// own, the API on TCP, no preStop pause on Kubernetes 1.29, and a grace
// period too short and an unknown API refused.
func TestHelmChartOptions(t *testing.T) {
	objs := helmTemplate(t)
	if _, ok := objs["ServiceMonitor/rel-sluice"]; ok {
		t.Error("a ServiceMonitor is rendered without the Prometheus operator's API")
	}
	annotations := path(objs["Deployment/rel-sluice"], "spec", "template", "metadata", "annotations")
	if path(annotations, "prometheus.io/scrape") != "true" || path(annotations, "prometheus.io/port") != "8081" {
		t.Errorf("without a ServiceMonitor, the pods want the prometheus.io annotations on the admin port: %v", annotations)
	}

	objs = helmTemplate(t, "--set", "sluice.gossipKey.existingSecret=mine", "--set", "sluice.gossipKey.secretKey=k", "--set", "sluice.api=tcp")
	if _, ok := objs["Secret/rel-sluice-gossip"]; ok {
		t.Error("a Secret is generated although one is given")
	}
	dep := objs["Deployment/rel-sluice"]
	o, _ := checkSidecarPod(t, path(dep, "spec", "template", "spec"), objs["Service/rel-sluice-peers"], "rel-sluice-rules", "mine")
	if o.httpAddr != "127.0.0.1:8080" {
		t.Errorf("with api=tcp, the API listens on %q, want 127.0.0.1:8080", o.httpAddr)
	}
	app := list(path(dep, "spec", "template", "spec", "containers"))[0]
	if cmd := expandEnv(app, fmt.Sprint(path(app, "command"))); !strings.Contains(cmd, "--sidecar http://127.0.0.1:8080") {
		t.Errorf("the application is not pointed at the TCP API: %s", cmd)
	}

	// The data volume: an emptyDir by default, or exactly the source given
	// (merged with a default emptyDir, it would have two, which Kubernetes
	// refuses).
	for _, tc := range []struct{ set, want string }{
		{"", "map[emptyDir:map[]]"},
		{`sluice.dataVolume={"persistentVolumeClaim": {"claimName": "rules"}}`, "map[persistentVolumeClaim:map[claimName:rules]]"},
	} {
		var args []string
		if tc.set != "" {
			args = []string{"--set-json", tc.set}
		}
		for _, v := range list(path(helmTemplate(t, args...)["Deployment/rel-sluice"], "spec", "template", "spec", "volumes")) {
			if path(v, "name") != "data" {
				continue
			}
			delete(v.(obj), "name")
			if got := fmt.Sprint(v); got != tc.want {
				t.Errorf("data volume with %q: %s, want %s", tc.set, got, tc.want)
			}
		}
	}

	// A probe given with another handler replaces the default httpGet
	// (merged, the probe would have two handlers, which Kubernetes
	// refuses); its other fields keep their defaults.
	sidecarOf := func(objs map[string]obj) obj {
		for _, c := range list(path(objs["Deployment/rel-sluice"], "spec", "template", "spec", "initContainers")) {
			if path(c, "name") == "sluice" {
				return c.(obj)
			}
		}
		t.Fatal("no sluice sidecar in the Deployment")
		return nil
	}
	probes := sidecarOf(helmTemplate(t, "--set-json", `sluice.livenessProbe={"exec": {"command": ["true"]}}`, "--set-json", `sluice.readinessProbe={"tcpSocket": {"port": "admin"}}`))
	if p := path(probes, "livenessProbe"); path(p, "httpGet") != nil || path(p, "exec") == nil || path(p, "periodSeconds") != 10 {
		t.Errorf("livenessProbe given with exec: %v, want exec alone as the handler, periodSeconds 10 kept", p)
	}
	if p := path(probes, "readinessProbe"); path(p, "httpGet") != nil || path(p, "tcpSocket") == nil {
		t.Errorf("readinessProbe given with tcpSocket: %v, want tcpSocket alone as the handler", p)
	}
	if p := path(probes, "startupProbe"); path(p, "httpGet", "path") != "/healthz" {
		t.Errorf("startupProbe, not given: %v, want the default httpGet", p)
	}

	// A full name of 63 characters (the most a Service name may have)
	// still gives each object of a kind its own name: the seed Service
	// and the metrics Service were both cut back to the full name.
	long := strings.Repeat("s", 63)
	objs = helmTemplate(t, "--set", "fullnameOverride="+long, "--api-versions", "monitoring.coreos.com/v1")
	var services []string
	for name := range objs {
		if kind, n, _ := strings.Cut(name, "/"); kind == "Service" || kind == "ConfigMap" || kind == "Secret" {
			services = append(services, name)
			if len(n) > 63 {
				t.Errorf("%s: name longer than 63 characters", name)
			}
		}
	}
	for _, want := range []string{"Service/" + long[:57] + "-peers", "Service/" + long[:55] + "-metrics", "ConfigMap/" + long[:57] + "-rules", "Secret/" + long[:56] + "-gossip"} {
		if _, ok := objs[want]; !ok {
			t.Errorf("with a 63-character full name, no %s among %v", want, services)
		}
	}

	// Kubernetes 1.29 has native sidecars but not the sleep action: no
	// preStop pause, and a grace period without it.
	objs = helmTemplate(t, "--kube-version", "1.29.4")
	pod := path(objs["Deployment/rel-sluice"], "spec", "template", "spec")
	_, sidecar := checkSidecarPod(t, pod, objs["Service/rel-sluice-peers"], "rel-sluice-rules", "rel-sluice-gossip")
	if path(sidecar, "lifecycle", "preStop") != nil || path(pod, "terminationGracePeriodSeconds") != 25 {
		t.Errorf("on Kubernetes 1.29: preStop %v, grace period %v; want none and 25 s", path(sidecar, "lifecycle", "preStop"), path(pod, "terminationGracePeriodSeconds"))
	}

	out, err := runHelm(t, "template", "rel", chartDir, "--kube-version", "1.30.0", "--set", "terminationGracePeriodSeconds=5")
	if err == nil || !strings.Contains(string(out), "does not cover") {
		t.Fatalf("a grace period shorter than the shutdown was accepted:\n%s", out)
	}
	// values.schema.json refuses what the templates cannot render.
	out, err = runHelm(t, "template", "rel", chartDir, "--kube-version", "1.30.0", "--set", "sluice.api=grpc")
	if err == nil || !strings.Contains(string(out), "/sluice/api") {
		t.Fatalf("sluice.api=grpc was accepted:\n%s", out)
	}
}

// TestHelmLint runs helm lint on the chart.
func TestHelmLint(t *testing.T) {
	out, err := runHelm(t, "lint", "--strict", chartDir, "--kube-version", "1.30.0")
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func readChart(t *testing.T) obj {
	t.Helper()
	docs := readDocs(t, chartDir+"/Chart.yaml")
	return docs[0]
}

// kinds returns the kind/name of every object rendered.
func kinds(m map[string]obj) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
