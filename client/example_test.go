package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicerl/sluice/client"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

// exampleSidecar runs a real sluice node over HTTP for the examples; in
// production the sidecar is the sluice process beside the service.
func exampleSidecar() (url string, stop func()) {
	node, err := cluster.New(cluster.Config{})
	if err != nil {
		panic(err)
	}
	node.SetRules(&rules.Set{})
	srv := httptest.NewServer(transport.NewServer(transport.ServerConfig{Limiter: node, Registerer: prometheus.NewRegistry()}))
	return srv.URL, srv.Close
}

// Pacing calls to a third-party API across a fleet: every instance waits
// its turn for the partner's 10 calls a second, instead of calling, being
// refused, and retrying.
func ExampleClient_Wait() {
	url, stop := exampleSidecar()
	defer stop()
	c := client.New(client.Config{URL: url})
	partner := client.Inline(10, time.Second, 1) // 10/s, no bursts

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	for range 5 {
		if _, err := c.Wait(ctx, "partner-api", partner); err != nil {
			fmt.Println("gave up:", err)
			return
		}
		// call the partner here
	}
	// The first call goes at once; the other four each wait 100ms.
	fmt.Println("5 calls took at least 0.4s:", time.Since(start) >= 400*time.Millisecond)
	// Output: 5 calls took at least 0.4s: true
}

// Protecting an HTTP handler: each user may make 2 requests a minute; the
// third gets a 429 with Retry-After and the RateLimit headers.
func ExampleMiddleware() {
	url, stop := exampleSidecar()
	defer stop()
	c := client.New(client.Config{URL: url})
	perUser := func(r *http.Request) string { return "user:" + r.Header.Get("X-User") }
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") })
	protected := client.Middleware(c, perUser, client.Inline(2, time.Minute, 0))(app)

	for range 3 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-User", "alice")
		protected.ServeHTTP(rec, req)
		if retry := rec.Header().Get("Retry-After"); retry != "" {
			fmt.Println(rec.Code, "retry after", retry+"s")
		} else {
			fmt.Println(rec.Code)
		}
	}
	// Output:
	// 200
	// 200
	// 429 retry after 30s
}
