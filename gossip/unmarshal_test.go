package gossip

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

type guarded struct {
	A string           `msgpack:"a"`
	S []int64          `msgpack:"s"`
	M map[string]int64 `msgpack:"m"`
	F float64          `msgpack:"f"`
	B []byte           `msgpack:"b"`
}

func TestUnmarshalRejectsDeclaredLengths(t *testing.T) {
	good, err := msgpack.Marshal(&guarded{A: "x", S: []int64{1, -2, 1 << 40}, M: map[string]int64{"k": 3}, F: 1.5, B: []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var g guarded
	if err := Unmarshal(good, &g); err != nil || g.S[2] != 1<<40 || g.M["k"] != 3 {
		t.Fatalf("a good value: %v %+v", err, g)
	}
	for name, b := range map[string][]byte{
		"array32": {0x81, 0xa1, 's', 0xdd, 0x0f, 0xff, 0xff, 0xff},
		"map32":   {0x81, 0xa1, 'm', 0xdf, 0x0f, 0xff, 0xff, 0xff},
		"str32":   {0x81, 0xa1, 'a', 0xdb, 0x0f, 0xff, 0xff, 0xff},
		"bin32":   {0x81, 0xa1, 'b', 0xc6, 0x0f, 0xff, 0xff, 0xff},
		"nested":  {0x81, 0xa1, 's', 0x9f, 0xdd, 0x0f, 0xff, 0xff, 0xff},
		"short":   good[:len(good)-1],
		"c1":      {0xc1},
		"empty":   {},
	} {
		if err := Unmarshal(b, &g); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, _ := msgpack.Marshal(&guarded{A: "x", S: []int64{1}, M: map[string]int64{"k": 3}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		var g guarded
		_ = Unmarshal(b, &g) // must neither panic nor allocate what b cannot hold
	})
}
