package transport_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

const testRules = `
rules:
  - {name: api, limit: 3, period: 1m}
  - {name: per-user, limit: 2, period: 1s, sync: owner, descriptors: [{key: route, value: /api}, {key: user}]}
  - {name: windowed, limit: 3, period: 1m, algorithm: fixed_window}
  - {name: exact, limit: 3, period: 1m, algorithm: sliding_window_log}
`

func newAPI(t *testing.T, cfg transport.ServerConfig) http.Handler {
	t.Helper()
	cfg.Limiter = newNode(t, cluster.Config{})
	cfg.Registerer = prometheus.NewRegistry()
	return transport.NewServer(cfg)
}

// newNode returns a standalone node with the test rules loaded.
func newNode(t *testing.T, cfg cluster.Config) *cluster.Node {
	t.Helper()
	node, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Parse([]byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	node.SetRules(set)
	return node
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, h http.Handler, method, target, body string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, target, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return r
}

func num(r response, field string) int64 {
	v, _ := r.body[field].(float64)
	return int64(v)
}

func TestCheckInline(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	body := `{"key": "alice", "limit": 2, "period": "1m"}`
	for i, want := range []int{200, 200, 429, 429} {
		r := do(t, h, "POST", "/v1/check", body)
		if r.code != want {
			t.Fatalf("check %d: status %d, want %d: %s", i, r.code, want, r.raw)
		}
		if got := r.header.Get("Ratelimit-Policy"); got != `"inline";q=2;w=60` {
			t.Fatalf("RateLimit-Policy %q", got)
		}
		if want == 429 {
			if r.body["allowed"] != false || num(r, "retry_after_ms") <= 0 || r.header.Get("Retry-After") != "30" {
				t.Fatalf("denial: %s, Retry-After %q", r.raw, r.header.Get("Retry-After"))
			}
		}
	}
	r := do(t, h, "POST", "/v1/check", `{"key": "bob", "limit": 2, "period": "1m"}`)
	if r.code != 200 || num(r, "remaining") != 1 || num(r, "limit") != 2 || num(r, "burst") != 2 || r.body["sync"] != "auto" {
		t.Fatalf("another key: %s", r.raw)
	}
	if got := r.header.Get("Ratelimit"); got != `"inline";r=1;t=30` {
		t.Fatalf("RateLimit %q", got)
	}
}

func TestCheckNamedRuleAndDescriptors(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	r := do(t, h, "POST", "/v1/check", `{"rule": "api", "key": "k", "cost": 3}`)
	if r.code != 200 || r.body["rule"] != "api" || num(r, "remaining") != 0 {
		t.Fatalf("named rule: %s", r.raw)
	}
	if r := do(t, h, "POST", "/v1/check", `{"rule": "api", "key": "k"}`); r.code != 429 {
		t.Fatalf("named rule exhausted: %s", r.raw)
	}
	desc := `{"descriptors": {"route": "/api", "user": "42"}}`
	for i, want := range []int{200, 200, 429} {
		r := do(t, h, "POST", "/v1/check", desc)
		if r.code != want || r.body["rule"] != "per-user" || r.body["sync"] != "owner" {
			t.Fatalf("descriptors %d: %d %s", i, r.code, r.raw)
		}
	}
	if r := do(t, h, "POST", "/v1/check", `{"descriptors": {"route": "/api", "user": "43"}, "sync": "local"}`); r.code != 200 || r.body["sync"] != "local" {
		t.Fatalf("other user, sync overridden: %s", r.raw)
	}
}

func TestCheckCostAboveBurst(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	r := do(t, h, "POST", "/v1/check", `{"key": "k", "limit": 5, "period": "1s", "cost": 6}`)
	if r.code != 429 || r.body["reason"] != "cost exceeds burst" || r.header.Get("Retry-After") != "" {
		t.Fatalf("cost above burst: %d %s, Retry-After %q", r.code, r.raw, r.header.Get("Retry-After"))
	}
}

func TestCheckGet(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{DenyStatus: http.StatusForbidden})
	target := "/v1/check?key=alice&limit=1&period=1s"
	if r := do(t, h, "GET", target, ""); r.code != 200 {
		t.Fatalf("GET: %s", r.raw)
	}
	if r := do(t, h, "GET", target, ""); r.code != 403 {
		t.Fatalf("GET with deny status 403: %d %s", r.code, r.raw)
	}
	r := do(t, h, "GET", "/v1/check?descriptor=route:/api&descriptor=user:7", "")
	if r.code != 200 || r.body["rule"] != "per-user" {
		t.Fatalf("GET with descriptors: %s", r.raw)
	}
	if r := do(t, h, "GET", "/v1/check?rule=api&key=x&cost=2", ""); r.code != 200 || num(r, "remaining") != 1 {
		t.Fatalf("GET named rule with cost: %s", r.raw)
	}
}

// TestBadInput checks that each kind of bad input is a 400 naming the field
// and that it changes no state: the key it names is still full afterwards.
func TestBadInput(t *testing.T) {
	for _, tc := range badInputs {
		t.Run(tc.name, func(t *testing.T) {
			h := newAPI(t, transport.ServerConfig{})
			r := do(t, h, tc.method, tc.target, tc.body)
			msg, _ := r.body["error"].(string)
			if r.code != 400 || !strings.HasPrefix(msg, tc.field+":") {
				t.Fatalf("status %d, error %q; want 400 naming %q", r.code, msg, tc.field)
			}
			after := do(t, h, "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "cost": 0}`)
			if num(after, "remaining") != 1 {
				t.Fatalf("bad input changed state: %s", after.raw)
			}
		})
	}
}

// badInput is a request the API refuses with a 400 naming field.
type badInput struct {
	name, method, target, body, field string
}

// badInputs are the bad requests of TestBadInput; TestMsgpackBadInput
// sends each POST body again in msgpack.
var badInputs = func() []badInput {
	long := strings.Repeat("k", transport.MaxKeyBytes+1)
	return []badInput{
		{"malformed", "POST", "/v1/check", `{"key": "victim", "limit": 1,`, "body"},
		{"empty", "POST", "/v1/check", ``, "body"},
		{"not an object", "POST", "/v1/check", `[1]`, "body"},
		{"trailing", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s"} {}`, "body"},
		{"missing key", "POST", "/v1/check", `{"limit": 1, "period": "1s"}`, "key"},
		{"key too long", "POST", "/v1/check", `{"key": "` + long + `", "limit": 1, "period": "1s"}`, "key"},
		{"no limit", "POST", "/v1/check", `{"key": "victim"}`, "limit"},
		{"zero limit", "POST", "/v1/check", `{"key": "victim", "limit": 0, "period": "1s"}`, "limit"},
		{"negative limit", "POST", "/v1/check", `{"key": "victim", "limit": -1, "period": "1s"}`, "limit"},
		{"string limit", "POST", "/v1/check", `{"key": "victim", "limit": "5", "period": "1s"}`, "limit"},
		{"fractional limit", "POST", "/v1/check", `{"key": "victim", "limit": 1.5, "period": "1s"}`, "limit"},
		{"no period", "POST", "/v1/check", `{"key": "victim", "limit": 1}`, "period"},
		{"bad period", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "soon"}`, "period"},
		{"tiny period", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1us"}`, "period"},
		{"zero burst", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "burst": 0}`, "burst"},
		{"negative cost", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "cost": -1}`, "cost"},
		{"unknown sync", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "sync": "strong"}`, "sync"},
		{"unknown algorithm", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "algorithm": "gcra"}`, "algorithm"},
		{"burst on a window", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "burst": 2, "algorithm": "fixed_window"}`, "burst"},
		{"log too long", "POST", "/v1/check", `{"key": "victim", "limit": 100001, "period": "1s", "algorithm": "sliding_window_log"}`, "limit"},
		{"log by gossip", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "algorithm": "sliding_window_log", "sync": "gossip"}`, "sync"},
		{"log rule by gossip", "POST", "/v1/check", `{"rule": "exact", "key": "victim", "sync": "gossip"}`, "sync"},
		{"wait on a window", "POST", "/v1/wait", `{"key": "victim", "limit": 1, "period": "1s", "algorithm": "sliding_window", "max_wait": "1s"}`, "algorithm"},
		{"wait on a window rule", "POST", "/v1/wait", `{"rule": "windowed", "key": "victim", "max_wait": "1s"}`, "algorithm"},
		{"algorithm with rule", "POST", "/v1/check", `{"rule": "api", "key": "victim", "algorithm": "fixed_window"}`, "algorithm"},
		{"unknown field", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "limt": 2}`, "limt"},
		{"unknown rule", "POST", "/v1/check", `{"rule": "nope", "key": "victim"}`, "rule"},
		{"rule and limit", "POST", "/v1/check", `{"rule": "api", "key": "victim", "limit": 1}`, "limit"},
		{"period with rule", "POST", "/v1/check", `{"rule": "api", "key": "victim", "period": "1s"}`, "period"},
		{"no rule matches", "POST", "/v1/check", `{"descriptors": {"route": "/other"}}`, "descriptors"},
		{"key with descriptors", "POST", "/v1/check", `{"descriptors": {"route": "/api", "user": "1"}, "key": "victim"}`, "key"},
		{"max_wait on check", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "max_wait": "1s"}`, "max_wait"},
		{"GET unknown parameter", "GET", "/v1/check?key=victim&limit=1&period=1s&x=1", "", "x"},
		{"GET bad limit", "GET", "/v1/check?key=victim&limit=ten&period=1s", "", "limit"},
		{"GET repeated key", "GET", "/v1/check?key=victim&key=other&limit=1&period=1s", "", "key"},
		{"wait without max_wait", "POST", "/v1/wait", `{"key": "victim", "limit": 1, "period": "1s"}`, "max_wait"},
		{"wait max_wait too long", "POST", "/v1/wait", `{"key": "victim", "limit": 1, "period": "1s", "max_wait": "1h"}`, "max_wait"},
		{"batch empty", "POST", "/v1/check/batch", `{"checks": []}`, "checks"},
		{"batch bad item", "POST", "/v1/check/batch", `{"checks": [{"key": "victim", "limit": 1, "period": "1s"}, {"key": "x", "limit": 0, "period": "1s"}]}`, "checks[1].limit"},
		{"batch unknown rule", "POST", "/v1/check/batch", `{"checks": [{"key": "victim", "limit": 1, "period": "1s"}, {"rule": "nope", "key": "x"}]}`, "checks[1].rule"},
		{"key not UTF-8", "POST", "/v1/check", "{\"key\": \"victim\xff\", \"limit\": 1, \"period\": \"1s\"}", "key"},
		{"key a lone surrogate", "POST", "/v1/check", `{"key": "victim\ud800", "limit": 1, "period": "1s"}`, "key"},
		{"key a lone low surrogate", "POST", "/v1/check", `{"key": "\udc00victim", "limit": 1, "period": "1s"}`, "key"},
		{"key a surrogate encoded in UTF-8", "POST", "/v1/check", "{\"key\": \"\xed\xa0\x80\", \"limit\": 1, \"period\": \"1s\"}", "key"},
		{"rule not UTF-8", "POST", "/v1/check", "{\"rule\": \"api\xfe\", \"key\": \"victim\"}", "rule"},
		{"period not UTF-8", "POST", "/v1/check", "{\"key\": \"victim\", \"limit\": 1, \"period\": \"1s\xff\"}", "period"},
		{"descriptor value not UTF-8", "POST", "/v1/check", "{\"descriptors\": {\"route\": \"/api\", \"user\": \"\xff\"}}", "descriptors.user"},
		{"descriptor name not UTF-8", "POST", "/v1/check", "{\"descriptors\": {\"route\": \"/api\", \"\xff\": \"1\"}}", "descriptors"},
		{"field name not UTF-8", "POST", "/v1/check", "{\"key\": \"victim\", \"limit\": 1, \"period\": \"1s\", \"\xff\": 1}", "body"},
		{"GET key not UTF-8", "GET", "/v1/check?key=victim%FF&limit=1&period=1s", "", "key"},
		{"GET descriptor not UTF-8", "GET", "/v1/check?descriptor=route:/api&descriptor=user:%FF", "", "descriptor"},
		{"GET a parameter that does not decode", "GET", "/v1/check?key=victim&limit=1&period=1s&limit=%zz", "", "query"},
		{"GET parameter name not UTF-8", "GET", "/v1/check?key=victim&limit=1&period=1s&%FF=1", "", "query"},
		{"limit twice", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "limit": 1000000}`, "limit"},
		{"limit twice, once escaped", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "\u006cimit": 1000000}`, "limit"},
		{"limit in capitals", "POST", "/v1/check", `{"key": "victim", "limit": 1, "period": "1s", "LIMIT": 1000000}`, "LIMIT"},
		{"key twice", "POST", "/v1/check", `{"key": "other", "limit": 1, "period": "1s", "key": "victim"}`, "key"},
		{"descriptor twice", "POST", "/v1/check", `{"descriptors": {"route": "/api", "user": "1", "user": "2"}}`, "descriptors.user"},
		{"wait max_wait twice", "POST", "/v1/wait", `{"key": "victim", "limit": 1, "period": "1s", "max_wait": "1s", "max_wait": "0s"}`, "max_wait"},
		{"batch limit twice", "POST", "/v1/check/batch", `{"checks": [{"key": "victim", "limit": 1, "period": "1s", "limit": 5}]}`, "checks[0].limit"},
		{"batch checks twice", "POST", "/v1/check/batch", `{"checks": [{"key": "victim", "limit": 1, "period": "1s"}], "checks": []}`, "checks"},
		{"batch key not UTF-8", "POST", "/v1/check/batch", "{\"checks\": [{\"key\": \"a\", \"limit\": 1, \"period\": \"1s\"}, {\"key\": \"\xff\", \"limit\": 1, \"period\": \"1s\"}]}", "checks[1].key"},
		{"batch unknown field", "POST", "/v1/check/batch", `{"checks": [{"key": "victim", "limit": 1, "period": "1s", "Limit": 5}]}`, "checks[0].Limit"},
		{"batch too large", "POST", "/v1/check/batch", `{"checks": [` + strings.Repeat(`{"key": "victim", "limit": 1, "period": "1s"},`, transport.MaxBatch) + `{"key": "victim", "limit": 1, "period": "1s"}]}`, "checks"},
	}
}()

func TestBodyTooLarge(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{MaxBodyBytes: 1024})
	padding := strings.Repeat(" ", 2048)
	for _, target := range []string{"/v1/check", "/v1/wait"} {
		r := do(t, h, "POST", target, `{"key": "k",`+padding+`"limit": 1, "period": "1s"}`)
		if r.code != http.StatusRequestEntityTooLarge || !strings.HasPrefix(r.body["error"].(string), "body:") {
			t.Fatalf("%s: %d %s", target, r.code, r.raw)
		}
	}
	// A batch may be 16 times larger than a single check.
	r := do(t, h, "POST", "/v1/check/batch", `{"checks": [{"key": "k",`+padding+`"limit": 1, "period": "1s"}]}`)
	if r.code != 200 {
		t.Fatalf("batch under its limit: %d %s", r.code, r.raw)
	}
	r = do(t, h, "POST", "/v1/check/batch", `{"checks": [{"key": "k",`+strings.Repeat(padding, 9)+`"limit": 1, "period": "1s"}]}`)
	if r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("batch over its limit: %d %s", r.code, r.raw)
	}
}

func TestBatch(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	r := do(t, h, "POST", "/v1/check/batch", `{"checks": [
		{"key": "a", "limit": 1, "period": "1m"},
		{"key": "a", "limit": 1, "period": "1m"},
		{"rule": "api", "key": "a", "cost": 2},
		{"descriptors": {"route": "/api", "user": "9"}}
	]}`)
	if r.code != 200 {
		t.Fatalf("batch: %d %s", r.code, r.raw)
	}
	results := r.body["results"].([]any)
	want := []bool{true, false, true, true}
	for i, res := range results {
		if got := res.(map[string]any)["allowed"]; got != want[i] {
			t.Fatalf("result %d allowed=%v, want %v: %s", i, got, want[i], r.raw)
		}
	}
}
