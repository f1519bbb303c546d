package transport

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// FuzzDecodeMsgpack feeds arbitrary bodies to the msgpack check and batch
// decoders, as FuzzDecodeCheck does for JSON: never a panic, every
// rejection a FieldError, every accepted request within the API's bounds.
func FuzzDecodeMsgpack(f *testing.F) {
	for _, seed := range []map[string]any{
		{"key": "k", "limit": 10, "period": "1s"},
		{"key": "k", "limit": 10, "period": "1s", "burst": 20, "cost": 3, "sync": "owner", "algorithm": "token_bucket"},
		{"rule": "api", "key": "k", "cost": 0},
		{"descriptors": map[string]string{"route": "/api", "user": "42"}},
		{"key": "k", "limit": int64(1) << 53, "period": "8784h1ns", "max_wait": "1s"},
		{"key": "\xff", "limit": 1.5, "period": nil},
		{"checks": []map[string]any{{"key": "a", "limit": 1, "period": "1s"}, {"rule": "r", "key": "b"}}},
	} {
		b, err := msgpack.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false)
	f.Add([]byte{0x81, 0xa6, 'c', 'h', 'e', 'c', 'k', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, body []byte, wait bool) {
		var c checkJSON
		err := decodeCheckMsgpack(body, &c)
		var req cluster.Request
		var maxWait time.Duration
		if err == nil {
			req, maxWait, err = c.request(wait, time.Minute)
		}
		if err == nil {
			checkBounds(t, &req, maxWait)
		} else if _, ok := errors.AsType[*rules.FieldError](err); !ok {
			t.Fatalf("check rejection is not a FieldError: %T %v", err, err)
		}

		var b batchJSON
		if err := decodeBatchMsgpack(body, &b); err != nil {
			if _, ok := errors.AsType[*rules.FieldError](err); !ok {
				t.Fatalf("batch rejection is not a FieldError: %T %v", err, err)
			}
			return
		}
		if len(b.Checks) > MaxBatch {
			t.Fatalf("accepted a batch of %d", len(b.Checks))
		}
		for i := range b.Checks {
			if req, _, err := b.Checks[i].request(false, 0); err == nil {
				checkBounds(t, &req, 0)
			}
		}
	})
}

// FuzzFastJSON holds the JSON fast path to the strict path: whatever it
// accepts, the strict scan and encoding/json accept too, with the same
// values.
func FuzzFastJSON(f *testing.F) {
	for _, seed := range []string{
		`{"key": "k", "limit": 10, "period": "1s"}`,
		`{"key": "k", "limit": 10, "period": "1s", "burst": 20, "cost": 3, "sync": "owner", "algorithm": "token_bucket", "max_wait": "1s"}`,
		`{"descriptors": {"route": "/api", "user": "42"}}`, `{"descriptors": {}}`, `{}`,
		`{"key": "k", "limit": -0, "period": "1s"}`, `{"key": "k", "limit": 012, "period": "1s"}`,
		`{"key": "k", "limit": 999999999999999999, "period": "1s"}`, `{"key": "k\u00e9", "limit": 1}`,
		"{\"key\": \"\xc3\xa9\xff\"}", `{"key": "a", "key": "b"}`, `{"key": "a",}`, `{"limit": 1e3}`,
		`{"checks": [{"key": "a", "limit": 1, "period": "1s"}, {"rule": "r", "key": "b", "cost": 2}]}`,
		`{"checks": []}`, `{"checks": [{}], "checks": []}`, ` {"checks" : [ {"key":"a"} ] } `,
	} {
		f.Add([]byte(seed))
	}
	strictCheck, strictBatch := newBodyDecoder(&checkJSON{}), newBodyDecoder(&batchJSON{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow checkJSON
		if fastCheckJSON(body, &fast) {
			if err := strictCheck.decode(body, &slow); err != nil {
				t.Fatalf("fast path accepted %q; strict path: %v", body, err)
			}
			sameCheck(t, body, &fast, &slow)
		}
		var fb, sb batchJSON
		if fastBatchJSON(body, &fb) {
			if err := strictBatch.decode(body, &sb); err != nil {
				t.Fatalf("fast path accepted batch %q; strict path: %v", body, err)
			}
			if len(fb.Checks) != len(sb.Checks) {
				t.Fatalf("batch %q: %d checks fast, %d strict", body, len(fb.Checks), len(sb.Checks))
			}
			for i := range fb.Checks {
				sameCheck(t, body, &fb.Checks[i], &sb.Checks[i])
			}
		}
	})
}

func sameCheck(t *testing.T, body []byte, fast, slow *checkJSON) {
	t.Helper()
	if fast.Limit != nil && fast.Limit != &fast.ints[0] || fast.Burst != nil && fast.Burst != &fast.ints[1] || fast.Cost != nil && fast.Cost != &fast.ints[2] {
		t.Fatalf("%q: the fast path's integers point outside the check", body)
	}
	f, s := *fast, *slow
	f.ints, s.ints = [3]int64{}, [3]int64{}
	deref := func(p **int64) {
		if *p != nil {
			v := **p
			*p = &v
		}
	}
	for _, c := range []*checkJSON{&f, &s} {
		deref(&c.Limit)
		deref(&c.Burst)
		deref(&c.Cost)
	}
	if !reflect.DeepEqual(f, s) {
		t.Fatalf("%q: fast %+v, strict %+v", body, f, s)
	}
}
