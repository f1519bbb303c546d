package transport

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// BenchmarkDecodeBatch decodes a batch of 100 checks (the load report's)
// every way measured for the API: the strict scan with encoding/json (the
// fallback), the hand-written JSON fast path, msgpack by hand (what the
// API uses), and msgpack through vmihailenco/msgpack's reflection (not
// strict: names given twice are not refused).
func BenchmarkDecodeBatch(b *testing.B) {
	one := `{"key": "load-1234", "limit": 1000000, "period": "1s", "burst": 1000000}`
	js := []byte(`{"checks": [` + strings.Repeat(one+",", 99) + one + `]}`)
	var mp bytes.Buffer
	enc := msgpack.NewEncoder(&mp)
	_ = enc.EncodeMapLen(1)
	_ = enc.EncodeString("checks")
	_ = enc.EncodeArrayLen(100)
	for range 100 {
		_ = enc.Encode(map[string]any{"key": "load-1234", "limit": 1000000, "period": "1s", "burst": 1000000})
	}
	strict := newBodyDecoder(&batchJSON{})
	for _, tc := range []struct {
		name   string
		decode func() error
	}{
		{"json-strict-encoding-json", func() error { var v batchJSON; return strict.decode(js, &v) }},
		{"json-fast-path", func() error {
			var v batchJSON
			if !fastBatchJSON(js, &v) {
				b.Fatal("declined")
			}
			return nil
		}},
		{"msgpack-by-hand", func() error { var v batchJSON; return decodeBatchMsgpack(mp.Bytes(), &v) }},
		{"msgpack-vmihailenco", func() error {
			var v batchJSON
			d := msgpack.NewDecoder(bytes.NewReader(mp.Bytes()))
			d.SetCustomStructTag("json")
			return d.Decode(&v)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := tc.decode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
