package transport_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/transport"
)

// TestMsgpackAnswersAsJSON sends the same checks, batches and waits in
// JSON and in msgpack to two fresh APIs: the answers hold the same fields
// with the same values, and the same status. Time stands still in the
// bubble, so both see the same instants.
func TestMsgpackAnswersAsJSON(t *testing.T) {
	synctest.Test(t, testMsgpackAnswersAsJSON)
}

func testMsgpackAnswersAsJSON(t *testing.T) {
	for _, tc := range []struct{ target, body string }{
		{"/v1/check", `{"key": "a", "limit": 2, "period": "1m"}`},
		{"/v1/check", `{"key": "a", "limit": 2, "period": "1m", "cost": 5}`},
		{"/v1/check", `{"rule": "api", "key": "b", "cost": 2}`},
		{"/v1/check", `{"descriptors": {"route": "/api", "user": "7"}, "sync": "owner"}`},
		{"/v1/check", `{"key": "w", "limit": 3, "period": "1m", "algorithm": "fixed_window", "cost": 3}`},
		{"/v1/wait", `{"key": "c", "limit": 2, "period": "1s", "cost": 2, "max_wait": "0s"}`},
		{"/v1/check/batch", `{"checks": [{"key": "d", "limit": 1, "period": "1m"}, {"key": "d", "limit": 1, "period": "1m"}, {"rule": "api", "key": "e"}]}`},
	} {
		hj, hm := newAPI(t, transport.ServerConfig{}), newAPI(t, transport.ServerConfig{})
		for range 2 {
			j := do(t, hj, "POST", tc.target, tc.body)
			body, _ := jsonToMsgpack(tc.body)
			m := doMsgpack(t, hm, tc.target, body)
			if m.contentType != transport.MsgpackType || m.code != j.code {
				t.Fatalf("%s %s: msgpack %d %s, JSON %d", tc.target, tc.body, m.code, m.contentType, j.code)
			}
			if got, want := normalize(t, m.body), normalize(t, j.body); got != want {
				t.Fatalf("%s %s:\nmsgpack %s\nJSON    %s", tc.target, tc.body, got, want)
			}
		}
	}
}

// normalize writes a decoded answer as JSON with every number a float, so
// that msgpack's integer widths and JSON's floats compare.
func normalize(t *testing.T, v map[string]any) string {
	t.Helper()
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case float64:
			return x
		case string, bool, nil:
			return x
		default:
			return float64(mpNum(x))
		}
		return v
	}
	b, err := json.Marshal(walk(v))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMsgpackNegotiation: the answer follows Accept, and a msgpack request
// without Accept is answered in msgpack; errors are JSON either way.
func TestMsgpackNegotiation(t *testing.T) {
	h := newAPI(t, transport.ServerConfig{})
	mp, _ := jsonToMsgpack(`{"key": "n", "limit": 5, "period": "1s"}`)
	for _, tc := range []struct {
		contentType, accept, want string
		body                      []byte
	}{
		{transport.MsgpackType, "", transport.MsgpackType, mp},
		{transport.MsgpackType, "application/json", "application/json", mp},
		{"Application/MsgPack; charset=binary", "*/*", "application/json", mp},
		{"application/json", "text/html, application/msgpack;q=0.9", transport.MsgpackType, []byte(`{"key": "n", "limit": 5, "period": "1s"}`)},
		{"application/x-www-form-urlencoded", "", "application/json", []byte(`{"key": "n", "limit": 5, "period": "1s"}`)},
		{transport.MsgpackType, transport.MsgpackType, "application/json", []byte(`{"key": "n"}`)}, // JSON sent as msgpack: a 400 in JSON
	} {
		req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Header().Get("Content-Type"); got != tc.want {
			t.Errorf("Content-Type %q, Accept %q: answered %s (%d), want %s", tc.contentType, tc.accept, got, rec.Code, tc.want)
		}
	}
}

// TestMsgpackOnlyBadInput covers what JSON cannot write: names that are
// not strings, bin and ext values, integers out of range, lengths that
// the body cannot hold, and oversized bodies.
func TestMsgpackOnlyBadInput(t *testing.T) {
	enc := func(f func(e *msgpack.Encoder)) []byte {
		var b bytes.Buffer
		f(msgpack.NewEncoder(&b))
		return b.Bytes()
	}
	kv := func(e *msgpack.Encoder, pairs ...any) {
		_ = e.EncodeMapLen(len(pairs) / 2)
		for _, v := range pairs {
			_ = e.Encode(v)
		}
	}
	for _, tc := range []struct {
		name, target string
		body         []byte
		code         int
		field        string
	}{
		{"name an integer", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "key", "victim", 7, 1) }), 400, "body"},
		{"bin key", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "key", []byte("victim"), "limit", 1, "period", "1s") }), 400, "key"},
		{"limit above int64", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "key", "victim", "limit", uint64(1<<63), "period", "1s") }), 400, "limit"},
		{"bool cost", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "key", "victim", "limit", 1, "period", "1s", "cost", true) }), 400, "cost"},
		{"ext period", "/v1/check", []byte{0x83, 0xa3, 'k', 'e', 'y', 0xa1, 'v', 0xa5, 'l', 'i', 'm', 'i', 't', 0x01, 0xa6, 'p', 'e', 'r', 'i', 'o', 'd', 0xd4, 0x01, 0x00}, 400, "period"},
		{"descriptor value an integer", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "descriptors", map[string]any{"route": 1}) }), 400, "descriptors.route"},
		{"descriptor name an integer", "/v1/check", []byte{0x81, 0xab, 'd', 'e', 's', 'c', 'r', 'i', 'p', 't', 'o', 'r', 's', 0x81, 0x01, 0xa1, 'x'}, 400, "descriptors"},
		{"65 descriptors", "/v1/check", append([]byte{0x81, 0xab, 'd', 'e', 's', 'c', 'r', 'i', 'p', 't', 'o', 'r', 's', 0xde, 0, 65}, bytes.Repeat([]byte{0xa0}, 130)...), 400, "descriptors"},
		{"map of 2^32-1 entries", "/v1/check", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k'}, 400, "body"},
		{"string of 2^32-1 bytes", "/v1/check", []byte{0x81, 0xa3, 'k', 'e', 'y', 0xdb, 0xff, 0xff, 0xff, 0xff, 'v'}, 400, "body"},
		{"batch of 2^32-1 checks", "/v1/check/batch", []byte{0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x80}, 400, "body"},
		{"batch of 1,001 empty checks", "/v1/check/batch", append([]byte{0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0xdc, 0x03, 0xe9}, bytes.Repeat([]byte{0x80}, 1001)...), 400, "checks"},
		{"batch item not a map", "/v1/check/batch", []byte{0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0x91, 0x01}, 400, "checks[0]"},
		{"batch item name not UTF-8", "/v1/check/batch", []byte{0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0x91, 0x81, 0xa1, 0xff, 0x01}, 400, "checks[0]"},
		{"the byte msgpack never uses", "/v1/check", []byte{0x81, 0xa3, 'k', 'e', 'y', 0xc1}, 400, "body"},
		{"too large", "/v1/check", enc(func(e *msgpack.Encoder) { kv(e, "key", strings.Repeat("k", 70<<10), "limit", 1, "period", "1s") }), 413, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newAPI(t, transport.ServerConfig{})
			r := doMsgpack(t, h, tc.target, tc.body)
			msg, _ := r.body["error"].(string)
			if r.code != tc.code || !strings.HasPrefix(msg, tc.field+":") {
				t.Fatalf("status %d, error %q; want %d naming %q", r.code, msg, tc.code, tc.field)
			}
			assertVictimFull(t, h)
		})
	}
}
