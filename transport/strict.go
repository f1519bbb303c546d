package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// encoding/json (v1) decodes what the API must refuse: a name given twice
// (the last one wins, so {"limit":10,"limit":1000000} is a limit of a
// million), names in any letter case ("LIMIT" sets limit), and invalid
// UTF-8 or a lone surrogate escape, which it turns into U+FFFD, so that
// different keys land in one bucket. encoding/json/v2 refuses all of these,
// but Go 1.26 has it only under GOEXPERIMENT=jsonv2. So before json.Unmarshal
// sees a body, strictScan walks it once and refuses them, naming the field;
// json.Unmarshal then sees exact names only.

// maxDepth bounds the nesting strictScan follows; the API's bodies nest
// four deep at most.
const maxDepth = 64

// smallObject is the number of names an object may have before strictScan
// finds duplicates with a map rather than by comparing each with the others.
const smallObject = 16

// errNotJSON stops a scan at JSON that is not well formed: encoding/json
// then says where.
var errNotJSON = errors.New("malformed JSON")

// errNotUTF8 marks a string that is not valid UTF-8.
var errNotUTF8 = errors.New("not UTF-8")

// strictScan checks a body against s: one JSON value, whose objects give
// each name once, whose struct objects give only the names of their fields,
// exactly, and whose strings (names included) are valid UTF-8 without lone
// surrogate escapes. It returns a *rules.FieldError naming the first field
// at fault, or nil, also when the body is not well-formed JSON.
func strictScan(data []byte, s *shape) error {
	sc := scanner{data: data}
	sc.skipSpace()
	if sc.pos == len(data) {
		return badField("body", "empty; want a JSON object")
	}
	err := sc.value(s, 0)
	if err == nil {
		if sc.skipSpace(); sc.pos < len(data) {
			return badField("body", "unexpected data after the JSON object")
		}
		return nil
	}
	if se, ok := err.(*scanError); ok {
		return se.fieldError()
	}
	if errors.Is(err, errNotJSON) {
		return nil
	}
	return err
}

// scanner walks one body. It keeps no path: an error collects the names
// and indexes on its way out, so a body that passes costs no allocation.
type scanner struct {
	data []byte
	pos  int
}

// scanError is a fault found by the scan, with the path to it, innermost
// first.
type scanError struct {
	path []pathElem
	msg  string
}

// pathElem is an object member (name) or an array element (index).
type pathElem struct {
	name  []byte
	index int // -1 for a member
}

func (e *scanError) Error() string { return e.msg }

// at adds the member or element the fault is in to err's path.
func at(err error, el pathElem) error {
	if se, ok := err.(*scanError); ok {
		se.path = append(se.path, el)
	}
	return err
}

// fieldError names the field as the API names fields elsewhere:
// checks[1].limit, descriptors.user. The top level is "body".
func (e *scanError) fieldError() error {
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		el := e.path[i]
		if el.index >= 0 {
			b.WriteString("[" + strconv.Itoa(el.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(el.name)
	}
	if b.Len() == 0 {
		return badField("body", "%s", e.msg)
	}
	return badField(b.String(), "%s", e.msg)
}

func (sc *scanner) skipSpace() {
	for sc.pos < len(sc.data) {
		switch sc.data[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

func (sc *scanner) value(s *shape, depth int) error {
	if depth > maxDepth {
		return badField("body", "nested more than %d deep", maxDepth)
	}
	if sc.pos == len(sc.data) {
		return errNotJSON
	}
	switch c := sc.data[sc.pos]; {
	case c == '{':
		if s != nil && s.kind == reflect.Slice {
			s = nil
		}
		return sc.object(s, depth+1)
	case c == '[':
		if s != nil && s.kind != reflect.Slice {
			s = nil
		}
		return sc.array(s, depth+1)
	case c == '"':
		if _, _, err := sc.str(); err != nil {
			if errors.Is(err, errNotUTF8) {
				return &scanError{msg: "must be valid UTF-8"}
			}
			return err
		}
		return nil
	}
	start := sc.pos // a number, true, false or null: encoding/json checks it
	for sc.pos < len(sc.data) && isLiteralByte(sc.data[sc.pos]) {
		sc.pos++
	}
	if sc.pos == start {
		return errNotJSON
	}
	return nil
}

func isLiteralByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}

func (sc *scanner) object(s *shape, depth int) error {
	sc.pos++ // {
	var small [smallObject][]byte
	names := small[:0]
	var seen map[string]struct{} // past smallObject names
	for {
		sc.skipSpace()
		if len(names) == 0 && seen == nil && sc.pos < len(sc.data) && sc.data[sc.pos] == '}' {
			sc.pos++
			return nil
		}
		if sc.pos == len(sc.data) || sc.data[sc.pos] != '"' {
			return errNotJSON
		}
		start := sc.pos
		name, escaped, err := sc.str()
		if errors.Is(err, errNotUTF8) {
			return &scanError{msg: "a name must be valid UTF-8"}
		} else if err != nil {
			return err
		}
		if escaped {
			if name, err = unescape(sc.data[start:sc.pos]); err != nil {
				return err
			}
		}
		el := pathElem{name: name, index: -1}

		if seen == nil && len(names) < smallObject {
			for _, n := range names {
				if bytes.Equal(n, name) {
					return &scanError{path: []pathElem{el}, msg: "given twice"}
				}
			}
			names = append(names, name)
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 4*smallObject)
				for _, n := range names {
					seen[string(n)] = struct{}{}
				}
			}
			if _, dup := seen[string(name)]; dup {
				return &scanError{path: []pathElem{el}, msg: "given twice"}
			}
			seen[string(name)] = struct{}{}
		}

		var member *shape
		if s != nil {
			if s.kind != reflect.Struct {
				member = s.elem
			} else if f, ok := s.fields[string(name)]; ok {
				member = f
			} else {
				return &scanError{path: []pathElem{el}, msg: "unknown field"}
			}
		}
		sc.skipSpace()
		if sc.pos == len(sc.data) || sc.data[sc.pos] != ':' {
			return errNotJSON
		}
		sc.pos++
		sc.skipSpace()
		if err := sc.value(member, depth); err != nil {
			return at(err, el)
		}
		sc.skipSpace()
		if sc.pos == len(sc.data) {
			return errNotJSON
		}
		switch sc.data[sc.pos] {
		case ',':
			sc.pos++
		case '}':
			sc.pos++
			return nil
		default:
			return errNotJSON
		}
	}
}

func (sc *scanner) array(s *shape, depth int) error {
	sc.pos++ // [
	var elem *shape
	if s != nil {
		elem = s.elem
	}
	for i := 0; ; i++ {
		sc.skipSpace()
		if i == 0 && sc.pos < len(sc.data) && sc.data[sc.pos] == ']' {
			sc.pos++
			return nil
		}
		if err := sc.value(elem, depth); err != nil {
			return at(err, pathElem{index: i})
		}
		sc.skipSpace()
		if sc.pos == len(sc.data) {
			return errNotJSON
		}
		switch sc.data[sc.pos] {
		case ',':
			sc.pos++
		case ']':
			sc.pos++
			return nil
		default:
			return errNotJSON
		}
	}
}

// str reads the string at sc.pos and returns its contents as written,
// whether they hold escapes, and errNotUTF8 for invalid UTF-8 (a surrogate
// encoded in UTF-8 included) or a lone surrogate escape.
func (sc *scanner) str() (raw []byte, escaped bool, err error) {
	sc.pos++ // "
	start := sc.pos
	for sc.pos < len(sc.data) {
		c := sc.data[sc.pos]
		switch {
		case c == '"':
			sc.pos++
			return sc.data[start : sc.pos-1], escaped, nil
		case c == '\\':
			escaped = true
			if err := sc.escape(); err != nil {
				return nil, false, err
			}
		case c < 0x20:
			return nil, false, errNotJSON
		case c < utf8.RuneSelf:
			sc.pos++
		default:
			r, size := utf8.DecodeRune(sc.data[sc.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, errNotUTF8
			}
			sc.pos += size
		}
	}
	return nil, false, errNotJSON
}

// escape reads the escape at sc.pos. A \u escape of a high surrogate must be
// followed by one of a low surrogate; a low one alone is refused.
func (sc *scanner) escape() error {
	if sc.pos+1 >= len(sc.data) {
		return errNotJSON
	}
	switch sc.data[sc.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		sc.pos += 2
		return nil
	case 'u':
	default:
		return errNotJSON
	}
	r, ok := hex4(sc.data, sc.pos+2)
	if !ok {
		return errNotJSON
	}
	sc.pos += 6
	switch {
	case r < 0xD800 || r > 0xDFFF:
		return nil
	case r >= 0xDC00:
		return errNotUTF8
	}
	if sc.pos+1 >= len(sc.data) || sc.data[sc.pos] != '\\' || sc.data[sc.pos+1] != 'u' {
		return errNotUTF8
	}
	low, ok := hex4(sc.data, sc.pos+2)
	if !ok {
		return errNotJSON
	}
	if low < 0xDC00 || low > 0xDFFF {
		return errNotUTF8
	}
	sc.pos += 6
	return nil
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape decodes a quoted JSON string that str has checked.
func unescape(quoted []byte) ([]byte, error) {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return nil, errNotJSON
	}
	return []byte(s), nil
}
