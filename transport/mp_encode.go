package transport

import (
	"encoding/binary"
	"math"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
)

// msgpack answers hold the fields of the JSON answers (appendResult), with
// the same names and values, as a msgpack map; a batch's is
// {"results": [...]}. They are written by hand into the pooled buffer.

// appendResultMsgpack appends a check result as a msgpack map.
func appendResultMsgpack(b []byte, res *cluster.Result, waited bool) []byte {
	start := len(b)
	b = append(b, 0xde, 0, 0) // map16; its length is written at the end
	n := 0
	field := func(name string) {
		b = mpAppendStr(b, name)
		n++
	}
	field("allowed")
	b = mpAppendBool(b, res.Allowed)
	field("limit")
	b = mpAppendInt(b, res.Policy.Rate)
	field("period_ms")
	b = mpAppendInt(b, ceilMillis(res.Policy.Period))
	if !res.Policy.Algo.Windowed() {
		field("burst")
		b = mpAppendInt(b, res.Policy.Burst)
	}
	if res.Policy.Algo != bucket.TokenBucket {
		field("algorithm")
		b = mpAppendStr(b, res.Policy.Algo.String())
	}
	field("remaining")
	b = mpAppendInt(b, res.Remaining)
	field("reset_after_ms")
	b = mpAppendInt(b, ceilMillis(res.ResetAfter))
	field("retry_after_ms")
	b = mpAppendInt(b, ceilMillis(res.RetryAfter))
	if waited {
		field("waited_ms")
		b = mpAppendInt(b, ceilMillis(res.Waited))
	}
	if res.Rule != "" {
		field("rule")
		b = mpAppendStr(b, res.Rule)
	}
	field("sync")
	b = mpAppendStr(b, res.Sync.String())
	if res.Owner != "" {
		field("owner")
		b = mpAppendStr(b, res.Owner)
	}
	if res.Fallback {
		field("fallback")
		b = mpAppendBool(b, true)
	}
	if res.TooLarge {
		field("reason")
		if res.Policy.Algo.Windowed() {
			b = mpAppendStr(b, "cost exceeds limit")
		} else {
			b = mpAppendStr(b, "cost exceeds burst")
		}
	}
	if res.Shadow {
		field("shadow")
		b = mpAppendBool(b, true)
		field("shadow_denied")
		b = mpAppendBool(b, res.ShadowDenied)
	}
	binary.BigEndian.PutUint16(b[start+1:], uint16(n))
	return b
}

// mpAppendArrayLen appends an array header for n elements.
func mpAppendArrayLen(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// mpAppendStr appends s as a msgpack string, in the shortest form.
func mpAppendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

// mpAppendInt appends v in the shortest form that holds it.
func mpAppendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= 0x7f:
		return append(b, byte(v))
	case v < 0 && v >= -32:
		return append(b, byte(v))
	case v >= 0 && v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v >= 0 && v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	case v >= math.MinInt8 && v < 0:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16 && v < 0:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v < 0:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	case v > 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

func mpAppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}
