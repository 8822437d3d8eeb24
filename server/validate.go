package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// errInvalidJSON is the 400 for a body that is not a JSON object.
var errInvalidJSON = store.Errorf(store.BadRequest, "Invalid JSON")

// object is a decoded JSON object request body with typed accessors that
// collect field errors instead of failing at the first one.
type object struct {
	m    map[string]any
	errs []store.FieldError
}

// parseObject decodes a body that must be one JSON object. Numbers stay
// json.Number so integers are exact.
func parseObject(body []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errInvalidJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errInvalidJSON // anything but whitespace after the object
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errInvalidJSON
	}
	return &object{m: m}, nil
}

// err returns the collected field errors, or nil.
func (o *object) err() error {
	if len(o.errs) == 0 {
		return nil
	}
	return store.ValidationError(o.errs)
}

func (o *object) add(typ string, loc []any, msg string, input any) {
	o.errs = append(o.errs, store.FieldError{Type: typ, Loc: loc, Msg: msg, Input: input,
		URL: "https://errors.pydantic.dev/2.11/v/" + typ})
}

// valueError adds a custom-validator error ("Value error, ...").
func (o *object) valueError(loc []any, input any, format string, args ...any) {
	o.add("value_error", loc, "Value error, "+fmt.Sprintf(format, args...), input)
}

// secretFields hold values that must never be echoed, not even in a 422.
var secretFields = []string{"env_vars", "secret_env_vars"}

// redacted is the value shown in place of a secret in a 422's input.
const redacted = "**********"

func (o *object) missing(key string) {
	input := make(map[string]any, len(o.m))
	for k, v := range o.m {
		input[k] = v
	}
	for _, k := range secretFields {
		if m, ok := input[k].(map[string]any); ok {
			hidden := make(map[string]any, len(m))
			for name := range m {
				hidden[name] = redacted
			}
			input[k] = hidden
		} else if _, ok := input[k]; ok {
			input[k] = redacted
		}
	}
	if items, ok := input["resources"].([]any); ok {
		hidden := make([]any, len(items))
		for i, it := range items {
			hidden[i] = it
			if m, ok := it.(map[string]any); ok {
				hidden[i] = redactToken(m)
			}
		}
		input["resources"] = hidden
	}
	o.add("missing", []any{key}, "Field required", input)
}

// has reports whether key is present (null included).
func (o *object) has(key string) bool { _, ok := o.m[key]; return ok }

// present reports whether key is present and not null.
func (o *object) present(key string) bool { v, ok := o.m[key]; return ok && v != nil }

// str reads a required string field.
func (o *object) str(key string, maxLen int) string {
	v, ok := o.m[key]
	if !ok {
		o.missing(key)
		return ""
	}
	s, ok := checkString(o, []any{key}, v, maxLen)
	if !ok {
		return ""
	}
	return s
}

// optStr reads an optional string field; absent and null give nil.
func (o *object) optStr(key string, maxLen int) *string {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil
	}
	s, ok := checkString(o, []any{key}, v, maxLen)
	if !ok {
		return nil
	}
	return &s
}

func checkString(o *object, loc []any, v any, maxLen int) (string, bool) {
	s, ok := v.(string)
	if !ok {
		o.add("string_type", loc, "Input should be a valid string", v)
		return "", false
	}
	if maxLen > 0 && utf8.RuneCountInString(s) > maxLen {
		o.add("string_too_long", loc, fmt.Sprintf("String should have at most %d characters", maxLen), v)
		return "", false
	}
	return s, true
}

// integer reads an integer field the way pydantic's lax mode does: JSON
// integers, integral floats and numeric strings. Absent or null gives
// ok=false (with a missing error when required).
func (o *object) integer(key string, required bool, min, max int64) (int64, bool) {
	v, ok := o.m[key]
	if !ok || (v == nil && !required) {
		if required {
			o.missing(key)
		}
		return 0, false
	}
	loc := []any{key}
	var n int64
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			n = i
		} else if f, err := strconv.ParseFloat(string(x), 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			n = int64(f)
		} else if err == nil {
			o.add("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", v)
			return 0, false
		} else {
			o.add("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", v)
			return 0, false
		}
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			o.add("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", v)
			return 0, false
		}
		n = i
	default:
		o.add("int_type", loc, "Input should be a valid integer", v)
		return 0, false
	}
	if n < min {
		o.add("greater_than_equal", loc, fmt.Sprintf("Input should be greater than or equal to %d", min), v)
		return 0, false
	}
	if n > max {
		o.add("less_than_equal", loc, fmt.Sprintf("Input should be less than or equal to %d", max), v)
		return 0, false
	}
	return n, true
}

// list reads an optional list field; absent and null give ok=false.
func (o *object) list(key string) ([]any, bool) {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil, false
	}
	l, ok := v.([]any)
	if !ok {
		o.add("list_type", []any{key}, "Input should be a valid list", v)
		return nil, false
	}
	return l, true
}

// dict reads an optional object field; absent and null give ok=false.
func (o *object) dict(key string) (map[string]any, bool) {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil, false
	}
	d, ok := v.(map[string]any)
	if !ok {
		if slices.Contains(secretFields, key) {
			v = redacted
		}
		o.add("dict_type", []any{key}, "Input should be a valid dictionary", v)
		return nil, false
	}
	return d, true
}

// stringMap reads an optional {str: str} object; absent and null give nil.
// The values of secret fields are never echoed in errors.
func (o *object) stringMap(key string) map[string]string {
	secret := slices.Contains(secretFields, key)
	d, ok := o.dict(key)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(d))
	valid := true
	for k, v := range d {
		s, ok := v.(string)
		if !ok {
			var input any = v
			if secret {
				input = redacted
			}
			o.add("string_type", []any{key, k}, "Input should be a valid string", input)
			valid = false
			continue
		}
		out[k] = s
	}
	if !valid {
		return nil
	}
	return out
}

// canonicalJSON encodes v compactly with sorted object keys and without
// HTML escaping, so equal content gives equal bytes.
func canonicalJSON(v any) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // values decoded from JSON always encode
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}
