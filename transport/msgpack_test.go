package transport_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/transport"
)

// mpResponse is an answer to a msgpack request, decoded.
type mpResponse struct {
	code        int
	contentType string
	body        map[string]any
	raw         []byte
}

// doMsgpack posts body as msgpack, asking for msgpack, and decodes the
// answer: msgpack, or JSON for an error.
func doMsgpack(t *testing.T, h http.Handler, target string, body []byte) mpResponse {
	t.Helper()
	req := httptest.NewRequest("POST", target, bytes.NewReader(body))
	req.Header.Set("Content-Type", transport.MsgpackType)
	req.Header.Set("Accept", transport.MsgpackType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := mpResponse{code: rec.Code, contentType: rec.Header().Get("Content-Type"), raw: rec.Body.Bytes()}
	var err error
	switch r.contentType {
	case transport.MsgpackType:
		err = msgpack.Unmarshal(r.raw, &r.body)
	case "application/json":
		err = json.Unmarshal(r.raw, &r.body)
	default:
		t.Fatalf("Content-Type %q", r.contentType)
	}
	if err != nil {
		t.Fatalf("%s: answer does not decode as %s: %v: %q", target, r.contentType, err, r.raw)
	}
	return r
}

// jsonToMsgpack writes the JSON values in s as msgpack, keeping what a
// JSON library would lose: the order of names, names given twice, and
// invalid UTF-8 (a lone surrogate escape becomes its three UTF-8-like
// bytes, which are not valid UTF-8). Integers stay integers, other
// numbers become floats. It reports false for malformed JSON.
func jsonToMsgpack(s string) ([]byte, bool) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	p := &jsonToMP{s: s, enc: enc}
	for p.space(); p.i < len(s); p.space() {
		if !p.value() {
			return nil, false
		}
	}
	return buf.Bytes(), true
}

type jsonToMP struct {
	s   string
	i   int
	enc *msgpack.Encoder
}

func (p *jsonToMP) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *jsonToMP) value() bool {
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; {
	case c == '{' || c == '[':
		return p.container(c == '{')
	case c == '"':
		str, ok := p.str()
		return ok && p.enc.EncodeString(str) == nil
	case strings.HasPrefix(p.s[p.i:], "true"):
		p.i += 4
		return p.enc.EncodeBool(true) == nil
	case strings.HasPrefix(p.s[p.i:], "false"):
		p.i += 5
		return p.enc.EncodeBool(false) == nil
	case strings.HasPrefix(p.s[p.i:], "null"):
		p.i += 4
		return p.enc.EncodeNil() == nil
	}
	start := p.i
	for p.i < len(p.s) && strings.IndexByte("+-.0123456789eE", p.s[p.i]) >= 0 {
		p.i++
	}
	num := p.s[start:p.i]
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		return p.enc.EncodeInt(n) == nil
	}
	f, err := strconv.ParseFloat(num, 64)
	return err == nil && p.enc.EncodeFloat64(f) == nil
}

// container converts an object or array: its members into a buffer of
// their own, then the header with their count, then the members.
func (p *jsonToMP) container(object bool) bool {
	closing := byte(']')
	if object {
		closing = '}'
	}
	p.i++
	var inner bytes.Buffer
	outer := p.enc
	p.enc = msgpack.NewEncoder(&inner)
	defer func() { p.enc = outer }()
	n := 0
	for p.space(); p.i < len(p.s) && p.s[p.i] != closing; p.space() {
		if n > 0 {
			if p.s[p.i] != ',' {
				return false
			}
			p.i++
			p.space()
		}
		if object {
			if !p.value() {
				return false
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return false
			}
			p.i++
			p.space()
		}
		if !p.value() {
			return false
		}
		n++
	}
	if p.i >= len(p.s) {
		return false
	}
	p.i++
	if object {
		_ = outer.EncodeMapLen(n)
	} else {
		_ = outer.EncodeArrayLen(n)
	}
	_, err := outer.Writer().Write(inner.Bytes())
	return err == nil
}

func (p *jsonToMP) str() (string, bool) {
	p.i++
	var b []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), true
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", false
		}
		e := p.s[p.i+1]
		p.i += 2
		if e != 'u' {
			b = append(b, map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}[e])
			continue
		}
		r1, ok := p.hex()
		if !ok {
			return "", false
		}
		if utf16.IsSurrogate(r1) && strings.HasPrefix(p.s[p.i:], `\u`) {
			save := p.i
			p.i += 2
			if r2, ok := p.hex(); ok && utf16.DecodeRune(r1, r2) != utf8.RuneError {
				b = utf8.AppendRune(b, utf16.DecodeRune(r1, r2))
				continue
			}
			p.i = save
		}
		if utf16.IsSurrogate(r1) { // as UTF-8 would write it if it could: not valid UTF-8
			b = append(b, 0xe0|byte(r1>>12), 0x80|byte(r1>>6)&0x3f, 0x80|byte(r1)&0x3f)
			continue
		}
		b = utf8.AppendRune(b, r1)
	}
	return "", false
}

func (p *jsonToMP) hex() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	p.i += 4
	return rune(v), err == nil
}

// TestJSONToMsgpack checks the converter the msgpack tests rely on.
func TestJSONToMsgpack(t *testing.T) {
	got, ok := jsonToMsgpack(`{"a": 1, "a": [true, false, null, -2, 1.5], "\u0062": "\ud800\ud83d\ude00"}`)
	if !ok {
		t.Fatal("refused")
	}
	want := []byte{0x83, 0xa1, 'a', 0x01, 0xa1, 'a', 0x95, 0xc3, 0xc2, 0xc0, 0xfe, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xa1, 'b',
		0xa7, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0x80}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
	if _, ok := jsonToMsgpack(`{"a": 1,`); ok {
		t.Fatal("malformed JSON converted")
	}
}

// TestMsgpackBadInput sends every bad POST body of TestBadInput again in
// msgpack: the same status, the same field named, and no state changed.
func TestMsgpackBadInput(t *testing.T) {
	for _, tc := range badInputs {
		if tc.method != "POST" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			body, ok := jsonToMsgpack(tc.body)
			if !ok { // malformed JSON: a map that ends too soon
				body = []byte{0x83, 0xa3, 'k', 'e', 'y', 0xa6, 'v', 'i', 'c', 't', 'i', 'm', 0xa5, 'l', 'i', 'm', 'i', 't', 0x01}
			}
			h := newAPI(t, transport.ServerConfig{})
			r := doMsgpack(t, h, tc.target, body)
			msg, _ := r.body["error"].(string)
			if r.code != 400 || r.contentType != "application/json" || !strings.HasPrefix(msg, tc.field+":") {
				t.Fatalf("status %d, %s error %q; want 400 naming %q", r.code, r.contentType, msg, tc.field)
			}
			assertVictimFull(t, h)
		})
	}
}

// assertVictimFull fails unless the key "victim" (limit 1 a second) still
// holds its token, asked in msgpack.
func assertVictimFull(t *testing.T, h http.Handler) {
	t.Helper()
	body, _ := jsonToMsgpack(`{"key": "victim", "limit": 1, "period": "1s", "cost": 0}`)
	after := doMsgpack(t, h, "/v1/check", body)
	if after.code != 200 || mpNum(after.body["remaining"]) != 1 {
		t.Fatalf("bad input changed state: %d %v", after.code, after.body)
	}
}

// mpNum reads an integer decoded from msgpack, whatever its width.
func mpNum(v any) int64 {
	switch n := v.(type) {
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	}
	return -1
}
