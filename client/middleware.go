package client

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Middleware checks every request against the sidecar, with the key that
// key returns (an empty key lets the request through unchecked). A denied
// request gets a 429 with RateLimit-Policy, RateLimit and Retry-After
// headers and never reaches next. A key the sidecar refuses (ErrBadRequest:
// a key over its size limit, a rule it does not have) gets a 400: a caller
// must not escape its limit by sending a key that cannot be counted. Any
// other error lets the request through (a limiter fault must not take the
// service down); the client's Stance already decides when the sidecar is
// unreachable.
func Middleware(c *Client, key func(*http.Request) string, opts ...Option) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k := key(r)
			if k == "" {
				next.ServeHTTP(w, r)
				return
			}
			res, err := c.Allow(r.Context(), k, opts...)
			if errors.Is(err, ErrBadRequest) {
				// The sidecar refused the key (too long, say): a request
				// whose key cannot be limited is not let through.
				http.Error(w, "rate limit key refused", http.StatusBadRequest)
				return
			}
			if err != nil {
				next.ServeHTTP(w, r)
				return
			}
			if res.Limit > 0 {
				setHeaders(w.Header(), &res)
			}
			if !res.Allowed {
				if res.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(res.RetryAfter), 10))
				}
				http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// setHeaders writes the IETF httpapi ratelimit-headers draft's fields.
func setHeaders(h http.Header, res *Result) {
	name := res.Rule
	if name == "" {
		name = "inline"
	}
	quota, window := res.Limit, ceilSeconds(res.Period)
	if res.Period > 0 && res.Period < time.Second {
		quota, window = int64(float64(res.Limit)*float64(time.Second)/float64(res.Period)), 1
	}
	h.Set("RateLimit-Policy", strconv.Quote(name)+";q="+strconv.FormatInt(quota, 10)+";w="+strconv.FormatInt(window, 10))
	h.Set("RateLimit", strconv.Quote(name)+";r="+strconv.FormatInt(res.Remaining, 10)+";t="+strconv.FormatInt(ceilSeconds(res.ResetAfter), 10))
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
