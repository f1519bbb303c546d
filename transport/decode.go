package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// MaxDescriptors bounds the number of descriptor entries in one check.
const MaxDescriptors = 64

// checkJSON is a check as clients write it.
type checkJSON struct {
	Key         string            `json:"key"`
	Rule        string            `json:"rule"`
	Descriptors map[string]string `json:"descriptors"`
	Limit       *int64            `json:"limit"`
	Period      string            `json:"period"`
	Burst       *int64            `json:"burst"`
	Algorithm   string            `json:"algorithm"`
	Cost        *int64            `json:"cost"`
	Sync        string            `json:"sync"`
	MaxWait     string            `json:"max_wait"`

	ints [3]int64 // what Limit, Burst and Cost point to, set by the hand-written decoders
}

type batchJSON struct {
	Checks []checkJSON `json:"checks"`
}

func badField(field, format string, args ...any) error {
	return &rules.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// bodyDecoder decodes request bodies into values of one type, strictly:
// a name given twice, a name that is not exactly a field's, a string that
// is not valid UTF-8, a wrong type and data after the value are errors
// naming the field (see strictScan). It is safe for concurrent use.
type bodyDecoder struct {
	shape *shape
}

// newBodyDecoder returns a bodyDecoder for values of v's type.
func newBodyDecoder(v any) bodyDecoder {
	return bodyDecoder{shape: shapeOf(reflect.TypeOf(v))}
}

// decode decodes body into v.
func (d bodyDecoder) decode(body []byte, v any) error {
	if err := strictScan(body, d.shape); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// readBody appends r's data to buf. An error is an *http.MaxBytesError if r
// is a MaxBytesReader that hit its limit, and a FieldError otherwise.
func readBody(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return buf, nil
		case errors.As(err, new(*http.MaxBytesError)):
			return buf, err
		default:
			return buf, badField("body", "could not be read: %v", err)
		}
	}
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return badField(field, "must be %s, got JSON %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return badField("body", "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	return badField("body", "%v", err)
}

func jsonKind(kind string) string {
	switch kind {
	case "int64":
		return "an integer"
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	}
	return kind
}

// request validates a decoded check. allowWait says whether max_wait may be
// given; the parsed value is returned.
func (c *checkJSON) request(allowWait bool, maxWaitCap time.Duration) (cluster.Request, time.Duration, error) {
	req := cluster.Request{Key: c.Key, Rule: c.Rule, Descriptors: c.Descriptors, Cost: 1}
	if err := c.validateSelector(); err != nil {
		return req, 0, err
	}
	if c.Limit != nil {
		if c.Period == "" {
			return req, 0, badField("period", "is required with limit")
		}
		period, err := rules.ParsePeriod(c.Period)
		if err != nil {
			return req, 0, err
		}
		var burst int64
		if c.Burst != nil {
			if *c.Burst <= 0 {
				return req, 0, badField("burst", "must be a positive integer, got %d", *c.Burst)
			}
			burst = *c.Burst
		}
		algo, err := rules.ParseAlgorithm(c.Algorithm)
		if err != nil {
			return req, 0, badField("algorithm", "%v", err)
		}
		if req.Inline, err = rules.NewLimit(*c.Limit, period, burst, algo); err != nil {
			return req, 0, err
		}
	}
	if c.Cost != nil {
		if *c.Cost < 0 || *c.Cost > bucket.MaxTokens {
			return req, 0, badField("cost", "must be between 0 and %d, got %d", int64(bucket.MaxTokens), *c.Cost)
		}
		req.Cost = *c.Cost
	}
	if c.Sync != "" {
		s, err := rules.ParseSync(c.Sync)
		if err != nil {
			return req, 0, badField("sync", "%v", err)
		}
		req.Sync, req.SyncSet = s, true
	}
	var maxWait time.Duration
	switch {
	case c.MaxWait != "" && !allowWait:
		return req, 0, badField("max_wait", "only /v1/wait takes max_wait")
	case allowWait && c.MaxWait == "":
		return req, 0, badField("max_wait", "is required")
	case allowWait:
		d, err := time.ParseDuration(c.MaxWait)
		if err != nil {
			return req, 0, badField("max_wait", "%q is not a duration such as 500ms or 2s", c.MaxWait)
		}
		if d < 0 || d > maxWaitCap {
			return req, 0, badField("max_wait", "must be between 0s and %v, got %v", maxWaitCap, d)
		}
		maxWait = d
	}
	return req, maxWait, nil
}

// validateSelector checks that exactly one of rule, descriptors and an
// inline limit is given, with a key where one is needed.
func (c *checkJSON) validateSelector() error {
	n := 0
	for _, given := range []bool{c.Rule != "", c.Descriptors != nil, c.Limit != nil} {
		if given {
			n++
		}
	}
	switch {
	case n == 0:
		return badField("limit", "is required, or give rule or descriptors")
	case n > 1 && c.Rule != "" && c.Limit != nil:
		return badField("limit", "not allowed with rule (the rule sets the limit)")
	case n > 1:
		return badField("descriptors", "not allowed with rule or limit (they select the limit)")
	case c.Limit == nil && (c.Period != "" || c.Burst != nil || c.Algorithm != ""):
		return badField(inlineOnlyField(c), "only allowed with an inline limit")
	}
	if c.Descriptors != nil {
		if c.Key != "" {
			return badField("key", "not allowed with descriptors (the key is made from them)")
		}
		if len(c.Descriptors) == 0 || len(c.Descriptors) > MaxDescriptors {
			return badField("descriptors", "must have between 1 and %d entries, got %d", MaxDescriptors, len(c.Descriptors))
		}
		for k, v := range c.Descriptors {
			if k == "" || len(k)+len(v) > MaxKeyBytes {
				return badField("descriptors", "entry keys must be non-empty and entries at most %d bytes", MaxKeyBytes)
			}
		}
		return nil
	}
	if c.Key == "" {
		return badField("key", "is required")
	}
	if len(c.Key) > MaxKeyBytes {
		return badField("key", "must be at most %d bytes, got %d", MaxKeyBytes, len(c.Key))
	}
	return nil
}

func inlineOnlyField(c *checkJSON) string {
	switch {
	case c.Period != "":
		return "period"
	case c.Burst != nil:
		return "burst"
	}
	return "algorithm"
}

// queryCheck reads a check from GET query parameters: key, rule, limit,
// period, burst, cost, sync, algorithm, and descriptor entries as repeated
// "descriptor=name:value".
func queryCheck(q url.Values) (checkJSON, error) {
	var c checkJSON
	for name, vals := range q {
		if !utf8.ValidString(name) {
			return c, badField("query", "parameter names must be valid UTF-8")
		}
		if len(vals) != 1 && name != "descriptor" {
			return c, badField(name, "given %d times", len(vals))
		}
		for _, v := range vals {
			if !utf8.ValidString(v) {
				return c, badField(name, "must be valid UTF-8")
			}
		}
		v := vals[0]
		var err error
		switch name {
		case "key":
			c.Key = v
		case "rule":
			c.Rule = v
		case "period":
			c.Period = v
		case "algorithm":
			c.Algorithm = v
		case "sync":
			c.Sync = v
		case "limit":
			c.Limit, err = queryInt(name, v)
		case "burst":
			c.Burst, err = queryInt(name, v)
		case "cost":
			c.Cost, err = queryInt(name, v)
		case "descriptor":
			c.Descriptors = make(map[string]string, len(vals))
			for _, d := range vals {
				k, val, ok := strings.Cut(d, ":")
				if !ok {
					return c, badField("descriptor", "%q is not name:value", d)
				}
				c.Descriptors[k] = val
			}
		default:
			return c, badField(name, "unknown parameter")
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

func queryInt(name, v string) (*int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, badField(name, "must be an integer, got %q", v)
	}
	return &n, nil
}
