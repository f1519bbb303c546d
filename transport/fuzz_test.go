package transport

import (
	"errors"
	"net/url"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// FuzzDecodeCheck feeds arbitrary bodies to the check decoder: it must never
// panic, every rejection must be a FieldError (a 400 naming a field), and
// every accepted request must satisfy the API's bounds.
func FuzzDecodeCheck(f *testing.F) {
	for _, seed := range []string{
		`{"key": "k", "limit": 10, "period": "1s"}`,
		`{"key": "k", "limit": 10, "period": "1s", "burst": 20, "cost": 3, "sync": "owner", "algorithm": "token_bucket"}`,
		`{"rule": "api", "key": "k", "cost": 0}`,
		`{"descriptors": {"route": "/api", "user": "42"}}`,
		`{"key": "k", "limit": 9007199254740993, "period": "8784h1ns"}`,
		`{"key": "k", "limit": 1e3, "period": "1s"}`,
		`{"key": "k", "limit": 10, "period": "1s", "max_wait": "1s"}`,
		`{"key": "\u0000", "limit": -0, "period": "-1s"}`,
		`[]`, `null`, `{"key": {}}`, `{"descriptors": null, "key": "k", "limit": 1, "period": "1ms"}`,
		`{"key": "k", "limit": 1, "period": "1s", "limit": 2}`, "{\"key\": \"\xff\", \"limit\": 1, \"period\": \"1s\"}",
		`{"descriptors": {"a": "\ud800", "A": "\ufffd"}}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, wait bool) {
		var c checkJSON
		err := newBodyDecoder(&checkJSON{}).decode(body, &c)
		var req cluster.Request
		var maxWait time.Duration
		if err == nil {
			req, maxWait, err = c.request(wait, time.Minute)
		}
		if err != nil {
			if _, ok := errors.AsType[*rules.FieldError](err); !ok {
				t.Fatalf("rejection is not a FieldError: %T %v", err, err)
			}
			return
		}
		checkBounds(t, &req, maxWait)
	})
}

// FuzzQueryCheck does the same for GET query strings.
func FuzzQueryCheck(f *testing.F) {
	for _, seed := range []string{
		"key=k&limit=10&period=1s", "rule=api&key=k&cost=2", "descriptor=route:/api&descriptor=user:1",
		"key=k&limit=10&period=1s&burst=-1", "key=%zz", "descriptor=nocolon", "key=%FF&limit=1&period=1s", "descriptor=%FE:1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		c, err := queryCheck(q)
		var req cluster.Request
		if err == nil {
			req, _, err = c.request(false, 0)
		}
		if err != nil {
			if _, ok := errors.AsType[*rules.FieldError](err); !ok {
				t.Fatalf("rejection is not a FieldError: %T %v", err, err)
			}
			return
		}
		checkBounds(t, &req, 0)
	})
}

func checkBounds(t *testing.T, req *cluster.Request, maxWait time.Duration) {
	t.Helper()
	selectors := 0
	for _, given := range []bool{req.Rule != "", req.Descriptors != nil, req.Inline != (bucket.Limit{})} {
		if given {
			selectors++
		}
	}
	switch {
	case selectors != 1:
		t.Fatalf("accepted with %d selectors: %+v", selectors, req)
	case req.Descriptors == nil && (req.Key == "" || len(req.Key) > MaxKeyBytes):
		t.Fatalf("accepted key of %d bytes", len(req.Key))
	case req.Cost < 0 || req.Cost > bucket.MaxTokens:
		t.Fatalf("accepted cost %d", req.Cost)
	case maxWait < 0 || maxWait > time.Minute:
		t.Fatalf("accepted max_wait %v", maxWait)
	case !utf8.ValidString(req.Key) || !utf8.ValidString(req.Rule):
		t.Fatalf("accepted invalid UTF-8: key %q rule %q", req.Key, req.Rule)
	}
	for k, v := range req.Descriptors {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Fatalf("accepted invalid UTF-8 in descriptor %q: %q", k, v)
		}
	}
	if l := req.Inline; l != (bucket.Limit{}) {
		if l.Rate <= 0 || l.Rate > bucket.MaxTokens || l.Burst <= 0 || l.Burst > bucket.MaxTokens ||
			l.Period < rules.MinPeriod || l.Period > rules.MaxPeriod {
			t.Fatalf("accepted limit %+v", l)
		}
	}
}
