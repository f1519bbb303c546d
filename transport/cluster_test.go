package transport_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// clusterNode starts a real node gossiping on loopback with one key.
func clusterNode(t *testing.T, key []byte) *cluster.Node {
	t.Helper()
	node, err := cluster.New(cluster.Config{
		Metrics: prometheus.NewRegistry(),
		Gossip:  &gossip.Config{Name: "node-a", BindAddr: "127.0.0.1:0", Keys: [][]byte{key}},
		Peers:   transport.NewPeerClient(transport.PeerClientConfig{}), // alone: never called
	})
	if err != nil {
		t.Fatal(err)
	}
	node.SetRules(&rules.Set{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return node
}

func TestClusterEndpoint(t *testing.T) {
	node := clusterNode(t, []byte("cluster-endpoint-test-key-32-b!!"))
	h := transport.NewServer(transport.ServerConfig{Limiter: node, Membership: node, Registerer: prometheus.NewRegistry()})
	r := do(t, h, "GET", "/v1/cluster", "")
	if r.code != 200 || r.body["self"] != "node-a" {
		t.Fatalf("/v1/cluster: %d %s", r.code, r.raw)
	}
	members := r.body["members"].([]any)
	m := members[0].(map[string]any)
	if len(members) != 1 || m["name"] != "node-a" || m["state"] != "alive" || m["self"] != true || m["incarnation"] == nil {
		t.Fatalf("members: %s", r.raw)
	}
	if counts := r.body["counts"].(map[string]any); counts["alive"] != 1.0 {
		t.Fatalf("counts: %s", r.raw)
	}
}

func TestKeyringEndpoints(t *testing.T) {
	oldKey := []byte("keyring-endpoint-old-key-32-byte")
	newKey := []byte("keyring-endpoint-new-key-32-byte")
	node := clusterNode(t, oldKey)
	h := fromLoopback(transport.NewAdmin(transport.AdminConfig{Ready: node.Ready, Gatherer: prometheus.NewRegistry(), Keyring: node}))
	b64 := base64.StdEncoding.EncodeToString
	body := func(k []byte) string { return `{"key": "` + b64(k) + `"}` }

	for _, step := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/keyring/remove", body(oldKey), 400}, // the key in use cannot be removed
		{"POST", "/v1/keyring/install", `{"key": "not base64!"}`, 400},
		{"POST", "/v1/keyring/install", `{"key": "` + b64([]byte("short")) + `"}`, 400},
		{"POST", "/v1/keyring/rotate", body(newKey), 404},
		{"POST", "/v1/keyring/install", `{"key": "x", "extra": 1}`, 400},
		{"POST", "/v1/keyring/install", body(newKey), 200},
		{"POST", "/v1/keyring/use", body(newKey), 200},
		{"POST", "/v1/keyring/remove", body(oldKey), 200},
	} {
		r := do(t, h, step.method, step.path, step.body)
		if r.code != step.code {
			t.Fatalf("%s %s %s: %d %s, want %d", step.method, step.path, step.body, r.code, r.raw, step.code)
		}
		if step.code != 200 && r.body["error"] == nil {
			t.Fatalf("%s %s: no error message: %s", step.method, step.path, r.raw)
		}
	}
	r := do(t, h, "GET", "/v1/keyring", "")
	keys := r.body["keys"].([]any)
	if r.code != 200 || r.body["primary"] != b64(newKey) || len(keys) != 1 {
		t.Fatalf("keyring after rotation: %s", r.raw)
	}
}

func TestKeyringWithoutEncryption(t *testing.T) {
	node, err := cluster.New(cluster.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := fromLoopback(transport.NewAdmin(transport.AdminConfig{Ready: node.Ready, Gatherer: prometheus.NewRegistry(), Keyring: node}))
	if r := do(t, h, "GET", "/v1/keyring", ""); r.code != http.StatusConflict {
		t.Fatalf("keyring of an unencrypted node: %d %s", r.code, r.raw)
	}
}
