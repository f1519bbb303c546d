package transport

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

// KeyAdmin inspects and resets keys and lists the keys denied most, for
// operators (a *cluster.Node).
type KeyAdmin interface {
	// Inspect reads a key's bucket without spending; it may ask the key's
	// owner over the network, within ctx.
	Inspect(ctx context.Context, req *cluster.Request) (cluster.Inspection, error)
	// Reset drops a key's bucket on every live member; it asks them over
	// the network, within ctx. An incomplete reset returns its report with
	// cluster.ErrResetIncomplete.
	Reset(ctx context.Context, req *cluster.Request) (cluster.ResetReport, error)
	// TopDenied returns the at most max keys denied most lately. It does
	// not block.
	TopDenied(max int) []cluster.DeniedKey
}

// maxAdminBody bounds the body of POST /v1/keys/reset.
const maxAdminBody = 64 << 10

// maxTopDenied bounds ?n= of /debug/top-denied.
const maxTopDenied = 256

// InspectView is GET /v1/keys/inspect's answer.
type InspectView struct {
	Rule      string  `json:"rule,omitempty"`
	Key       string  `json:"key"`
	Limit     int64   `json:"limit"`
	PeriodMs  int64   `json:"period_ms"`
	Burst     int64   `json:"burst"`
	Algorithm string  `json:"algorithm,omitempty"`
	Sync      string  `json:"sync"`
	Route     string  `json:"route"`
	Owner     string  `json:"owner,omitempty"`
	DecidedBy string  `json:"decided_by,omitempty"`
	Remaining int64   `json:"remaining"`
	Level     float64 `json:"level"`
	ResetMs   int64   `json:"reset_after_ms"`
	RetryMs   int64   `json:"retry_after_ms"`
	Leased    int64   `json:"leased_here"`
	LeasedOut int64   `json:"leased_out"`
	// LeasesUnknown are members that could not be asked for their leases.
	LeasesUnknown []string `json:"leases_unknown,omitempty"`
	// Unreachable: the owner could not be asked; the figures are unknown.
	Unreachable bool `json:"unreachable,omitempty"`
}

// ResetView is POST /v1/keys/reset's answer.
type ResetView struct {
	Rule     string         `json:"rule,omitempty"`
	Key      string         `json:"key"`
	Limit    int64          `json:"limit"`
	PeriodMs int64          `json:"period_ms"`
	Sync     string         `json:"sync"`
	Route    string         `json:"route"`
	Owner    string         `json:"owner,omitempty"`
	Complete bool           `json:"complete"`
	Members  []ResetAckView `json:"members"`
	Error    string         `json:"error,omitempty"`
}

// ResetAckView is one member's answer to a reset.
type ResetAckView struct {
	Name  string `json:"name"`
	Reset bool   `json:"reset"`
	Error string `json:"error,omitempty"`
}

// DeniedKeyView is a key on /debug/top-denied and the status page.
type DeniedKeyView struct {
	Rule      string `json:"rule,omitempty"`
	Key       string `json:"key"`
	Limit     int64  `json:"limit,omitempty"`
	PeriodMs  int64  `json:"period_ms,omitempty"`
	Denied    uint64 `json:"denied"`
	Overcount uint64 `json:"overcount"`
}

// DeniedKeyViews returns keys as /debug/top-denied shows them.
func DeniedKeyViews(keys []cluster.DeniedKey) []DeniedKeyView {
	out := make([]DeniedKeyView, 0, len(keys))
	for _, k := range keys {
		v := DeniedKeyView{Rule: k.Rule, Key: k.Key, Denied: k.Denied, Overcount: k.Overcount}
		if k.Inline != (bucket.Limit{}) {
			v.Limit, v.PeriodMs = k.Inline.Rate, k.Inline.Period.Milliseconds()
		}
		out = append(out, v)
	}
	return out
}

func inspectView(in cluster.Inspection) InspectView {
	v := InspectView{Rule: in.Rule, Key: in.Key, Limit: in.Limit.Rate, PeriodMs: in.Limit.Period.Milliseconds(),
		Burst: in.Limit.Burst, Sync: in.Sync.String(), Route: in.Route, Owner: in.Owner, DecidedBy: in.DecidedBy,
		Remaining: in.Remaining, Level: in.Level, ResetMs: ceilMillis(in.ResetAfter), RetryMs: ceilMillis(in.RetryAfter),
		Leased: in.LeasedHere, LeasedOut: in.LeasedOut, LeasesUnknown: in.LeasesUnknown, Unreachable: in.Unreachable}
	if in.Limit.Algo != bucket.TokenBucket {
		v.Algorithm = in.Limit.Algo.String()
	}
	return v
}

func resetView(r cluster.ResetReport) ResetView {
	v := ResetView{Rule: r.Rule, Key: r.Key, Limit: r.Limit.Rate, PeriodMs: r.Limit.Period.Milliseconds(), Sync: r.Sync.String(), Route: r.Route, Owner: r.Owner, Complete: r.Complete(), Members: []ResetAckView{}}
	for _, a := range r.Members {
		av := ResetAckView{Name: a.Member, Reset: a.Err == nil}
		if a.Err != nil {
			av.Error = a.Err.Error()
		}
		v.Members = append(v.Members, av)
	}
	return v
}

// keysHandlers serves the operators' key endpoints, each behind guard.
func keysHandlers(mux *http.ServeMux, keys KeyAdmin, token string) {
	body := newBodyDecoder(checkJSON{})
	mux.Handle("GET /v1/keys/inspect", guard(token, func(w http.ResponseWriter, r *http.Request) {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			adminFail(w, badField("query", "%v", err))
			return
		}
		c, err := queryCheck(q)
		if err != nil {
			adminFail(w, err)
			return
		}
		req, err := keyRequest(&c)
		if err != nil {
			adminFail(w, err)
			return
		}
		in, err := keys.Inspect(r.Context(), &req)
		if err != nil {
			adminFail(w, err)
			return
		}
		writeValue(w, http.StatusOK, inspectView(in))
	}))
	mux.Handle("POST /v1/keys/reset", guard(token, func(w http.ResponseWriter, r *http.Request) {
		raw, err := readBody(http.MaxBytesReader(w, r.Body, maxAdminBody), nil)
		if err != nil {
			adminFail(w, err)
			return
		}
		var c checkJSON
		if err := body.decode(raw, &c); err != nil {
			adminFail(w, err)
			return
		}
		req, err := keyRequest(&c)
		if err != nil {
			adminFail(w, err)
			return
		}
		rep, err := keys.Reset(r.Context(), &req)
		switch {
		case errors.Is(err, cluster.ErrResetIncomplete):
			v := resetView(rep)
			v.Error = err.Error()
			writeValue(w, http.StatusServiceUnavailable, v)
		case err != nil:
			adminFail(w, err)
		default:
			writeValue(w, http.StatusOK, resetView(rep))
		}
	}))
	mux.Handle("GET /debug/top-denied", guard(token, func(w http.ResponseWriter, r *http.Request) {
		n := 20
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > maxTopDenied {
				adminFail(w, badField("n", "must be an integer from 1 to %d, got %q", maxTopDenied, s))
				return
			}
			n = v
		}
		writeValue(w, http.StatusOK, map[string]any{"keys": DeniedKeyViews(keys.TopDenied(n))})
	}))
}

// keyRequest validates a key selector for inspect and reset: as a check's
// (rule, descriptors or an inline limit, with a key), without a cost or a
// wait.
func keyRequest(c *checkJSON) (cluster.Request, error) {
	switch {
	case c.Cost != nil:
		return cluster.Request{}, badField("cost", "not taken here: nothing is spent")
	case c.MaxWait != "":
		return cluster.Request{}, badField("max_wait", "not taken here")
	}
	req, _, err := c.request(false, 0)
	req.Cost = 0
	return req, err
}

// adminFail writes err as a JSON error with the status status gives it.
func adminFail(w http.ResponseWriter, err error) {
	code, msg := status(err)
	if code == statusClientClosed {
		return
	}
	writeValue(w, code, map[string]string{"error": msg})
}

// guard lets a request through to h if it carries the admin token
// ("Authorization: Bearer <token>"), or, when no token is set, if it
// comes from a loopback address or over a Unix socket. The admin port binds to loopback by
// default; a node that serves it to the network (a container's probes)
// keeps these endpoints to loopback clients unless it has a token.
func guard(token string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch code := authorize(token, r); code {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
			writeValue(w, code, map[string]string{"error": "authorization: a valid admin token is required (Authorization: Bearer <token>; the node's --admin-token)"})
		case http.StatusForbidden:
			writeValue(w, code, map[string]string{"error": "authorization: this endpoint answers loopback clients only, unless the node is started with --admin-token"})
		default:
			h(w, r)
		}
	})
}

// authorize says whether r may use the guarded endpoints: 0 if it may,
// else the status of the refusal (401 for a missing or wrong token when
// one is set, 403 for a client that is not on loopback when none is).
func authorize(token string, r *http.Request) int {
	if token != "" {
		// The scheme is case-insensitive (RFC 9110, 11.1): "bearer" too.
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return http.StatusUnauthorized
		}
		return 0
	}
	if _, unix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); unix {
		return 0 // a Unix socket: its file mode says who may connect
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return http.StatusForbidden
	}
	return 0
}
