package transport_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// TestWaitInArrivalOrder holds several waiters on one key and checks that
// they are released in arrival order, spaced by the refill interval, and
// that a waiter beyond max_wait is denied at once.
func TestWaitInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newAPI(t, transport.ServerConfig{})
		body := `{"key": "k", "limit": 10, "period": "1s", "burst": 1, "max_wait": "350ms"}`
		start := time.Now()
		var mu sync.Mutex
		var order []int
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				r := do(t, h, "POST", "/v1/wait", body)
				mu.Lock()
				defer mu.Unlock()
				if r.code != 200 || num(r, "waited_ms") != int64(i)*100 || time.Since(start) != time.Duration(i)*100*time.Millisecond {
					t.Errorf("waiter %d: %d %s after %v", i, r.code, r.raw, time.Since(start))
				}
				order = append(order, i)
			})
			synctest.Wait() // waiter i has made its reservation
		}
		r := do(t, h, "POST", "/v1/wait", body)
		if r.code != 429 || num(r, "retry_after_ms") != 400 || time.Since(start) != 0 {
			t.Fatalf("waiter over max_wait: %d %s after %v", r.code, r.raw, time.Since(start))
		}
		wg.Wait()
		if len(order) != 4 || order[0] != 0 || order[1] != 1 || order[2] != 2 || order[3] != 3 {
			t.Fatalf("release order %v", order)
		}
	})
}

// TestCheckEveryAlgorithm drives one key past a limit of 3 per minute
// with each algorithm through the API: 3 admitted, then 429s, with the
// algorithm in the answer (and no burst for the windows).
func TestCheckEveryAlgorithm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newAPI(t, transport.ServerConfig{})
		for _, algo := range []string{"token_bucket", "leaky_bucket", "fixed_window", "sliding_window_log", "sliding_window"} {
			body := `{"key": "k", "limit": 3, "period": "1m", "algorithm": "` + algo + `"}`
			admitted := 0
			var last response
			for range 10 {
				last = do(t, h, "POST", "/v1/check", body)
				if last.code == 200 {
					admitted++
				} else if last.code != 429 || last.header.Get("Retry-After") == "" {
					t.Fatalf("%s: %d %s", algo, last.code, last.raw)
				}
			}
			_, hasBurst := last.body["burst"]
			windowed := strings.Contains(algo, "window")
			wantAlgo := any(algo)
			if algo == "token_bucket" {
				wantAlgo = nil
			}
			if admitted != 3 || last.body["algorithm"] != wantAlgo || hasBurst == windowed {
				t.Fatalf("%s: %d admitted (want 3), last answer %s", algo, admitted, last.raw)
			}
		}
		r := do(t, h, "POST", "/v1/check", `{"rule": "windowed", "key": "k", "cost": 4}`)
		if r.code != 429 || r.body["reason"] != "cost exceeds limit" || r.body["algorithm"] != "fixed_window" {
			t.Fatalf("named window rule, cost above the limit: %d %s", r.code, r.raw)
		}
	})
}

// TestLeakyWaitsAreEvenlySpaced: callers that wait on a leaky bucket all
// at once are released one drain interval apart; those the depth cannot
// hold are refused at once.
func TestLeakyWaitsAreEvenlySpaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newAPI(t, transport.ServerConfig{})
		body := `{"key": "k", "limit": 10, "period": "1s", "burst": 4, "algorithm": "leaky_bucket", "max_wait": "1s"}`
		start := time.Now()
		var mu sync.Mutex
		var released []time.Duration
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if r := do(t, h, "POST", "/v1/wait", body); r.code != 200 {
					t.Errorf("waiter: %d %s", r.code, r.raw)
				}
				mu.Lock()
				released = append(released, time.Since(start))
				mu.Unlock()
			})
			synctest.Wait()
		}
		if r := do(t, h, "POST", "/v1/wait", body); r.code != 429 || num(r, "retry_after_ms") != 100 {
			t.Fatalf("a fifth waiter, the bucket full: %d %s", r.code, r.raw)
		}
		wg.Wait()
		for i, at := range released {
			if at != time.Duration(i)*100*time.Millisecond {
				t.Fatalf("releases at %v, want 100ms apart from 0", released)
			}
		}
	})
}

// TestWaitAbandonedGivesTokensBack cancels a waiter and checks that its
// tokens return to the bucket.
func TestWaitAbandonedGivesTokensBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newAPI(t, transport.ServerConfig{})
		do(t, h, "POST", "/v1/check", `{"key": "k", "limit": 1, "period": "1s"}`)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int)
		go func() {
			req := httptest.NewRequestWithContext(ctx, "POST", "/v1/wait", strings.NewReader(`{"key": "k", "limit": 1, "period": "1s", "max_wait": "5s"}`))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			done <- rec.Code
		}()
		synctest.Wait()
		time.Sleep(500 * time.Millisecond) // virtual: the waiter is half-way
		cancel()
		<-done
		// The abandoned reservation was returned: one token is due at 1s,
		// as if the waiter had never come.
		time.Sleep(500 * time.Millisecond)
		if r := do(t, h, "POST", "/v1/check", `{"key": "k", "limit": 1, "period": "1s"}`); r.code != 200 {
			t.Fatalf("after the waiter left: %d %s", r.code, r.raw)
		}
	})
}

// TestNotReadyIs503: before its rules load, a node answers every check,
// batch, wait and rules request with 503 through the one status function,
// not a 500, and changes nothing.
func TestNotReadyIs503(t *testing.T) {
	persist, err := rules.OpenPersist(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { persist.Close() })
	node, err := cluster.New(cluster.Config{Persist: persist})
	if err != nil {
		t.Fatal(err)
	}
	h := transport.NewServer(transport.ServerConfig{Limiter: node, Rules: node, Registerer: prometheus.NewRegistry()})
	for _, c := range []struct{ method, target, body string }{
		{"GET", "/v1/rules", ""},
		{"PUT", "/v1/rules/r", `{"limit": 1, "period": "1s"}`},
		{"DELETE", "/v1/rules/r", ""},
		{"POST", "/v1/check", `{"key": "k", "limit": 1, "period": "1s"}`},
		{"GET", "/v1/check?key=k&limit=1&period=1s", ""},
		{"POST", "/v1/check/batch", `{"checks": [{"key": "k", "limit": 1, "period": "1s"}]}`},
		{"POST", "/v1/wait", `{"key": "k", "limit": 1, "period": "1s", "max_wait": "1s"}`},
	} {
		r := do(t, h, c.method, c.target, c.body)
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body["error"].(string), "not ready") {
			t.Errorf("%s %s: %d %s, want 503 not ready", c.method, c.target, r.code, r.raw)
		}
	}
	node.SetRules(&rules.Set{})
	if r := do(t, h, "GET", "/v1/rules", ""); r.code != 200 || len(r.body["rules"].([]any)) != 0 {
		t.Fatalf("after the rules loaded: %d %s, want no rule (the PUT before changed nothing)", r.code, r.raw)
	}
}
