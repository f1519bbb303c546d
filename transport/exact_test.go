package transport_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/transport"
)

// TestInputErrorMessages pins the exact answer to a duplicate field and to
// invalid UTF-8, on every endpoint that decodes JSON.
func TestInputErrorMessages(t *testing.T) {
	api, _ := newRulesAPI(t, t.TempDir())
	for _, tc := range []struct {
		name, method, target, body, want string
	}{
		{"the report in issue 17", "POST", "/v1/check", `{"key":"p","limit":10,"period":"1m","limit":1000000}`, "limit: given twice"},
		{"raw invalid byte", "POST", "/v1/check", "{\"key\": \"\xff\", \"limit\": 1, \"period\": \"1s\"}", "key: must be valid UTF-8"},
		{"lone surrogate escape", "POST", "/v1/check", `{"key": "\ud800", "limit": 1, "period": "1s"}`, "key: must be valid UTF-8"},
		{"high surrogate, then not a low one", "POST", "/v1/check", `{"key": "\ud800\u0041", "limit": 1, "period": "1s"}`, "key: must be valid UTF-8"},
		{"two high surrogates", "POST", "/v1/check", `{"key": "\ud800\ud800\udc00", "limit": 1, "period": "1s"}`, "key: must be valid UTF-8"},
		{"descriptor name", "POST", "/v1/check", "{\"descriptors\": {\"\xfe\": \"1\"}}", "descriptors: a name must be valid UTF-8"},
		{"GET", "GET", "/v1/check?key=%FF&limit=1&period=1s", "", "key: must be valid UTF-8"},
		{"GET descriptor", "GET", "/v1/check?descriptor=user:%FE", "", "descriptor: must be valid UTF-8"},
		{"GET parameter name", "GET", "/v1/check?%FF=1", "", "query: parameter names must be valid UTF-8"},
		{"GET control character in a parameter name", "GET", "/v1/check?%01=1", "", "\x01: unknown parameter"},
		{"control character in a field name", "POST", "/v1/check", `{"key": "k", "limit": 1, "period": "1s", "\u0001\ud83d\ude00": 1}`, "\x01\U0001F600: unknown field"},
		{"wait", "POST", "/v1/wait", `{"key": "k", "limit": 1, "period": "1s", "max_wait": "1s", "max_wait": "0s"}`, "max_wait: given twice"},
		{"batch", "POST", "/v1/check/batch", `{"checks": [{"key": "k", "limit": 1, "period": "1s"}, {"key": "k", "limit": 1, "period": "1s", "limit": 9}]}`, "checks[1].limit: given twice"},
		{"batch, in capitals", "POST", "/v1/check/batch", `{"checks": [{"KEY": "k", "limit": 1, "period": "1s"}]}`, "checks[0].KEY: unknown field"},
		{"a large descriptor map", "POST", "/v1/check", `{"descriptors": {` + manyNames(40) + `, "d7": "again"}}`, "descriptors.d7: given twice"},
		{"rules PUT", "PUT", "/v1/rules/x", `{"limit": 1, "period": "1s", "limit": 1000}`, "limit: given twice"},
		{"rules PUT, a list", "PUT", "/v1/rules", `{"rules": [{"name": "x", "limit": 1, "period": "1s"}, {"name": "y", "limit": 1, "period": "1s", "name": "z"}]}`, "rules[1].name: given twice"},
		{"rules PUT, a descriptor", "PUT", "/v1/rules/x", "{\"limit\": 1, \"period\": \"1s\", \"descriptors\": [{\"key\": \"user\", \"value\": \"\xff\"}]}", "descriptors[0].value: must be valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, api, tc.method, tc.target, tc.body)
			if r.code != 400 || r.body["error"] != tc.want {
				t.Fatalf("%d %s, want 400 {\"error\": %q}", r.code, r.raw, tc.want)
			}
		})
	}
	if got := listed(t, api); got["x"] != nil || got["y"] != nil || got["z"] != nil {
		t.Fatalf("a refused PUT set rules: %v", got)
	}
}

// manyNames returns n descriptor entries "d0": "0", "d1": "1", ...
func manyNames(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := json.Marshal(i)
		b.WriteString(`"d` + string(v) + `": "` + string(v) + `"`)
	}
	return b.String()
}

// TestReplacementCharacterIsAKey: U+FFFD, written raw or escaped, is a key
// like any other, one bucket for both spellings, apart from every other
// key; invalid UTF-8, which encoding/json turns into U+FFFD, is refused
// and does not spend from that bucket.
func TestReplacementCharacterIsAKey(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	check := func(key string) response {
		return do(t, h, "POST", "/v1/check", `{"key": "`+key+`", "limit": 1, "period": "1h"}`)
	}
	for _, bad := range []string{"\xff", "\xfe", `\ud800`, `\udfff`, "\xed\xa0\x80"} {
		if r := check(bad); r.code != 400 {
			t.Fatalf("key %q: %d %s, want 400", bad, r.code, r.raw)
		}
	}
	if r := check(`\ufffd`); r.code != 200 {
		t.Fatalf("U+FFFD escaped, first: %d %s", r.code, r.raw)
	}
	if r := check("\xef\xbf\xbd"); r.code != 429 {
		t.Fatalf("U+FFFD raw, the same key: %d %s, want 429", r.code, r.raw)
	}
	for _, other := range []string{`\ud83d\ude00`, "\U0001F600x", "?"} {
		if r := check(other); r.code != 200 {
			t.Fatalf("key %q is not U+FFFD's bucket: %d %s", other, r.code, r.raw)
		}
	}
	if r := do(t, h, "GET", "/v1/check?key=%EF%BF%BD&limit=1&period=1h", ""); r.code != 429 {
		t.Fatalf("U+FFFD in a query, the same key: %d %s, want 429", r.code, r.raw)
	}
}

// TestKeyringStrictJSON: the keyring endpoint refuses a key given twice
// (the last one would otherwise be installed) and invalid UTF-8.
func TestKeyringStrictJSON(t *testing.T) {
	key := []byte("keyring-strict-json-test-32-byte")
	node := clusterNode(t, key)
	h := fromLoopback(transport.NewAdmin(transport.AdminConfig{Ready: node.Ready, Gatherer: prometheus.NewRegistry(), Keyring: node}))
	other := base64.StdEncoding.EncodeToString([]byte("keyring-strict-json-other-32-byt"))
	for _, tc := range []struct{ body, want string }{
		{`{"key": "not a key", "key": "` + other + `"}`, "key: given twice"},
		{"{\"key\": \"\xff" + other + "\"}", "key: must be valid UTF-8"},
	} {
		if r := do(t, h, "POST", "/v1/keyring/install", tc.body); r.code != 400 || r.body["error"] != tc.want {
			t.Fatalf("install %q: %d %s, want 400 {\"error\": %q}", tc.body, r.code, r.raw, tc.want)
		}
	}
	if keys, _ := node.Keys(); len(keys) != 1 {
		t.Fatalf("a refused install changed the keyring: %d keys", len(keys))
	}
}
