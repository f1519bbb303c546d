package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicerl/sluice/client"
)

// jsonOnlySidecar is a sidecar of the release before msgpack bodies: it
// reads every body as JSON whatever its Content-Type, and answers JSON.
// (It is today's server with the msgpack headers taken off the request,
// which is exactly how the previous release handled them; checked against
// the binary built from 46fe1fc: "client: bad request: body: malformed JSON
// at byte 1: invalid character '\u0084' looking for beginning of value".)
func jsonOnlySidecar(t *testing.T) *httptest.Server {
	h, _ := newSidecarHandler(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Content-Type")
		r.Header.Del("Accept")
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDefaultClientAgainstJSONOnlySidecar: the client sends msgpack by
// default. A sidecar of the previous release (an application upgraded
// before its sidecars, the usual order of a rolling upgrade, or a pinned
// sidecar image) reads every body as JSON and refuses it: the client
// then speaks JSON to it, and every check is decided as before.
func TestDefaultClientAgainstJSONOnlySidecar(t *testing.T) {
	srv := jsonOnlySidecar(t)
	c := client.New(client.Config{URL: srv.URL})
	res, err := c.Allow(context.Background(), "alice", client.Inline(3, time.Minute, 0))
	if err != nil || !res.Allowed {
		t.Errorf("Allow against a JSON-only sidecar: %+v, %v; want an allowed result (the client should fall back to JSON)", res, err)
	}

	limited := client.Middleware(c, func(*http.Request) string { return "bob" }, client.Inline(1, time.Hour, 0))(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	passed := 0
	for range 5 {
		rec := httptest.NewRecorder()
		limited.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code == 200 {
			passed++
		}
	}
	if passed != 1 {
		t.Errorf("Middleware with a limit of 1 an hour let %d of 5 requests through (stats %+v): rate limiting is off", passed, c.Stats())
	}
}

// TestMiddlewareLimitsKeysTheSidecarRefuses: the README's example keys on
// a request header ("user:" + r.Header.Get("X-User")), which a client
// controls and net/http passes through with any byte from 0x80 up. A key
// with invalid UTF-8 is sent as encoding/json writes it (U+FFFD for each
// bad byte) in either format, so it is limited; a key the sidecar refuses
// (over 1 KiB) gets a 400 from Middleware, never a free pass.
func TestMiddlewareLimitsKeysTheSidecarRefuses(t *testing.T) {
	s := startSidecar(t, nil)
	for _, tc := range []struct {
		name   string
		format client.Format
		user   string
	}{
		{"invalid UTF-8, msgpack (the default)", client.Msgpack, "\xff"},
		{"invalid UTF-8, JSON", client.JSON, "\xfe"},
		{"key over 1 KiB, msgpack", client.Msgpack, strings.Repeat("a", 1100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client.New(client.Config{URL: s.srv.URL, Format: tc.format})
			limited := client.Middleware(c, func(r *http.Request) string { return "user:" + r.Header.Get("X-User") }, client.Inline(1, time.Hour, 0))(
				http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
			passed := 0
			for range 5 {
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("X-User", tc.user)
				rec := httptest.NewRecorder()
				limited.ServeHTTP(rec, req)
				if rec.Code == 200 {
					passed++
				}
			}
			if passed > 1 {
				t.Errorf("a limit of 1 an hour let %d of 5 requests with X-User %.10q... through", passed, tc.user)
			}
		})
	}
}
