package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/client"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// sidecar is a real sluice node served over HTTP on loopback.
type sidecar struct {
	srv  *httptest.Server
	node *cluster.Node
}

func newSidecarHandler(tb testing.TB) (http.Handler, *cluster.Node) {
	tb.Helper()
	node, err := cluster.New(cluster.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	set, err := rules.Parse([]byte("rules: [{name: api, limit: 3, period: 1h}, {name: per-user, limit: 2, period: 1h, descriptors: [{key: user}]}]"))
	if err != nil {
		tb.Fatal(err)
	}
	node.SetRules(set)
	return transport.NewServer(transport.ServerConfig{Limiter: node, Registerer: prometheus.NewRegistry()}), node
}

func startSidecar(tb testing.TB, ln net.Listener) *sidecar {
	tb.Helper()
	h, node := newSidecarHandler(tb)
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	tb.Cleanup(srv.Close)
	return &sidecar{srv: srv, node: node}
}

func TestAllowExactAndFields(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	ctx := context.Background()
	allowed := 0
	for range 10 {
		res, err := c.Allow(ctx, "alice", client.Inline(4, time.Minute, 0))
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		} else if res.RetryAfter <= 0 || res.Limit != 4 || res.Period != time.Minute || res.Burst != 4 {
			t.Fatalf("denial: %+v", res)
		}
	}
	if allowed != 4 {
		t.Fatalf("allowed %d of 10, want 4", allowed)
	}
	res, err := c.AllowN(ctx, "bob", 3, client.Rule("api"))
	if err != nil || !res.Allowed || res.Remaining != 0 || res.Rule != "api" {
		t.Fatalf("AllowN with a rule: %+v %v", res, err)
	}
	res, err = c.Allow(ctx, "", client.Descriptors(map[string]string{"user": "7"}))
	if err != nil || !res.Allowed || res.Rule != "per-user" {
		t.Fatalf("descriptors: %+v %v", res, err)
	}
}

// TestAlgorithms checks an inline limit of each algorithm through the
// client: the count it admits, and the algorithm named in the result.
func TestAlgorithms(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	ctx := context.Background()
	for _, algo := range []string{"leaky_bucket", "fixed_window", "sliding_window_log", "sliding_window"} {
		allowed := 0
		var last client.Result
		for range 6 {
			res, err := c.Allow(ctx, "k", client.Inline(3, time.Hour, 0), client.Algorithm(algo))
			if err != nil {
				t.Fatalf("%s: %v", algo, err)
			}
			if res.Allowed {
				allowed++
			}
			last = res
		}
		if allowed != 3 || last.Algorithm != algo || last.RetryAfter <= 0 {
			t.Fatalf("%s: %d allowed (want 3), last %+v", algo, allowed, last)
		}
	}
	_, err := c.Allow(ctx, "k", client.Inline(3, time.Hour, 5), client.Algorithm("fixed_window"))
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "burst") {
		t.Fatalf("a burst on a window: %v, want ErrBadRequest naming burst", err)
	}
}

func TestBadRequestIsAnErrorNotRetried(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	_, err := c.Allow(context.Background(), "k", client.Rule("nope"))
	if !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("unknown rule: %v, want ErrBadRequest", err)
	}
	if st := c.Stats(); st.Retries != 0 || st.Unavailable != 0 {
		t.Fatalf("a bad request must not be retried or count as unavailable: %+v", st)
	}
}

func TestWait(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	limit := client.Inline(20, time.Second, 1) // a token every 50ms
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]client.Result, 4)
	for i := range results {
		wg.Go(func() {
			var err error
			if results[i], err = c.Wait(ctx, "paced", limit); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waited := 0
	for _, r := range results {
		if !r.Allowed {
			t.Fatalf("a waiter was not granted: %+v", r)
		}
		if r.Waited > 0 {
			waited++
		}
	}
	if waited < 3 {
		t.Fatalf("%d of 4 waiters waited; with a burst of 1 at least 3 must", waited)
	}
	// A deadline the tokens cannot meet is refused: the sidecar answers at
	// once when the wait would pass max_wait (a context error would mean
	// the call was held instead).
	c.AllowN(context.Background(), "slow", 1, client.Inline(1, time.Hour, 1))
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if res, err := c.Wait(short, "slow", client.Inline(1, time.Hour, 1)); !errors.Is(err, client.ErrDeadline) || res.Waited != 0 {
		t.Fatalf("Wait beyond the deadline: %+v %v, want ErrDeadline without waiting", res, err)
	}
}

func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestStances(t *testing.T) {
	url := deadURL(t)
	ctx := context.Background()
	open := client.New(client.Config{URL: url, BackoffBase: time.Millisecond})
	if res, err := open.Allow(ctx, "k", client.Inline(1, time.Second, 0)); err != nil || !res.Allowed || !res.Unavailable {
		t.Fatalf("fail open: %+v %v", res, err)
	}
	if st := open.Stats(); st.Unavailable != 1 || st.FailOpen != 1 || st.Retries != 2 {
		t.Fatalf("fail open stats %+v: want 1 unavailable, 1 fail-open, 2 retries", st)
	}
	closed := client.New(client.Config{URL: url, Stance: client.FailClosed, Retries: -1})
	if res, _ := closed.Allow(ctx, "k", client.Inline(1, time.Second, 0)); res.Allowed || !res.Unavailable {
		t.Fatalf("fail closed: %+v", res)
	}
	local := client.New(client.Config{URL: url, Stance: client.FailLocal, Retries: -1,
		Fallback: bucket.Limit{Rate: 2, Period: time.Hour, Burst: 2}})
	allowed := 0
	for range 5 {
		if res, _ := local.Allow(ctx, "k", client.Rule("api")); res.Allowed {
			allowed++
		}
	}
	if allowed != 2 || local.Stats().FailLocal != 5 {
		t.Fatalf("fail local: %d allowed (want 2), stats %+v", allowed, local.Stats())
	}
}

// TestSidecarRestart stops the sidecar and starts it again on the same
// address: meanwhile the stance decides; afterwards the sidecar does again,
// over a new connection.
func TestSidecarRestart(t *testing.T) {
	s := startSidecar(t, nil)
	addr := s.srv.Listener.Addr().String()
	c := client.New(client.Config{URL: s.srv.URL, Stance: client.FailClosed, BackoffBase: time.Millisecond})
	ctx := context.Background()
	if res, err := c.Allow(ctx, "k", client.Inline(10, time.Second, 0)); err != nil || res.Unavailable {
		t.Fatalf("before: %+v %v", res, err)
	}
	s.srv.Close()
	if res, err := c.Allow(ctx, "k", client.Inline(10, time.Second, 0)); err != nil || !res.Unavailable || res.Allowed {
		t.Fatalf("while down: %+v %v", res, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	startSidecar(t, ln)
	if res, err := c.Allow(ctx, "k", client.Inline(10, time.Second, 0)); err != nil || res.Unavailable || !res.Allowed {
		t.Fatalf("after restart: %+v %v", res, err)
	}
}

// TestHungSidecarTimesOut answers nothing: each attempt times out, is
// retried, and then the stance decides, all within the attempts' budget.
func TestHungSidecarTimesOut(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a handler that reads no body is not told the client left
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	c := client.New(client.Config{URL: hung.URL, AttemptTimeout: 50 * time.Millisecond, BackoffBase: time.Millisecond})
	res, err := c.Allow(context.Background(), "k", client.Inline(1, time.Second, 0))
	if err != nil || !res.Unavailable || c.Stats().Retries != 2 {
		t.Fatalf("hung sidecar: %+v %v %+v", res, err, c.Stats())
	}
}

func TestBatch(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	res, err := c.Batch(context.Background(), []client.Check{
		{Key: "a", N: 1, Options: []client.Option{client.Inline(1, time.Hour, 0)}},
		{Key: "a", N: 1, Options: []client.Option{client.Inline(1, time.Hour, 0)}},
		{Key: "b", N: 2, Options: []client.Option{client.Rule("api")}},
	})
	if err != nil || len(res) != 3 || !res[0].Allowed || res[1].Allowed || !res[2].Allowed || res[2].Remaining != 1 {
		t.Fatalf("batch: %+v %v", res, err)
	}
}

func TestMiddleware(t *testing.T) {
	s := startSidecar(t, nil)
	c := client.New(client.Config{URL: s.srv.URL})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
	h := client.Middleware(c, func(r *http.Request) string { return r.Header.Get("X-User") }, client.Inline(2, time.Minute, 0))(app)
	codes := []int{}
	var last *httptest.ResponseRecorder
	for range 3 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-User", "carol")
		h.ServeHTTP(rec, req)
		codes = append(codes, rec.Code)
		last = rec
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("codes %v, want 200 200 429", codes)
	}
	if last.Header().Get("Retry-After") != "30" || last.Header().Get("RateLimit-Policy") != `"inline";q=2;w=60` || last.Header().Get("RateLimit") == "" {
		t.Fatalf("429 headers: %v", last.Header())
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil)) // no key: not limited
	if rec.Code != 200 {
		t.Fatalf("request without a key: %d", rec.Code)
	}
}
