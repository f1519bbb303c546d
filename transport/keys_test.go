package transport_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/transport"
)

// newAdmin returns the admin handler of a standalone node with the test
// rules, and the node.
func newAdmin(t *testing.T, token string) (http.Handler, *cluster.Node) {
	t.Helper()
	node := newNode(t, cluster.Config{})
	return transport.NewAdmin(transport.AdminConfig{Ready: func() bool { return true }, Gatherer: prometheus.NewRegistry(),
		Status: node, Keys: node, Token: token, Version: "v1.2.3"}), node
}

// adminDo sends a request to h from remote, with an Authorization header
// if auth is set, and returns the status and decoded body.
func adminDo(t *testing.T, h http.Handler, method, target, body, remote, auth string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = remote
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var v map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, target, w.Code, w.Body)
	}
	return w.Code, v
}

const loopback, remote = "127.0.0.1:50000", "192.0.2.7:50000"

// TestKeyEndpointsGuard: without a token, the key endpoints answer
// loopback clients only; with one, they require it from everyone.
func TestKeyEndpointsGuard(t *testing.T) {
	open, _ := newAdmin(t, "")
	locked, _ := newAdmin(t, "s3cret")
	for _, path := range []string{"/v1/keys/inspect?rule=api&key=a", "/debug/top-denied"} {
		if code, body := adminDo(t, open, "GET", path, "", loopback, ""); code != 200 {
			t.Errorf("%s from loopback, no token set: %d %v", path, code, body)
		}
		if code, body := adminDo(t, open, "GET", path, "", remote, ""); code != 403 || !strings.Contains(body["error"].(string), "--admin-token") {
			t.Errorf("%s from the network, no token set: %d %v, want 403 naming --admin-token", path, code, body)
		}
		for _, auth := range []string{"", "Bearer wrong", "s3cret"} {
			if code, body := adminDo(t, locked, "GET", path, "", loopback, auth); code != 401 {
				t.Errorf("%s with Authorization %q: %d %v, want 401", path, auth, code, body)
			}
		}
		for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret"} {
			if code, body := adminDo(t, locked, "GET", path, "", remote, auth); code != 200 {
				t.Errorf("%s from the network with %q: %d %v", path, auth, code, body)
			}
		}
		if code, body := adminDo(t, locked, "GET", path, "", remote, "Basic s3cret"); code != 401 {
			t.Errorf("%s with another scheme: %d %v, want 401", path, code, body)
		}
	}
	if code, body := adminDo(t, open, "POST", "/v1/keys/reset", `{"rule": "api", "key": "a"}`, remote, ""); code != 403 {
		t.Errorf("reset from the network, no token set: %d %v", code, body)
	}
}

// fromLoopback serves h as if every request came from a loopback client.
func fromLoopback(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = loopback
		h.ServeHTTP(w, r)
	})
}

// TestAdminSecretsGuarded: the keyring (which hands out the gossip key,
// and lets a caller replace it) and the profiler (whose cmdline shows
// --gossip-key and --admin-token) are guarded as the key endpoints are:
// loopback clients only without a token, the token's holders with one.
func TestAdminSecretsGuarded(t *testing.T) {
	node := clusterNode(t, []byte("admin-secrets-guard-test-32-byte"))
	newH := func(token string) http.Handler {
		return transport.NewAdmin(transport.AdminConfig{Ready: node.Ready, Gatherer: prometheus.NewRegistry(), Keyring: node, Token: token})
	}
	open, locked := newH(""), newH("s3cret")
	other := `{"key": "` + base64.StdEncoding.EncodeToString([]byte("admin-secrets-guard-othr-32-byte")) + `"}`
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/keyring", ""},
		{"POST", "/v1/keyring/install", other},
		{"POST", "/v1/keyring/use", other},
		{"GET", "/debug/pprof/cmdline", ""},
		{"GET", "/debug/pprof/", ""},
		{"GET", "/debug/pprof/goroutine?debug=1", ""},
	} {
		send := func(h http.Handler, remote, auth string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			r.RemoteAddr = remote
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		if w := send(open, remote, ""); w.Code != 403 || strings.Contains(w.Body.String(), "admin-secrets") {
			t.Errorf("%s %s from the network, no token set: %d %q, want 403", tc.method, tc.path, w.Code, w.Body)
		}
		if w := send(locked, loopback, "Bearer wrong"); w.Code != 401 {
			t.Errorf("%s %s with a wrong token: %d %q, want 401", tc.method, tc.path, w.Code, w.Body)
		}
		if tc.method == "GET" {
			if w := send(open, loopback, ""); w.Code != 200 {
				t.Errorf("%s %s from loopback: %d %q", tc.method, tc.path, w.Code, w.Body)
			}
			if w := send(locked, remote, "Bearer s3cret"); w.Code != 200 {
				t.Errorf("%s %s from the network with the token: %d %q", tc.method, tc.path, w.Code, w.Body)
			}
		}
	}
	if keys, _ := node.Keys(); len(keys) != 1 {
		t.Fatalf("a refused install changed the keyring: %d keys", len(keys))
	}
}

// TestKeyEndpoints inspects a spent key, finds it among the top denied
// keys and in the status, resets it; bad input is a 400 naming the field
// and changes nothing.
func TestKeyEndpoints(t *testing.T) {
	h, node := newAdmin(t, "")
	for range 4 {
		node.Check(t.Context(), &cluster.Request{Rule: "api", Key: "alice", Cost: 1})
	}
	code, in := adminDo(t, h, "GET", "/v1/keys/inspect?rule=api&key=alice", "", loopback, "")
	if code != 200 || in["remaining"] != 0.0 || in["rule"] != "api" || in["limit"] != 3.0 || in["route"] != "gossip" {
		t.Fatalf("inspect: %d %v", code, in)
	}
	code, top := adminDo(t, h, "GET", "/debug/top-denied?n=5", "", loopback, "")
	keys, _ := top["keys"].([]any)
	if code != 200 || len(keys) != 1 || keys[0].(map[string]any)["key"] != "alice" || keys[0].(map[string]any)["denied"] != 1.0 {
		t.Fatalf("top denied: %d %v", code, top)
	}
	code, st := adminDo(t, h, "GET", "/v1/status", "", loopback, "")
	if denied, _ := st["top_denied"].([]any); code != 200 || len(denied) != 1 || st["version"] != "v1.2.3" || st["keys_hidden"] != nil {
		t.Fatalf("status: %d %v, want alice among top_denied and the version", code, st)
	}
	// From the network, the status shows no keys: they would go around
	// the guard of /debug/top-denied.
	code, st = adminDo(t, h, "GET", "/v1/status", "", remote, "")
	if denied, _ := st["top_denied"].([]any); code != 200 || len(denied) != 0 || len(st["hot_keys"].([]any)) != 0 || st["keys_hidden"] != true || st["version"] != "v1.2.3" {
		t.Fatalf("status from the network: %d %v, want no keys, keys_hidden and the version", code, st)
	}
	for _, tc := range []struct{ method, target, body, field string }{
		{"GET", "/v1/keys/inspect?rule=api", "", "key"},
		{"GET", "/v1/keys/inspect?rule=nope&key=alice", "", "rule"},
		{"GET", "/v1/keys/inspect?rule=api&key=alice&cost=1", "", "cost"},
		{"GET", "/v1/keys/inspect?limit=x&key=alice", "", "limit"},
		{"GET", "/v1/keys/inspect?key=alice&bogus=1", "", "bogus"},
		{"GET", "/debug/top-denied?n=0", "", "n"},
		{"GET", "/debug/top-denied?n=many", "", "n"},
		{"POST", "/v1/keys/reset", `{"rule": "api"}`, "key"},
		{"POST", "/v1/keys/reset", `{"rule": "api", "key": "alice", "cost": 1}`, "cost"},
		{"POST", "/v1/keys/reset", `{"rule": "api", "key": "alice", "max_wait": "1s"}`, "max_wait"},
		{"POST", "/v1/keys/reset", `{"rule": "api", "kye": "alice"}`, "kye"},
		{"POST", "/v1/keys/reset", `{"rule": "api", "key": "alice", "sync": "sideways"}`, "sync"},
		{"POST", "/v1/keys/reset", `{"rule": 7, "key": "alice"}`, "rule"},
		{"POST", "/v1/keys/reset", `not json`, ""},
	} {
		code, body := adminDo(t, h, tc.method, tc.target, tc.body, loopback, "")
		msg, _ := body["error"].(string)
		if code != 400 || !strings.HasPrefix(msg, tc.field) {
			t.Errorf("%s %s %s: %d %v, want 400 naming %q", tc.method, tc.target, tc.body, code, body, tc.field)
		}
	}
	if _, in := adminDo(t, h, "GET", "/v1/keys/inspect?rule=api&key=alice", "", loopback, ""); in["remaining"] != 0.0 {
		t.Fatalf("bad requests changed the bucket: %v", in)
	}
	code, rep := adminDo(t, h, "POST", "/v1/keys/reset", `{"rule": "api", "key": "alice"}`, loopback, "")
	if code != 200 || rep["complete"] != true {
		t.Fatalf("reset: %d %v", code, rep)
	}
	if _, in := adminDo(t, h, "GET", "/v1/keys/inspect?rule=api&key=alice", "", loopback, ""); in["remaining"] != 3.0 {
		t.Fatalf("after the reset: %v, want a full bucket", in)
	}
}

// TestKeyEndpointsOverUnixSocket: with no token, a client on the admin
// port's Unix socket is let through (the socket's file mode says who may
// connect), as a loopback client is.
func TestKeyEndpointsOverUnixSocket(t *testing.T) {
	h, _ := newAdmin(t, "")
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := transport.Listen("unix:"+path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://sluice/debug/top-denied")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("over the Unix socket, no token set: %d, want 200", resp.StatusCode)
	}
}
