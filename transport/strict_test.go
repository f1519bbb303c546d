package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicerl/sluice/rules"
)

// TestStrictScan runs bodies through the scan with the shape of a batch:
// what it refuses, the field it names, and what it leaves to encoding/json.
func TestStrictScan(t *testing.T) {
	batch := shapeOf(reflect.TypeFor[batchJSON]())
	for _, tc := range []struct {
		name, body, want string // want: the error, or "" if the scan passes it
	}{
		{"a batch", `{"checks": [{"key": "k", "limit": 1, "period": "1s", "descriptors": null}]}`, ""},
		{"empty", " \n", "body: empty; want a JSON object"},
		{"data after", `{"checks": []} {}`, "body: unexpected data after the JSON object"},
		{"malformed: left to encoding/json", `{"checks": [}`, ""},
		{"malformed after a fault: the fault", `{"checks": [], "checks": [}`, "checks: given twice"},
		{"wrong type: left to encoding/json", `{"checks": {"key": "k", "x": "k"}}`, ""},
		{"a duplicate in a wrong type", `{"checks": [[{"a": 1, "a": 2}]]}`, "checks[0][0].a: given twice"},
		{"a name escaped", `{"\u0063hecks": []}`, ""},
		{"a duplicate escaped", `{"checks": [], "\u0063hecks": []}`, "checks: given twice"},
		{"names are exact", `{"Checks": []}`, "Checks: unknown field"},
		{"unknown nested", `{"checks": [{}, {"key": "k", "cost": 1, "costs": 2}]}`, "checks[1].costs: unknown field"},
		{"descriptor names are free", `{"checks": [{"descriptors": {"Checks": "1", "checks": "2"}}]}`, ""},
		{"a descriptor twice", `{"checks": [{"descriptors": {"a": "1", "b": "2", "a": "3"}}]}`, "checks[0].descriptors.a: given twice"},
		{"valid surrogate pair", `{"checks": [{"key": "\ud83d\ude00"}]}`, ""},
		{"U+FFFD", `{"checks": [{"key": "\ufffd` + "\uFFFD" + `"}]}`, ""},
		{"lone high surrogate at the end", `{"checks": [{"key": "\ud83d"}]}`, "checks[0].key: must be valid UTF-8"},
		{"high surrogate, then an escape", `{"checks": [{"key": "\ud83d\n"}]}`, "checks[0].key: must be valid UTF-8"},
		{"lone low surrogate", `{"checks": [{"key": "\ude00"}]}`, "checks[0].key: must be valid UTF-8"},
		{"truncated UTF-8", "{\"checks\": [{\"key\": \"\xf0\x9f\x98\"}]}", "checks[0].key: must be valid UTF-8"},
		{"overlong UTF-8", "{\"checks\": [{\"key\": \"\xc0\xaf\"}]}", "checks[0].key: must be valid UTF-8"},
		{"invalid UTF-8 in a name", "{\"checks\": [{\"k\xffy\": 1}]}", "checks[0]: a name must be valid UTF-8"},
		{"invalid UTF-8 at the top", "{\"\xff\": 1}", "body: a name must be valid UTF-8"},
		{"invalid UTF-8 in an unknown value", "{\"checks\": [{\"key\": \"k\"}], \"x\": \"\xff\"}", "x: unknown field"},
		{"deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "body: nested more than 64 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := strictScan([]byte(tc.body), batch)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if _, ok := errors.AsType[*rules.FieldError](err); !ok || err.Error() != tc.want {
				t.Fatalf("error %v, want FieldError %q", err, tc.want)
			}
		})
	}
}

// FuzzStrictScan compares the scan, on well-formed JSON without escapes,
// with a duplicate finder built on encoding/json's tokenizer: they must
// agree on whether some object gives a name twice. On any body, the scan
// must not panic, and must refuse the invalid UTF-8 that encoding/json
// would turn into U+FFFD.
func FuzzStrictScan(f *testing.F) {
	for _, seed := range []string{
		`{"a": 1, "b": {"a": 2, "c": [{"a": 1}, {"a": 1, "a": 2}]}}`, `{"a": {"b": 1}, "b": 2}`, `[{"x": 1}, {"x": 2}]`,
		`{"` + strings.Repeat(`a": 1, "`, 20) + `z": 0}`, "{\"a\": \"\xff\"}", `{"a": "\ud800"}`, `"x"`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := strictScan(body, nil)
		if err != nil {
			if _, ok := errors.AsType[*rules.FieldError](err); !ok {
				t.Fatalf("not a FieldError: %T %v", err, err)
			}
		}
		if !json.Valid(body) {
			return
		}
		// In valid JSON, bytes above ASCII are inside strings.
		if err == nil && !utf8.Valid(body) {
			t.Fatalf("passed invalid UTF-8, which encoding/json would turn into U+FFFD: %q", body)
		}
		if bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body) || bytes.Count(body, []byte("[")) > maxDepth {
			return
		}
		dup := hasDuplicate(t, body)
		if got := err != nil && strings.HasSuffix(err.Error(), ": given twice"); got != dup {
			t.Fatalf("body %q: scan %v, tokenizer finds a duplicate: %v", body, err, dup)
		}
	})
}

// hasDuplicate finds, with encoding/json's tokenizer, an object that gives
// a name twice.
func hasDuplicate(t *testing.T, body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // a number out of float64's range is still valid JSON
	type frame struct {
		names    map[string]bool
		isObject bool
		wantName bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatalf("tokenizer on valid JSON: %v", err)
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].isObject && stack[top].wantName {
			if name, ok := tok.(string); ok {
				if stack[top].names[name] {
					return true
				}
				stack[top].names[name] = true
				stack[top].wantName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{names: map[string]bool{}, isObject: true, wantName: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			top--
		}
		if top >= 0 && stack[top].isObject { // a value ended: a name comes next
			stack[top].wantName = true
		}
	}
}

// BenchmarkDecodeCheck is the body of a check through the strict decoder:
// the scan, then encoding/json. BenchmarkStrictScan is the scan alone.
func BenchmarkDecodeCheck(b *testing.B) {
	d := newBodyDecoder(&checkJSON{})
	body := []byte(`{"key": "user:12345", "limit": 1000000000, "period": "1s"}`)
	b.ReportAllocs()
	for b.Loop() {
		var c checkJSON
		if err := d.decode(body, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStrictScan(b *testing.B) {
	d := newBodyDecoder(&checkJSON{})
	body := []byte(`{"key": "user:12345", "limit": 1000000000, "period": "1s"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := strictScan(body, d.shape); err != nil {
			b.Fatal(err)
		}
	}
}
