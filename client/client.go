// Package client is the Go client of a sluice sidecar. It feels like
// golang.org/x/time/rate, but the limits are the cluster's:
//
//	c := client.New(client.Config{})
//	res, err := c.Allow(ctx, "user:42", client.Rule("api"))
//	if err == nil && !res.Allowed { /* 429, retry after res.RetryAfter */ }
//
// The sidecar is reached over HTTP on loopback or, with a "unix:" URL, over
// its Unix domain socket; bodies are msgpack unless Config.Format asks for
// JSON.
//
// A denial is a Result, not an error. Transport failures and 5xx answers are
// retried with capped exponential backoff and full jitter; if the sidecar
// still cannot be reached, the client's Stance decides (allow, deny, or a
// local fallback bucket), and the choice is counted in Stats.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// Stance is what the client decides when the sidecar cannot be reached.
type Stance uint8

const (
	// FailOpen allows the request (the default; Envoy's and Stripe's
	// choice: a limiter outage must not become an application outage).
	FailOpen Stance = iota
	// FailClosed denies the request.
	FailClosed
	// FailLocal decides from a bucket in the client, with Config.Fallback.
	FailLocal
)

// Config configures a Client. Zero fields mean defaults.
type Config struct {
	// URL is the sidecar's API: "http://host:port", or "unix:" and the
	// path of its Unix domain socket ("unix:/run/sluice/api.sock", the
	// sidecar started with --http-addr unix:/run/sluice/api.sock). If
	// empty, "http://127.0.0.1:8080".
	URL string
	// HTTPClient sends the requests. If nil, a client with keep-alive
	// connections to the sidecar (over its socket for a unix: URL; a
	// client given with a unix: URL must dial the socket itself, the
	// requests going to http://sluice).
	HTTPClient *http.Client
	// Format is the format of request and answer bodies. If zero, Msgpack.
	Format Format
	// AttemptTimeout bounds one attempt (not Wait's hold). If zero, 250ms.
	AttemptTimeout time.Duration
	// Retries is how many times a failed attempt is retried. If zero, 2;
	// negative means none.
	Retries int
	// BackoffBase and BackoffMax shape the retry delays: attempt k waits a
	// uniformly random time in [0, min(BackoffMax, BackoffBase·2^k)) (full
	// jitter). If zero, 10ms and 200ms.
	BackoffBase, BackoffMax time.Duration
	// Stance decides when the sidecar cannot be reached. Default FailOpen.
	Stance Stance
	// Fallback is the per-key limit of the FailLocal stance.
	Fallback bucket.Limit
	// Rand returns a float in [0, 1) for jitter. If nil, math/rand/v2.
	Rand func() float64
}

// Client talks to one sidecar. It is safe for concurrent use.
type Client struct {
	cfg   Config
	local *bucket.Store
	stats struct{ unavailable, failOpen, failClosed, failLocal, retries atomic.Uint64 }
	// jsonOnly: the sidecar is of a release that reads JSON bodies only.
	jsonOnly atomic.Bool
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	if cfg.URL == "" {
		cfg.URL = "http://127.0.0.1:8080"
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	dial := (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext
	if path, ok := strings.CutPrefix(cfg.URL, "unix:"); ok {
		cfg.URL = "http://sluice" // the host is not used: every connection goes to the socket
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "unix", path)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 250 * time.Millisecond
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 200 * time.Millisecond
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	c := &Client{cfg: cfg}
	if cfg.Stance == FailLocal {
		if cfg.Fallback.Rate <= 0 || cfg.Fallback.Period <= 0 || cfg.Fallback.Burst <= 0 {
			panic("client: the FailLocal stance needs a Fallback limit") // a programmer error
		}
		c.local = bucket.NewStore(bucket.StoreConfig{MaxKeys: 100_000})
	}
	return c
}

// Result is the sidecar's answer to a check.
type Result struct {
	Allowed bool
	// Limit tokens per Period, in a bucket of Burst, is the limit applied,
	// counted by Algorithm ("" for the token bucket; the window
	// algorithms have no Burst).
	Limit      int64
	Period     time.Duration
	Burst      int64
	Algorithm  string
	Remaining  int64
	ResetAfter time.Duration
	RetryAfter time.Duration
	// Waited is how long Wait was held before the tokens were granted.
	Waited time.Duration
	// Rule is the rule that applied ("" for an inline limit).
	Rule string
	// Owner is, in owner mode, the cluster member that decided.
	Owner string
	// Unavailable reports that the sidecar could not be reached and the
	// client's Stance decided.
	Unavailable bool
}

// Option sets how a check selects its limit and what it spends.
type Option func(*request)

// Rule selects a named rule.
func Rule(name string) Option { return func(r *request) { r.Rule = name } }

// Inline gives the limit in the check itself: limit tokens per period, with
// a burst of burst (0: the same as limit).
func Inline(limit int64, period time.Duration, burst int64) Option {
	return func(r *request) {
		r.Limit, r.Period = &limit, period.String()
		if burst > 0 {
			r.Burst = &burst
		}
	}
}

// Algorithm sets how an Inline limit counts: "token_bucket" (the
// default), "leaky_bucket" (burst is then the bucket's depth),
// "fixed_window", "sliding_window_log" or "sliding_window" (these take no
// burst).
func Algorithm(name string) Option { return func(r *request) { r.Algorithm = name } }

// Descriptors selects the rule the descriptors match; the key comes from
// them (pass "" as the key).
func Descriptors(d map[string]string) Option { return func(r *request) { r.Descriptors = d } }

// Sync overrides the rule's sync mode: "local", "gossip", "owner" or "auto".
func Sync(mode string) Option { return func(r *request) { r.Sync = mode } }

// request is a check as the API takes it, in JSON or msgpack (the same
// names).
type request struct {
	Key         string            `json:"key,omitempty" msgpack:"key,omitempty"`
	Rule        string            `json:"rule,omitempty" msgpack:"rule,omitempty"`
	Descriptors map[string]string `json:"descriptors,omitempty" msgpack:"descriptors,omitempty"`
	Limit       *int64            `json:"limit,omitempty" msgpack:"limit,omitempty"`
	Period      string            `json:"period,omitempty" msgpack:"period,omitempty"`
	Burst       *int64            `json:"burst,omitempty" msgpack:"burst,omitempty"`
	Algorithm   string            `json:"algorithm,omitempty" msgpack:"algorithm,omitempty"`
	Cost        *int64            `json:"cost,omitempty" msgpack:"cost,omitempty"`
	Sync        string            `json:"sync,omitempty" msgpack:"sync,omitempty"`
	MaxWait     string            `json:"max_wait,omitempty" msgpack:"max_wait,omitempty"`
}

// answer is the API's answer to a check.
type answer struct {
	Allowed      bool   `json:"allowed" msgpack:"allowed"`
	Limit        int64  `json:"limit" msgpack:"limit"`
	PeriodMs     int64  `json:"period_ms" msgpack:"period_ms"`
	Burst        int64  `json:"burst" msgpack:"burst"`
	Algorithm    string `json:"algorithm" msgpack:"algorithm"`
	Remaining    int64  `json:"remaining" msgpack:"remaining"`
	ResetAfterMs int64  `json:"reset_after_ms" msgpack:"reset_after_ms"`
	RetryAfterMs int64  `json:"retry_after_ms" msgpack:"retry_after_ms"`
	WaitedMs     int64  `json:"waited_ms" msgpack:"waited_ms"`
	Rule         string `json:"rule" msgpack:"rule"`
	Owner        string `json:"owner" msgpack:"owner"`
	Error        string `json:"error" msgpack:"error"`
}

func (a *answer) result() Result {
	return Result{
		Allowed: a.Allowed, Limit: a.Limit, Remaining: a.Remaining, Burst: a.Burst, Algorithm: a.Algorithm,
		Period:     time.Duration(a.PeriodMs) * time.Millisecond,
		ResetAfter: time.Duration(a.ResetAfterMs) * time.Millisecond,
		RetryAfter: time.Duration(a.RetryAfterMs) * time.Millisecond,
		Waited:     time.Duration(a.WaitedMs) * time.Millisecond,
		Rule:       a.Rule, Owner: a.Owner,
	}
}

// ErrBadRequest is the sidecar refusing a check as malformed; the message
// names the field. It is never retried.
var ErrBadRequest = errors.New("client: bad request")

// ErrDeadline is Wait refusing at once because the tokens would not come
// before ctx's deadline.
var ErrDeadline = errors.New("client: tokens not available before the context deadline")

// Allow checks whether key may spend one token now.
func (c *Client) Allow(ctx context.Context, key string, opts ...Option) (Result, error) {
	return c.AllowN(ctx, key, 1, opts...)
}

// AllowN checks whether key may spend n tokens now (0 peeks).
func (c *Client) AllowN(ctx context.Context, key string, n int64, opts ...Option) (Result, error) {
	req := newRequest(key, n, opts)
	var a answer
	err := c.post(ctx, "/v1/check", req, &a, c.cfg.AttemptTimeout)
	if errors.Is(err, errUnavailable) {
		return c.unavailable(key, n, req), nil
	}
	if err != nil {
		return Result{}, err
	}
	return a.result(), nil
}

// Wait blocks until key's tokens are granted or ctx ends. If ctx has a
// deadline that the tokens cannot meet, it returns ErrDeadline at once and
// spends nothing. Without a deadline it waits up to 30s, the sidecar's
// default --max-wait.
func (c *Client) Wait(ctx context.Context, key string, opts ...Option) (Result, error) {
	return c.WaitN(ctx, key, 1, opts...)
}

// WaitN is Wait for n tokens.
func (c *Client) WaitN(ctx context.Context, key string, n int64, opts ...Option) (Result, error) {
	maxWait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		maxWait = time.Until(d) - c.cfg.AttemptTimeout // leave time for the answer
		if maxWait < 0 {
			return Result{}, ErrDeadline
		}
	}
	req := newRequest(key, n, opts)
	req.MaxWait = maxWait.Truncate(time.Millisecond).String()
	var a answer
	err := c.post(ctx, "/v1/wait", req, &a, maxWait+c.cfg.AttemptTimeout)
	switch {
	case errors.Is(err, errUnavailable):
		return c.unavailable(key, n, req), nil
	case err != nil:
		return Result{}, err
	case !a.Allowed && a.RetryAfterMs > 0:
		return a.result(), ErrDeadline
	}
	return a.result(), nil
}

// Check is one check of a batch.
type Check struct {
	Key     string
	N       int64
	Options []Option
}

// Batch decides up to 1,000 checks in one call, in order. If the sidecar
// cannot be reached, the stance decides each check.
func (c *Client) Batch(ctx context.Context, checks []Check) ([]Result, error) {
	body := struct {
		Checks []*request `json:"checks" msgpack:"checks"`
	}{}
	for _, ch := range checks {
		body.Checks = append(body.Checks, newRequest(ch.Key, ch.N, ch.Options))
	}
	var out struct {
		Results []answer `json:"results" msgpack:"results"`
		Error   string   `json:"error" msgpack:"error"`
	}
	err := c.post(ctx, "/v1/check/batch", body, &out, c.cfg.AttemptTimeout)
	if errors.Is(err, errUnavailable) {
		res := make([]Result, len(checks))
		for i, ch := range checks {
			res[i] = c.unavailable(ch.Key, ch.N, body.Checks[i])
		}
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	if len(out.Results) != len(checks) {
		return nil, fmt.Errorf("client: %d results for %d checks", len(out.Results), len(checks))
	}
	res := make([]Result, len(checks))
	for i := range out.Results {
		res[i] = out.Results[i].result()
	}
	return res, nil
}

func newRequest(key string, n int64, opts []Option) *request {
	r := &request{Key: key, Cost: &n}
	for _, o := range opts {
		o(r)
	}
	// Strings go out as encoding/json writes them, in either format.
	r.Key, r.Rule = validUTF8(r.Key), validUTF8(r.Rule)
	if r.Descriptors != nil {
		d := make(map[string]string, len(r.Descriptors))
		for k, v := range r.Descriptors {
			d[validUTF8(k)] = validUTF8(v)
		}
		r.Descriptors = d
	}
	return r
}

// unavailable decides by the stance and counts the choice.
func (c *Client) unavailable(key string, n int64, req *request) Result {
	c.stats.unavailable.Add(1)
	switch c.cfg.Stance {
	case FailClosed:
		c.stats.failClosed.Add(1)
		return Result{Unavailable: true}
	case FailLocal:
		c.stats.failLocal.Add(1)
		id := bucket.ID{Rule: req.Rule, Key: key}
		d := c.local.AllowN(time.Now(), id, c.cfg.Fallback, n)
		return Result{Allowed: d.Allowed, Limit: d.Limit, Period: c.cfg.Fallback.Period, Burst: c.cfg.Fallback.Burst,
			Remaining: d.Remaining, ResetAfter: d.ResetAfter, RetryAfter: d.RetryAfter, Unavailable: true}
	}
	c.stats.failOpen.Add(1)
	return Result{Allowed: true, Unavailable: true}
}

// Stats counts what the client did when the sidecar could not be reached.
type Stats struct {
	// Unavailable is the checks the sidecar could not answer.
	Unavailable uint64
	// FailOpen, FailClosed and FailLocal count how the stance decided them.
	FailOpen, FailClosed, FailLocal uint64
	// Retries is the attempts that were retries.
	Retries uint64
}

// Stats returns the client's counts so far.
func (c *Client) Stats() Stats {
	return Stats{
		Unavailable: c.stats.unavailable.Load(),
		FailOpen:    c.stats.failOpen.Load(), FailClosed: c.stats.failClosed.Load(), FailLocal: c.stats.failLocal.Load(),
		Retries: c.stats.retries.Load(),
	}
}
