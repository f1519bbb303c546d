package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluicerl/sluice/rules"
)

// The shipped deployment files are checked against the binary they
// configure: every SLUICE_* setting must parse as the node's options, and
// the pieces must fit together (the seed is the headless Service, the
// probes hit the admin port, the mounts are where the settings point).

type obj = map[string]any

// path walks nested maps by keys.
func path(o any, keys ...string) any {
	for _, k := range keys {
		m, ok := o.(obj)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func list(o any) []any { l, _ := o.([]any); return l }

func readDocs(t *testing.T, file string) []obj {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocs(t, file, data)
}

// decodeDocs decodes a stream of YAML documents named name.
func decodeDocs(t *testing.T, name string, data []byte) []obj {
	t.Helper()
	var docs []obj
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d obj
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

var envRef = regexp.MustCompile(`\$\(([A-Z_]+)\)`)

func TestKubernetesManifests(t *testing.T) {
	docs := readDocs(t, "../../deploy/kubernetes/sluice.yaml")
	byKind := map[string]obj{}
	for _, d := range docs {
		byKind[d["kind"].(string)] = d
	}
	svc, cm, dep := byKind["Service"], byKind["ConfigMap"], byKind["Deployment"]
	if svc == nil || cm == nil || dep == nil {
		t.Fatalf("want a Service, a ConfigMap and a Deployment; got %v", len(byKind))
	}
	// The seed name: headless, listing pods before they are ready.
	if path(svc, "spec", "clusterIP") != "None" || path(svc, "spec", "publishNotReadyAddresses") != true {
		t.Fatal("the seed Service must be headless with publishNotReadyAddresses")
	}
	labels := path(dep, "spec", "template", "metadata", "labels").(obj)
	for k, v := range path(svc, "spec", "selector").(obj) {
		if labels[k] != v {
			t.Fatalf("the Service selects %s=%v, which the pods do not carry", k, v)
		}
	}
	// The rules ConfigMap parses as rules.
	for name, body := range path(cm, "data").(obj) {
		if _, err := rules.Parse([]byte(body.(string))); err != nil {
			t.Fatalf("ConfigMap rules %s: %v", name, err)
		}
	}

	checkSidecarPod(t, path(dep, "spec", "template", "spec"), svc, path(cm, "metadata", "name").(string), "sluice-gossip")
}

// checkSidecarPod checks a pod spec that runs sluice as a native sidecar:
// its environment parses as the node's options, the seed is the headless
// Service seed, the gossip key comes from the Secret secret, the ports are
// those the node listens on, the probes hit the admin port, the rules are
// the ConfigMap rulesConfigMap, and an API socket is shared with the
// application. It returns the sidecar's options and its container.
func checkSidecarPod(t *testing.T, pod any, seed obj, rulesConfigMap, secret string) (options, obj) {
	t.Helper()
	var sidecar obj
	for _, c := range list(path(pod, "initContainers")) {
		if path(c, "name") == "sluice" {
			sidecar = c.(obj)
		}
	}
	if sidecar == nil || sidecar["restartPolicy"] != "Always" {
		t.Fatal("sluice must be a native sidecar: an init container with restartPolicy Always")
	}
	env := map[string]string{}
	for _, e := range list(sidecar["env"]) {
		name := path(e, "name").(string)
		switch {
		case path(e, "value") != nil:
			env[name] = envRef.ReplaceAllStringFunc(path(e, "value").(string), func(ref string) string {
				return env[envRef.FindStringSubmatch(ref)[1]]
			})
		case path(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name":
			env[name] = "demo-5d8f-x2x9q"
		case path(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.namespace":
			env[name] = "shop"
		case path(e, "valueFrom", "secretKeyRef", "name") == secret:
			env[name] = base64.StdEncoding.EncodeToString(make([]byte, 32)) // what the documented command makes
		default:
			t.Fatalf("env %s: a source the test does not know", name)
		}
	}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the sidecar's environment does not parse: %v", err)
	}
	if want := path(seed, "metadata", "name").(string) + ".shop.svc.cluster.local"; len(o.seeds) != 1 || o.seeds[0] != want {
		t.Fatalf("seed %v, want the headless Service %q", o.seeds, want)
	}
	if len(o.gossipKeys) == 0 || o.nodeName != "demo-5d8f-x2x9q" {
		t.Fatalf("gossip key %v, node name %q: want the Secret's key and the pod's name", o.gossipKeys, o.nodeName)
	}
	// Ports: gossip (TCP and UDP) and peer as the node listens; probes on
	// the admin port, which listens beyond loopback.
	ports := map[string]string{} // name → "port/proto"
	for _, p := range list(sidecar["ports"]) {
		ports[path(p, "name").(string)] = strconv.Itoa(path(p, "containerPort").(int)) + "/" + path(p, "protocol").(string)
	}
	_, gossipPort, _ := net.SplitHostPort(o.gossipAddr)
	_, peerPort, _ := net.SplitHostPort(o.peerAddr)
	adminHost, adminPort, _ := net.SplitHostPort(o.adminAddr)
	for name, want := range map[string]string{"gossip-tcp": gossipPort + "/TCP", "gossip-udp": gossipPort + "/UDP", "peer": peerPort + "/TCP", "admin": adminPort + "/TCP"} {
		if ports[name] != want {
			t.Errorf("port %s is %q, want %q", name, ports[name], want)
		}
	}
	if adminHost != "0.0.0.0" {
		t.Errorf("the admin port listens on %q: probes from the kubelet cannot reach it", adminHost)
	}
	for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		if path(sidecar, probe, "httpGet", "path") != want || path(sidecar, probe, "httpGet", "port") != "admin" {
			t.Errorf("%s: want GET %s on the admin port", probe, want)
		}
	}
	// Mounts are where the settings point, and the rules come from the
	// ConfigMap.
	mounts := map[string]string{}
	for _, m := range list(sidecar["volumeMounts"]) {
		mounts[path(m, "mountPath").(string)] = path(m, "name").(string)
	}
	volumes := map[string]any{}
	for _, v := range list(path(pod, "volumes")) {
		volumes[path(v, "name").(string)] = v
	}
	if v := volumes[mounts[o.rulesPath]]; path(v, "configMap", "name") != rulesConfigMap {
		t.Errorf("--rules %s is not the ConfigMap's mount", o.rulesPath)
	}
	if volumes[mounts[o.dataDir]] == nil {
		t.Errorf("--data-dir %s is not a mounted volume (the root file system is read-only)", o.dataDir)
	}
	// An API on a Unix socket is in a volume the application mounts at
	// the same place, and the application is told to use it.
	if sock, ok := strings.CutPrefix(o.httpAddr, "unix:"); ok {
		dir := filepath.Dir(sock)
		if volumes[mounts[dir]] == nil {
			t.Errorf("--http-addr %s: %s is not a mounted volume", o.httpAddr, dir)
		}
		shared := false
		for _, c := range list(path(pod, "containers")) {
			for _, m := range list(path(c, "volumeMounts")) {
				if path(m, "mountPath") == dir && path(m, "name") == mounts[dir] {
					shared = true
				}
			}
			if cmd := expandEnv(c, fmt.Sprint(path(c, "command"))); !strings.Contains(cmd, "unix:"+sock) {
				t.Errorf("the application (%s) is not pointed at the socket %s", cmd, sock)
			}
		}
		if !shared {
			t.Errorf("the socket's volume %q is not mounted at %s in the application", mounts[dir], dir)
		}
	}
	if path(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("the pod must run as non-root")
	}
	return o, sidecar
}

// expandEnv replaces $(NAME) in s with the value of NAME in container c's
// environment, as the kubelet does in a command.
func expandEnv(c any, s string) string {
	env := map[string]string{}
	for _, e := range list(path(c, "env")) {
		if v, ok := path(e, "value").(string); ok {
			env[path(e, "name").(string)] = v
		}
	}
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[envRef.FindStringSubmatch(ref)[1]]; ok {
			return v
		}
		return ref
	})
}

// TestComposeFile checks the compose fleet's sidecar settings the same way.
func TestComposeFile(t *testing.T) {
	docs := readDocs(t, "../../deploy/compose/docker-compose.yml")
	sidecar := path(docs[0], "x-sidecar", "environment").(obj)
	env := map[string]string{}
	for k, v := range sidecar {
		env[k] = v.(string)
	}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the sidecars' environment does not parse: %v", err)
	}
	if len(o.gossipKeys) != 1 || len(o.seeds) != 1 || o.seeds[0] != "sluice" {
		t.Fatalf("seeds %v, keys %d: want the network alias and one key", o.seeds, len(o.gossipKeys))
	}
	gc, err := gossipConfig(o, nil)
	if err != nil {
		t.Fatalf("gossip settings: %v", err)
	}
	if n := len(gc.Keys[0]); n != 16 && n != 24 && n != 32 {
		t.Fatalf("the gossip key is %d bytes; AES wants 16, 24 or 32", n)
	}
	if _, err := rules.Load("../../deploy/compose/rules"); err != nil {
		t.Fatalf("compose rules: %v", err)
	}
}
