package transport

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

// appendResult appends a check result as a JSON object. Durations are whole
// milliseconds rounded up, so a client told to come back after
// retry_after_ms never comes back too early.
func appendResult(b []byte, res *cluster.Result, waited bool) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, res.Allowed)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, res.Policy.Rate, 10)
	b = append(b, `,"period_ms":`...)
	b = strconv.AppendInt(b, ceilMillis(res.Policy.Period), 10)
	if !res.Policy.Algo.Windowed() {
		b = append(b, `,"burst":`...)
		b = strconv.AppendInt(b, res.Policy.Burst, 10)
	}
	if res.Policy.Algo != bucket.TokenBucket {
		b = append(b, `,"algorithm":"`...)
		b = append(b, res.Policy.Algo.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, res.Remaining, 10)
	b = append(b, `,"reset_after_ms":`...)
	b = strconv.AppendInt(b, ceilMillis(res.ResetAfter), 10)
	b = append(b, `,"retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilMillis(res.RetryAfter), 10)
	if waited {
		b = append(b, `,"waited_ms":`...)
		b = strconv.AppendInt(b, ceilMillis(res.Waited), 10)
	}
	if res.Rule != "" {
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, res.Rule)
	}
	b = append(b, `,"sync":"`...)
	b = append(b, res.Sync.String()...)
	b = append(b, '"')
	if res.Owner != "" {
		b = append(b, `,"owner":`...)
		b = appendJSONString(b, res.Owner)
	}
	if res.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	if res.TooLarge {
		if res.Policy.Algo.Windowed() {
			b = append(b, `,"reason":"cost exceeds limit"`...)
		} else {
			b = append(b, `,"reason":"cost exceeds burst"`...)
		}
	}
	if res.Shadow {
		b = append(b, `,"shadow":true,"shadow_denied":`...)
		b = strconv.AppendBool(b, res.ShadowDenied)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. strconv.AppendQuote is Go
// syntax, not JSON: it writes \x01 for a control character and \U for a
// rune outside the BMP that is not printable. Invalid UTF-8 becomes U+FFFD,
// as encoding/json writes it; U+2028 and U+2029 are escaped for JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// policyName is the policy's name in the RateLimit headers.
func policyName(res *cluster.Result) string {
	if res.Rule == "" {
		return "inline"
	}
	return res.Rule
}

// policyHeader formats RateLimit-Policy as in the IETF httpapi
// ratelimit-headers draft: `"name";q=quota;w=window-seconds`.
func policyHeader(res *cluster.Result) string {
	quota, window := policyWindow(res.Policy)
	b := make([]byte, 0, 48)
	b = strconv.AppendQuote(b, policyName(res))
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, quota, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, window, 10)
	return string(b)
}

// rateLimitHeader formats RateLimit: `"name";r=remaining;t=seconds-to-reset`.
func rateLimitHeader(res *cluster.Result) string {
	b := make([]byte, 0, 48)
	b = strconv.AppendQuote(b, policyName(res))
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, res.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, ceilSeconds(res.ResetAfter), 10)
	return string(b)
}

// policyWindow expresses a limit as a quota per whole-second window, as the
// headers require: a period of a second or more as is, rounded up to whole
// seconds; a shorter one scaled to the tokens it allows per second.
func policyWindow(l bucket.Limit) (quota, seconds int64) {
	if l.Period >= time.Second {
		return l.Rate, ceilSeconds(l.Period)
	}
	perSec := float64(l.Rate) * float64(time.Second) / float64(l.Period)
	return int64(math.Min(perSec, bucket.MaxTokens)), 1
}
