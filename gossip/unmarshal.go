package gossip

import (
	"encoding/binary"
	"errors"

	"github.com/vmihailenco/msgpack/v5"
)

// errDeclaredLength is a msgpack value that declares more elements or bytes
// than its buffer holds.
var errDeclaredLength = errors.New("gossip: msgpack length past the end of the data")

// Unmarshal decodes msgpack b into v by reflection, for gossip messages too
// rare to deserve a hand-written decoder (metadata, rule changes, full
// state exchanges).
// It first walks b and rejects any array, map, string, binary or extension
// that declares more than the bytes left could hold: msgpack's reflection
// allocates a slice of the declared length before reading its elements, so
// a few hostile bytes could otherwise ask for gigabytes.
func Unmarshal(b []byte, v any) error {
	if err := checkLengths(b); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}

// checkLengths walks every msgpack value in b without decoding it.
func checkLengths(b []byte) error {
	pending := 1 // values still to walk
	for pending > 0 {
		if len(b) == 0 {
			return errDeclaredLength
		}
		c := b[0]
		b = b[1:]
		pending--
		var skip, items uint64 // bytes to skip, values that follow
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c >= 0xcc && c <= 0xcf:
			skip = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			skip = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xc4 || c == 0xd9, c == 0xc5 || c == 0xda, c == 0xc6 || c == 0xdb:
			n, rest, ok := length(b, c)
			if !ok {
				return errDeclaredLength
			}
			b, skip = rest, n
		case c >= 0xc7 && c <= 0xc9:
			n, rest, ok := length(b, c)
			if !ok {
				return errDeclaredLength
			}
			b, skip = rest, n+1 // the extension's type byte
		case c == 0xdc || c == 0xdd:
			n, rest, ok := length(b, c)
			if !ok {
				return errDeclaredLength
			}
			b, items = rest, n
		case c == 0xde || c == 0xdf:
			n, rest, ok := length(b, c)
			if !ok {
				return errDeclaredLength
			}
			b, items = rest, 2*n
		default: // 0xc1: never used
			return errDeclaredLength
		}
		if skip > uint64(len(b)) {
			return errDeclaredLength
		}
		b = b[skip:]
		// Every value takes at least one byte.
		if items > uint64(len(b)) || uint64(pending)+items > uint64(len(b)) {
			return errDeclaredLength
		}
		pending += int(items)
	}
	return nil
}

// length reads the big-endian length that follows format byte c.
func length(b []byte, c byte) (uint64, []byte, bool) {
	var size int
	switch c {
	case 0xc4, 0xc7, 0xd9:
		size = 1
	case 0xc5, 0xc8, 0xda, 0xdc, 0xde:
		size = 2
	default:
		size = 4
	}
	if len(b) < size {
		return 0, nil, false
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b))
	default:
		n = uint64(binary.BigEndian.Uint32(b))
	}
	return n, b[size:], true
}
