package transport

import (
	"reflect"
	"strings"
)

// shape is what a JSON value may hold, taken from the Go type it decodes
// into: a struct's exact member names, or a map's or slice's elements. A
// nil *shape allows any value: encoding/json reports a mismatched type.
type shape struct {
	kind   reflect.Kind      // reflect.Struct, reflect.Map or reflect.Slice
	fields map[string]*shape // for a struct: its members by JSON name
	elem   *shape            // for a map or slice: its elements
}

// shapeOf returns the shape of values of type t, for the types the API
// decodes: structs (with embedded structs flattened, as encoding/json
// does), maps, slices, pointers and scalars.
func shapeOf(t reflect.Type) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		s := &shape{kind: reflect.Struct, fields: map[string]*shape{}}
		addFields(s, t)
		return s
	case reflect.Map:
		return &shape{kind: reflect.Map, elem: shapeOf(t.Elem())}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte is a base64 string
		}
		return &shape{kind: reflect.Slice, elem: shapeOf(t.Elem())}
	}
	return nil
}

func addFields(s *shape, t reflect.Type) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			addFields(s, ft)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, taken := s.fields[name]; !taken { // the outer struct's field wins
			s.fields[name] = shapeOf(f.Type)
		}
	}
}
