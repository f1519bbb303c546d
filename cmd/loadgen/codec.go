package main

import (
	"bytes"
	"strconv"

	"github.com/sluicerl/sluice/bucket"
)

// Request bodies are written by hand and answers read by scanning for the
// fields counted: the load generator shares the machine with the nodes,
// and every cycle it spends coding is one the nodes do not get.

// contentType is the Content-Type of a body in format ("json" or
// "msgpack"); a msgpack request without Accept is answered in msgpack.
func contentType(format string) string {
	if format == "msgpack" {
		return "application/msgpack"
	}
	return "application/json"
}

// encodeRequest appends the body of one request for keys: a check or a
// wait for one key, or a batch.
func encodeRequest(b []byte, keys []string, cfg Config, l bucket.Limit) []byte {
	if cfg.Format == "msgpack" {
		if cfg.Op == "batch" {
			b = append(b, 0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0xdc, byte(len(keys)>>8), byte(len(keys)))
		}
		for _, k := range keys {
			b = appendCheckMsgpack(b, k, cfg, l)
		}
		return b
	}
	if cfg.Op == "batch" {
		b = append(b, `{"checks":[`...)
	}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCheck(b, k, cfg, l)
	}
	if cfg.Op == "batch" {
		b = append(b, "]}"...)
	}
	return b
}

// appendCheck appends one check as JSON.
func appendCheck(b []byte, key string, cfg Config, l bucket.Limit) []byte {
	b = append(b, `{"key":`...)
	b = strconv.AppendQuote(b, key)
	if cfg.Rule != "" {
		b = append(b, `,"rule":`...)
		b = strconv.AppendQuote(b, cfg.Rule)
	} else {
		b = append(b, `,"limit":`...)
		b = strconv.AppendInt(b, l.Rate, 10)
		b = append(b, `,"period":`...)
		b = strconv.AppendQuote(b, l.Period.String())
		if l.Algo != bucket.TokenBucket {
			b = append(b, `,"algorithm":`...)
			b = strconv.AppendQuote(b, l.Algo.String())
		}
		if !l.Algo.Windowed() {
			b = append(b, `,"burst":`...)
			b = strconv.AppendInt(b, l.Burst, 10)
		}
	}
	if cfg.Sync != "" {
		b = append(b, `,"sync":`...)
		b = strconv.AppendQuote(b, cfg.Sync)
	}
	if cfg.Op == "wait" {
		b = append(b, `,"max_wait":"1s"`...)
	}
	return append(b, '}')
}

// appendCheckMsgpack appends one check as a msgpack map with the JSON
// check's names.
func appendCheckMsgpack(b []byte, key string, cfg Config, l bucket.Limit) []byte {
	at := len(b)
	b = append(b, 0x80)
	n := byte(0)
	field := func(name, value string) {
		b = mpStr(mpStr(b, name), value)
		n++
	}
	integer := func(name string, v int64) {
		b = append(mpStr(b, name), 0xd3, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		n++
	}
	field("key", key)
	if cfg.Rule != "" {
		field("rule", cfg.Rule)
	} else {
		integer("limit", l.Rate)
		field("period", l.Period.String())
		if l.Algo != bucket.TokenBucket {
			field("algorithm", l.Algo.String())
		}
		if !l.Algo.Windowed() {
			integer("burst", l.Burst)
		}
	}
	if cfg.Sync != "" {
		field("sync", cfg.Sync)
	}
	if cfg.Op == "wait" {
		field("max_wait", "1s")
	}
	b[at] |= n
	return b
}

// mpStr appends a msgpack string of up to 255 bytes.
func mpStr(b []byte, s string) []byte {
	if len(s) <= 31 {
		b = append(b, 0xa0|byte(len(s)))
	} else {
		b = append(b, 0xd9, byte(len(s)))
	}
	return append(b, s...)
}

// verdicts returns the "allowed" fields of an answer (one check, or the
// results of a batch), in order, and how many were fallbacks.
func verdicts(raw []byte, format string) ([]bool, int) {
	if format == "msgpack" {
		return flags(raw, []byte("\xa7allowed"), 0xc3), bytes.Count(raw, []byte("\xa8fallback\xc3"))
	}
	return allowedFlags(raw), bytes.Count(raw, []byte(`"fallback":true`))
}

// allowedFlags returns the "allowed" fields of a JSON answer, in order.
func allowedFlags(raw []byte) []bool {
	return flags(raw, []byte(`"allowed":`), 't')
}

// flags finds each name in raw and reports whether the byte after it is
// yes.
func flags(raw, name []byte, yes byte) []bool {
	var out []bool
	for {
		i := bytes.Index(raw, name)
		if i < 0 || i+len(name) >= len(raw) {
			return out
		}
		raw = raw[i+len(name):]
		out = append(out, raw[0] == yes)
	}
}
