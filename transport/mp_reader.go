package transport

import (
	"encoding/binary"
	"math"
	"strconv"
)

// mpReader reads msgpack values from a body held whole in memory, by hand:
// no reflection, and every declared length is checked against the bytes
// that are left before anything is sliced or allocated, so a hostile
// header costs nothing. Strings are returned as slices of the body.
type mpReader struct {
	data []byte
	pos  int
}

// mpError is a body that is not well-formed msgpack: truncated, or holding
// the one byte msgpack never uses.
type mpError struct{ at int }

func (e *mpError) Error() string {
	return "malformed msgpack at byte " + strconv.Itoa(e.at)
}

// mpKind is the kind of the next value, as the API names kinds in its
// messages ("must be a string, got msgpack int").
type mpKind uint8

const (
	mpNil mpKind = iota
	mpBool
	mpInt
	mpFloat
	mpStr
	mpBin
	mpArray
	mpMap
	mpExt
	mpInvalid
)

func (k mpKind) String() string {
	switch k {
	case mpNil:
		return "nil"
	case mpBool:
		return "bool"
	case mpInt:
		return "integer"
	case mpFloat:
		return "float"
	case mpStr:
		return "string"
	case mpBin:
		return "bin"
	case mpArray:
		return "array"
	case mpMap:
		return "map"
	case mpExt:
		return "ext"
	}
	return "invalid"
}

// kind returns the kind of the value at r.pos, or mpInvalid at the end.
func (r *mpReader) kind() mpKind {
	if r.pos >= len(r.data) {
		return mpInvalid
	}
	switch c := r.data[r.pos]; {
	case c <= 0x7f || c >= 0xe0:
		return mpInt
	case c <= 0x8f:
		return mpMap
	case c <= 0x9f:
		return mpArray
	case c <= 0xbf:
		return mpStr
	}
	switch r.data[r.pos] {
	case 0xc0:
		return mpNil
	case 0xc2, 0xc3:
		return mpBool
	case 0xc4, 0xc5, 0xc6:
		return mpBin
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return mpExt
	case 0xca, 0xcb:
		return mpFloat
	case 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return mpInt
	case 0xd9, 0xda, 0xdb:
		return mpStr
	case 0xdc, 0xdd:
		return mpArray
	case 0xde, 0xdf:
		return mpMap
	}
	return mpInvalid // 0xc1
}

func (r *mpReader) malformed() error { return &mpError{at: r.pos} }

// uint reads an n-byte big-endian length or number after the format byte.
func (r *mpReader) uint(n int) (uint64, bool) {
	if len(r.data)-r.pos < n {
		return 0, false
	}
	b := r.data[r.pos : r.pos+n]
	r.pos += n
	switch n {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), true
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), true
	}
	return binary.BigEndian.Uint64(b), true
}

// header reads the header of a map or an array (want is mpMap or
// mpArray, which the caller has checked with kind) and returns its length,
// refusing one that the bytes left could not hold (each element takes at
// least one byte, each map entry two).
func (r *mpReader) header(want mpKind) (int, error) {
	c := r.data[r.pos]
	r.pos++
	var n uint64
	ok := true
	switch {
	case c <= 0x9f:
		n = uint64(c & 0x0f)
	case c == 0xdc || c == 0xde:
		n, ok = r.uint(2)
	default: // 0xdd, 0xdf
		n, ok = r.uint(4)
	}
	per := uint64(1)
	if want == mpMap {
		per = 2
	}
	if !ok || n > uint64(len(r.data)-r.pos)/per {
		return 0, r.malformed()
	}
	return int(n), nil
}

// str reads a string (the caller has checked its kind) as a slice of the
// body.
func (r *mpReader) str() ([]byte, error) {
	c := r.data[r.pos]
	r.pos++
	var n uint64
	ok := true
	switch c {
	case 0xd9:
		n, ok = r.uint(1)
	case 0xda:
		n, ok = r.uint(2)
	case 0xdb:
		n, ok = r.uint(4)
	default:
		n = uint64(c & 0x1f)
	}
	if !ok || n > uint64(len(r.data)-r.pos) {
		return nil, r.malformed()
	}
	s := r.data[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

// int reads an integer (the caller has checked its kind). ok is false for
// a uint64 above math.MaxInt64, which the API cannot hold.
func (r *mpReader) int() (v int64, ok bool, err error) {
	c := r.data[r.pos]
	r.pos++
	switch {
	case c <= 0x7f:
		return int64(c), true, nil
	case c >= 0xe0:
		return int64(int8(c)), true, nil
	}
	size := 1 << ((c - 0xcc) & 3) // cc..cf and d0..d3: 1, 2, 4, 8 bytes
	u, got := r.uint(size)
	if !got {
		return 0, false, r.malformed()
	}
	if c <= 0xcf { // unsigned
		return int64(u), u <= math.MaxInt64, nil
	}
	switch size {
	case 1:
		return int64(int8(u)), true, nil
	case 2:
		return int64(int16(u)), true, nil
	case 4:
		return int64(int32(u)), true, nil
	}
	return int64(u), true, nil
}
