package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Format is the format of the bodies the client sends and reads.
type Format uint8

const (
	// Msgpack bodies (Content-Type and Accept application/msgpack): the
	// default, and the cheaper for the sidecar to decode.
	Msgpack Format = iota
	// JSON bodies, as curl sends them.
	JSON
)

// msgpackType is the media type of msgpack bodies.
const msgpackType = "application/msgpack"

// errJSONOnly is a sidecar that read a msgpack body as JSON: one of a
// release before msgpack bodies.
var errJSONOnly = errors.New("client: the sidecar reads JSON bodies only")

// format is the format to send in: Config.Format, or JSON once the
// sidecar turned out to read nothing else.
func (c *Client) format() Format {
	if c.jsonOnly.Load() {
		return JSON
	}
	return c.cfg.Format
}

// encode encodes body in format.
func encode(format Format, body any) ([]byte, error) {
	var payload []byte
	var err error
	if format == JSON {
		payload, err = json.Marshal(body)
	} else {
		payload, err = msgpack.Marshal(body)
	}
	if err != nil {
		return nil, fmt.Errorf("client: encode request: %w", err)
	}
	return payload, nil
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json writes a string: a key reaches the
// sidecar the same, and lands in the same bucket, in either format.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// errUnavailable is every attempt failing to reach the sidecar.
var errUnavailable = errors.New("client: sidecar unavailable")

// post posts body to path in the client's format, retrying transport
// failures and 5xx answers, and decodes the answer (200, or a denial) into
// out.
func (c *Client) post(ctx context.Context, path string, body, out any, attemptTimeout time.Duration) error {
	format := c.format()
	payload, err := encode(format, body)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt <= max(c.cfg.Retries, 0); attempt++ {
		if attempt > 0 {
			c.stats.retries.Add(1)
			if err := sleep(ctx, c.backoff(attempt-1)); err != nil {
				return err
			}
		}
		retry, err := c.attempt(ctx, path, format, payload, out, attemptTimeout)
		if errors.Is(err, errJSONOnly) && format == Msgpack {
			// A sidecar of an older release reads every body as JSON:
			// speak JSON to it from now on, and ask again at once.
			c.jsonOnly.Store(true)
			format = JSON
			if payload, err = encode(format, body); err != nil {
				return err
			}
			attempt--
			continue
		}
		if err == nil || !retry {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
	}
	return fmt.Errorf("%w: %v", errUnavailable, last)
}

// attempt makes one request and reports whether a failure may be retried.
// Answers come in the client's format; errors are JSON whatever the format.
func (c *Client) attempt(ctx context.Context, path string, format Format, payload []byte, out any, timeout time.Duration) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.cfg.URL+path, bytes.NewReader(payload))
	if err != nil {
		return false, fmt.Errorf("client: %w", err)
	}
	if format == JSON {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", msgpackType)
		req.Header.Set("Accept", msgpackType)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return true, err
	}
	decision := resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusForbidden
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == msgpackType {
		if !decision {
			return resp.StatusCode >= 500, fmt.Errorf("client: sidecar answered %d in msgpack", resp.StatusCode)
		}
		if err := msgpack.Unmarshal(data, out); err != nil {
			return false, fmt.Errorf("client: answer does not decode: %w", err)
		}
		return false, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return resp.StatusCode >= 500, fmt.Errorf("client: %d answer is not JSON: %q", resp.StatusCode, data)
	}
	switch {
	case e.Error == "" && decision:
		return false, json.Unmarshal(data, out)
	case resp.StatusCode >= 500:
		return true, fmt.Errorf("client: sidecar answered %d: %s", resp.StatusCode, e.Error)
	case format == Msgpack && resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(e.Error, "body: malformed JSON"):
		return false, errJSONOnly
	}
	return false, fmt.Errorf("%w: %s", ErrBadRequest, e.Error)
}

// backoff is full jitter: uniform in [0, min(max, base·2^k)).
func (c *Client) backoff(k int) time.Duration {
	ceiling := min(c.cfg.BackoffMax, c.cfg.BackoffBase<<min(k, 30))
	return time.Duration(c.cfg.Rand() * float64(ceiling))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
