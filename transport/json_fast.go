package transport

import (
	"bytes"
	"unicode/utf8"
)

// The JSON fast path: checks and batches as clients almost always write
// them (exact names, each once; strings without escapes; integers written
// as plain digits; no nulls) are decoded here in one pass, by hand, with
// no reflection and one allocation per string kept. Anything else, valid
// or not, is declined: the body then goes through strictScan and
// encoding/json as before, which accept the rest of JSON and word every
// error. So the fast path never decides what is an error, and never
// accepts what the slow path would refuse; FuzzFastJSON holds it to that.

// jsonFast reads one body.
type jsonFast struct {
	data []byte
	pos  int
}

// fastCheckJSON decodes a check or wait body into c, or declines (false),
// leaving c partly filled.
func fastCheckJSON(body []byte, c *checkJSON) bool {
	p := jsonFast{data: body}
	p.space()
	if !p.check(c) {
		return false
	}
	p.space()
	return p.pos == len(p.data)
}

// fastBatchJSON decodes a batch body into b, or declines.
func fastBatchJSON(body []byte, b *batchJSON) bool {
	p := jsonFast{data: body}
	p.space()
	if !p.is('{') {
		return false
	}
	p.space()
	if name, ok := p.str(); !ok || string(name) != "checks" {
		return false
	}
	p.space()
	if !p.is(':') {
		return false
	}
	p.space()
	if !p.is('[') {
		return false
	}
	// Each check opens a brace: room for them all, so the slice rarely grows.
	checks := b.checksFor(min(bytes.Count(p.data[p.pos:], []byte{'{'}), MaxBatch))[:0]
	p.space()
	if !p.is(']') {
		for {
			if len(checks) == MaxBatch {
				return false // the slow path words the error
			}
			checks = append(checks, checkJSON{})
			p.space()
			if !p.check(&checks[len(checks)-1]) {
				return false
			}
			p.space()
			if p.is(',') {
				continue
			}
			if p.is(']') {
				break
			}
			return false
		}
	}
	p.space()
	if !p.is('}') {
		return false
	}
	p.space()
	if p.pos != len(p.data) {
		return false
	}
	for i := range checks {
		checks[i].repoint() // the slice may have grown under them
	}
	b.Checks = checks
	return true
}

func (p *jsonFast) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// is consumes c if it is next.
func (p *jsonFast) is(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// check reads one check object.
func (p *jsonFast) check(c *checkJSON) bool {
	if !p.is('{') {
		return false
	}
	p.space()
	if p.is('}') {
		return true
	}
	var seen uint16
	for {
		p.space()
		name, ok := p.str()
		if !ok {
			return false
		}
		f := checkField(name)
		if f == fieldNone || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		p.space()
		if !p.is(':') {
			return false
		}
		p.space()
		switch {
		case f == fieldDescriptors:
			if !p.descriptors(c) {
				return false
			}
		case isIntField(f):
			v, ok := p.int()
			if !ok {
				return false
			}
			c.setInt(f, v)
		default:
			v, ok := p.str()
			if !ok {
				return false
			}
			c.setString(f, v)
		}
		p.space()
		if p.is(',') {
			continue
		}
		return p.is('}')
	}
}

// descriptors reads an object of strings, each name once.
func (p *jsonFast) descriptors(c *checkJSON) bool {
	if !p.is('{') {
		return false
	}
	m := map[string]string{}
	p.space()
	if p.is('}') {
		c.Descriptors = m
		return true
	}
	for {
		if len(m) == MaxDescriptors {
			return false
		}
		p.space()
		name, ok := p.str()
		if !ok {
			return false
		}
		if _, dup := m[string(name)]; dup {
			return false
		}
		p.space()
		if !p.is(':') {
			return false
		}
		p.space()
		v, ok := p.str()
		if !ok {
			return false
		}
		m[string(name)] = string(v)
		p.space()
		if p.is(',') {
			continue
		}
		if !p.is('}') {
			return false
		}
		c.Descriptors = m
		return true
	}
}

// str reads a string without escapes or control characters, in valid
// UTF-8, and returns its bytes.
func (p *jsonFast) str() ([]byte, bool) {
	if !p.is('"') {
		return nil, false
	}
	start := p.pos
	ascii := true
	for ; p.pos < len(p.data); p.pos++ {
		switch c := p.data[p.pos]; {
		case c == '"':
			s := p.data[start:p.pos]
			p.pos++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// int reads an integer written as plain digits (an optional minus, no
// leading zero, at most 18 digits, so it cannot overflow), not followed by
// a fraction or an exponent.
func (p *jsonFast) int() (int64, bool) {
	neg := p.is('-')
	start := p.pos
	var v int64
	for p.pos < len(p.data) && p.pos-start < 19 {
		c := p.data[p.pos]
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
		p.pos++
	}
	n := p.pos - start
	switch {
	case n == 0 || n > 18:
		return 0, false
	case n > 1 && p.data[start] == '0':
		return 0, false
	case p.pos < len(p.data) && (p.data[p.pos] == '.' || p.data[p.pos] == 'e' || p.data[p.pos] == 'E'):
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}
