package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

func benchAPI(b *testing.B) http.Handler {
	node, err := cluster.New(cluster.Config{Metrics: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	node.SetRules(&rules.Set{})
	return transport.NewServer(transport.ServerConfig{Limiter: node, Registerer: prometheus.NewRegistry()})
}

const benchBody = `{"key": "user:12345", "limit": 1000000000, "period": "1s"}`

// BenchmarkHandlerCheck is the whole API path of one check without the
// network: decode, decide, encode, headers, metrics.
func BenchmarkHandlerCheck(b *testing.B) {
	h := benchAPI(b)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/check", strings.NewReader(benchBody))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// BenchmarkHandlerCheckMsgpack is BenchmarkHandlerCheck with a msgpack
// body and answer.
func BenchmarkHandlerCheckMsgpack(b *testing.B) {
	h := benchAPI(b)
	body := benchMsgpack(b, benchBody)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(body))
		req.Header["Content-Type"] = []string{transport.MsgpackType}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkHandlerBatch is a batch of 100 checks through ServeHTTP, in
// JSON and in msgpack.
func BenchmarkHandlerBatch(b *testing.B) {
	js := benchBatch()
	for _, tc := range []struct {
		name, contentType string
		body              []byte
	}{
		{"json", "application/json", []byte(js)},
		{"msgpack", transport.MsgpackType, benchMsgpack(b, js)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchAPI(b)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/check/batch", bytes.NewReader(tc.body))
				req.Header["Content-Type"] = []string{tc.contentType}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

func benchBatch() string {
	return `{"checks": [` + strings.Repeat(`{"key": "k", "limit": 1000000000, "period": "1s"},`, 99) + `{"key": "k", "limit": 1000000000, "period": "1s"}]}`
}

// benchMsgpack re-encodes a JSON body as msgpack.
func benchMsgpack(b *testing.B, js string) []byte {
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		b.Fatal(err)
	}
	var fix func(any) any // JSON's numbers are floats; the API wants integers
	fix = func(v any) any {
		switch x := v.(type) {
		case float64:
			return int64(x)
		case map[string]any:
			for k, e := range x {
				x[k] = fix(e)
			}
		case []any:
			for i, e := range x {
				x[i] = fix(e)
			}
		}
		return v
	}
	out, err := msgpack.Marshal(fix(v))
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// trivial is the ceiling the check endpoint is held against: a net/http
// handler that decodes a small JSON body and writes a small JSON answer.
func trivial(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"allowed":true}`)
}

// BenchmarkLoopback serves over real TCP on loopback (or, for the "unix"
// cases, a Unix domain socket), with the client in the same process, and
// reports requests (or decisions) per second. The "trivial" cases,
// measured in the same run, are the ceilings.
func BenchmarkLoopback(b *testing.B) {
	batch := benchBatch()
	mpCheck, mpBatch := string(benchMsgpack(b, benchBody)), string(benchMsgpack(b, batch))
	for _, tc := range []struct {
		name, path, body string
		decisions        int
		handler          http.Handler
		msgpack, unix    bool
	}{
		{"trivial", "/", benchBody, 1, http.HandlerFunc(trivial), false, false},
		{"check", "/v1/check", benchBody, 1, benchAPI(b), false, false},
		{"batch100", "/v1/check/batch", batch, 100, benchAPI(b), false, false},
		{"check-msgpack", "/v1/check", mpCheck, 1, benchAPI(b), true, false},
		{"batch100-msgpack", "/v1/check/batch", mpBatch, 100, benchAPI(b), true, false},
		{"trivial-unix", "/", benchBody, 1, http.HandlerFunc(trivial), false, true},
		{"check-unix", "/v1/check", benchBody, 1, benchAPI(b), false, true},
		{"check-msgpack-unix", "/v1/check", mpCheck, 1, benchAPI(b), true, true},
		{"batch100-msgpack-unix", "/v1/check/batch", mpBatch, 100, benchAPI(b), true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if tc.unix {
				addr = transport.UnixPrefix + filepath.Join(b.TempDir(), "api.sock")
			}
			ln, err := transport.Listen(addr, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			srv := transport.NewHTTPServer(tc.handler, slogDiscard())
			go srv.Serve(ln)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			url := "http://" + ln.Addr().String() + tc.path
			if tc.unix {
				tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", ln.Addr().String())
				}
				url = "http://sluice" + tc.path
			}
			contentType := "application/json"
			if tc.msgpack {
				contentType = transport.MsgpackType
			}
			client := &http.Client{Transport: tr}
			defer client.CloseIdleConnections()
			var failed atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(url, contentType, strings.NewReader(tc.body))
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			})
			b.ReportMetric(float64(b.N*tc.decisions)/b.Elapsed().Seconds(), "decisions/s")
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d requests failed", n, b.N)
			}
		})
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
