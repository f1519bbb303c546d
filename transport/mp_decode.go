package transport

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/sluicerl/sluice/rules"
)

// msgpack request bodies hold the JSON API's objects as msgpack maps with
// the same names: {"key": "alice", "limit": 10, "period": "1s"}, a batch
// {"checks": [...]}. They are decoded by hand (mpReader), as strictly as
// JSON bodies: a name given twice, a name that is not exactly a field's, a
// name that is not a string, a value of the wrong type, invalid UTF-8 in
// any string and data after the map are errors naming the field. A nil
// value is an absent field, as JSON's null is. Every length is checked
// against the body before anything is allocated.

// decodeCheckMsgpack decodes a check or wait body into c.
func decodeCheckMsgpack(body []byte, c *checkJSON) error {
	if len(body) == 0 {
		return badField("body", "empty; want a msgpack map")
	}
	r := mpReader{data: body}
	if err := r.check(c); err != nil {
		return mpFieldError(err, "", "body")
	}
	if r.pos < len(body) {
		return badField("body", "unexpected data after the msgpack map")
	}
	return nil
}

// decodeBatchMsgpack decodes a batch body into b. A batch of more than
// MaxBatch checks is refused before its checks are allocated.
func decodeBatchMsgpack(body []byte, b *batchJSON) error {
	if len(body) == 0 {
		return badField("body", "empty; want a msgpack map")
	}
	r := mpReader{data: body}
	if err := r.batch(b); err != nil {
		return mpFieldError(err, "", "body")
	}
	if r.pos < len(body) {
		return badField("body", "unexpected data after the msgpack map")
	}
	return nil
}

// mpFieldError turns what the reader returns into the API's FieldError:
// malformed msgpack is the body's fault; a FieldError naming no field is
// the object's own (self), and a field in it is prefixed with prefix.
func mpFieldError(err error, prefix, self string) error {
	if me, ok := errors.AsType[*mpError](err); ok {
		return badField("body", "%v", me)
	}
	fe, ok := errors.AsType[*rules.FieldError](err)
	if !ok {
		return err
	}
	if fe.Field == "" {
		return &rules.FieldError{Field: self, Msg: fe.Msg}
	}
	return &rules.FieldError{Field: prefix + fe.Field, Msg: fe.Msg}
}

// typeError is a value of the wrong kind; field "" is the object itself.
func typeError(field, want string, got mpKind) error {
	return badField(field, "must be %s, got msgpack %v", want, got)
}

func (r *mpReader) batch(b *batchJSON) error {
	if err := r.expectMap(); err != nil {
		return err
	}
	n, err := r.header(mpMap)
	if err != nil {
		return err
	}
	seen := false
	for range n {
		name, err := r.name("")
		if err != nil {
			return err
		}
		if string(name) != "checks" {
			return badField(string(name), "unknown field")
		}
		if seen {
			return badField("checks", "given twice")
		}
		seen = true
		switch k := r.kind(); k {
		case mpInvalid:
			return r.malformed()
		case mpNil:
			r.pos++
			b.Checks = nil
			continue
		case mpArray:
		default:
			return typeError("checks", "an array", k)
		}
		m, err := r.header(mpArray)
		if err != nil {
			return err
		}
		if m > MaxBatch {
			return badField("checks", "must hold between 1 and %d checks, got %d", MaxBatch, m)
		}
		b.Checks = b.checksFor(m)
		for i := range b.Checks {
			if err := r.check(&b.Checks[i]); err != nil {
				at := "checks[" + strconv.Itoa(i) + "]"
				return mpFieldError(err, at+".", at)
			}
		}
	}
	return nil
}

// expectMap refuses a value that is not a map, naming the object itself.
func (r *mpReader) expectMap() error {
	switch k := r.kind(); k {
	case mpMap:
		return nil
	case mpInvalid:
		return r.malformed()
	default:
		return typeError("", "an object (a msgpack map)", k)
	}
}

// name reads a map's name; an error names the map (field).
func (r *mpReader) name(field string) ([]byte, error) {
	switch k := r.kind(); k {
	case mpStr:
	case mpInvalid:
		return nil, r.malformed()
	default:
		return nil, badField(field, "a name must be a string, got msgpack %v", k)
	}
	name, err := r.str()
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(name) {
		return nil, badField(field, "a name must be valid UTF-8")
	}
	return name, nil
}

// check decodes one check; errors name fields relative to it.
func (r *mpReader) check(c *checkJSON) error {
	if err := r.expectMap(); err != nil {
		return err
	}
	n, err := r.header(mpMap)
	if err != nil {
		return err
	}
	var seen uint16
	for range n {
		name, err := r.name("")
		if err != nil {
			return err
		}
		f := checkField(name)
		if f == fieldNone {
			return badField(string(name), "unknown field")
		}
		if seen&(1<<f) != 0 {
			return badField(string(name), "given twice")
		}
		seen |= 1 << f
		if err := r.field(c, f, name); err != nil {
			return err
		}
	}
	return nil
}

// field decodes the value of field f, whose name is name.
func (r *mpReader) field(c *checkJSON, f int, name []byte) error {
	k := r.kind()
	switch {
	case k == mpInvalid:
		return r.malformed()
	case k == mpNil:
		r.pos++
		return nil
	case f == fieldDescriptors:
		if k != mpMap {
			return typeError("descriptors", "an object (a msgpack map)", k)
		}
		return r.descriptors(c)
	case isIntField(f):
		if k != mpInt {
			return typeError(string(name), "an integer", k)
		}
		v, ok, err := r.int()
		if err != nil {
			return err
		}
		if !ok {
			return badField(string(name), "must be an integer, got msgpack integer %d", uint64(v))
		}
		c.setInt(f, v)
		return nil
	}
	if k != mpStr {
		return typeError(string(name), "a string", k)
	}
	v, err := r.str()
	if err != nil {
		return err
	}
	if !utf8.Valid(v) {
		return badField(string(name), "must be valid UTF-8")
	}
	c.setString(f, v)
	return nil
}

// descriptors decodes a map of descriptor names to values.
func (r *mpReader) descriptors(c *checkJSON) error {
	n, err := r.header(mpMap)
	if err != nil {
		return err
	}
	if n > MaxDescriptors {
		return badField("descriptors", "must have between 1 and %d entries, got %d", MaxDescriptors, n)
	}
	m := make(map[string]string, n)
	for range n {
		name, err := r.name("descriptors")
		if err != nil {
			return err
		}
		if _, dup := m[string(name)]; dup {
			return badField("descriptors."+string(name), "given twice")
		}
		var v []byte
		switch k := r.kind(); k {
		case mpNil:
			r.pos++
		case mpStr:
			if v, err = r.str(); err != nil {
				return err
			}
			if !utf8.Valid(v) {
				return badField("descriptors."+string(name), "must be valid UTF-8")
			}
		case mpInvalid:
			return r.malformed()
		default:
			return typeError("descriptors."+string(name), "a string", k)
		}
		m[string(name)] = string(v)
	}
	c.Descriptors = m
	return nil
}
