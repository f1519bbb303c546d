package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicerl/sluice/client"
	"github.com/sluicerl/sluice/transport"
)

// TestFormats runs the same calls in msgpack (the default) and in JSON,
// each against a sidecar of its own: the results are the same, and the
// sidecar saw the content type asked for.
func TestFormats(t *testing.T) {
	results := map[client.Format][]client.Result{}
	for _, format := range []client.Format{client.Msgpack, client.JSON} {
		h, _ := newSidecarHandler(t)
		var mu sync.Mutex
		var seen []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Content-Type"))
			mu.Unlock()
			h.ServeHTTP(w, r)
		}))
		defer srv.Close()
		c := client.New(client.Config{URL: srv.URL, Format: format})
		ctx := context.Background()
		var got []client.Result
		for range 4 {
			res, err := c.Allow(ctx, "alice", client.Inline(3, time.Hour, 0))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res)
		}
		batch, err := c.Batch(ctx, []client.Check{{Key: "b", N: 1, Options: []client.Option{client.Rule("api")}}, {Key: "", N: 2, Options: []client.Option{client.Descriptors(map[string]string{"user": "7"})}}})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, batch...)
		waited, err := c.Wait(ctx, "w", client.Inline(1, time.Hour, 0))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, waited)
		for i := range got { // the clock moved between the calls: compare to the minute
			got[i].ResetAfter, got[i].RetryAfter = got[i].ResetAfter.Round(time.Minute), got[i].RetryAfter.Round(time.Minute)
		}
		results[format] = got
		if _, err := c.Allow(ctx, "x", client.Inline(1, time.Hour, 0), client.Sync("strong")); !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "sync") {
			t.Fatalf("format %d: a bad check: %v, want ErrBadRequest naming sync", format, err)
		}
		want := "application/json"
		if format == client.Msgpack {
			want = transport.MsgpackType
		}
		for _, ct := range seen {
			if ct != want {
				t.Fatalf("format %d: the sidecar saw Content-Type %q, want %q", format, ct, want)
			}
		}
	}
	if !reflect.DeepEqual(results[client.Msgpack], results[client.JSON]) {
		t.Fatalf("msgpack %+v\nJSON    %+v", results[client.Msgpack], results[client.JSON])
	}
	if r := results[client.JSON]; !r[0].Allowed || r[3].Allowed || r[3].RetryAfter <= 0 || r[4].Rule != "api" || r[5].Rule != "per-user" {
		t.Fatalf("results %+v", r)
	}
}

// TestUnixSocket reaches a sidecar over its Unix domain socket.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	startSidecar(t, ln)
	for _, format := range []client.Format{client.Msgpack, client.JSON} {
		c := client.New(client.Config{URL: "unix:" + path, Format: format, Retries: -1})
		res, err := c.AllowN(context.Background(), "k"+strconv.Itoa(int(format)), 2, client.Rule("api"))
		if err != nil || res.Unavailable || !res.Allowed || res.Rule != "api" {
			t.Fatalf("format %d over the socket: %+v %v", format, res, err)
		}
	}
}
