// Package validate holds the one set of request rules the API and the web
// UI share: it turns a decoded JSON object (a request body, or the map the
// UI builds from its form fields) into the store's inputs, or into a 422
// whose items are shaped like the pydantic errors the original returned.
// Bounds, patterns and lists (package managers, env-var names, timeouts,
// mount paths) are written here once.
package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// MaxErrors caps the items of a 422: a hostile body with a million bad
// entries gets the first MaxErrors and a count of the rest, so an error
// body stays bounded whatever the input.
const MaxErrors = 100

// MaxBodyBytes is the largest request body or form accepted: an agent may
// carry 20 skills of 64 KiB each.
const MaxBodyBytes = 4 << 20

// errInvalidJSON is the 400 for a body that is not a JSON object.
var errInvalidJSON = store.Errorf(store.BadRequest, "Invalid JSON")

// ErrTooLarge is the 413 for a body over MaxBodyBytes.
var ErrTooLarge = store.Errorf(store.TooLarge, "Request body too large: the limit is 4 MiB")

// Read reads a request body (already limited to MaxBodyBytes by the caller's
// http.MaxBytesReader) that must be one JSON object.
func Read(body io.Reader) (*Object, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, ErrTooLarge
		}
		return nil, errInvalidJSON
	}
	return Parse(b)
}

// Object is a decoded JSON object with typed accessors that collect field
// errors instead of failing at the first one.
type Object struct {
	m       map[string]any
	errs    []store.FieldError
	dropped int // errors beyond MaxErrors
}

// Parse decodes a body that must be one JSON object. Numbers stay
// json.Number so integers are exact.
func Parse(body []byte) (*Object, error) {
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
	return &Object{m: m}, nil
}

// FromMap wraps values the UI built from a form (strings, []any, maps) so
// they pass through the same rules as a request body.
func FromMap(m map[string]any) *Object { return &Object{m: m} }

// Map is the decoded object (for the UI, which nests a parsed textarea in
// the object it builds).
func (o *Object) Map() map[string]any { return o.m }

// Err returns the collected field errors as the store's 422, or nil.
func (o *Object) Err() error {
	if len(o.errs) == 0 {
		return nil
	}
	errs := o.errs
	if o.dropped > 0 {
		errs = append(slices.Clip(errs), store.FieldError{Type: "too_many_errors", Loc: []any{},
			Msg: fmt.Sprintf("%d more errors not shown", o.dropped)})
	}
	return store.ValidationError(errs)
}

func (o *Object) add(typ string, loc []any, msg string, input any, ctx map[string]any) {
	if len(o.errs) >= MaxErrors {
		o.dropped++
		return
	}
	o.errs = append(o.errs, store.FieldError{Type: typ, Loc: loc, Msg: msg, Input: input, Ctx: ctx,
		URL: "https://errors.pydantic.dev/2.11/v/" + typ})
}

// valueError adds a custom-validator error ("Value error, ...").
func (o *Object) valueError(loc []any, input any, format string, args ...any) {
	o.add("value_error", loc, "Value error, "+fmt.Sprintf(format, args...), input, nil)
}

// secretFields hold values that must never be echoed, not even in a 422.
var secretFields = []string{"env_vars", "secret_env_vars"}

// Redacted is the value shown in place of a secret in a 422's input.
const Redacted = "**********"

// missing adds pydantic's "Field required", whose input is the whole
// object with its secrets hidden.
func (o *Object) missing(key string) {
	input := make(map[string]any, len(o.m))
	for k, v := range o.m {
		input[k] = v
	}
	for _, k := range secretFields {
		if m, ok := input[k].(map[string]any); ok {
			hidden := make(map[string]any, len(m))
			for name := range m {
				hidden[name] = Redacted
			}
			input[k] = hidden
		} else if _, ok := input[k]; ok {
			input[k] = Redacted
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
	o.add("missing", []any{key}, "Field required", input, nil)
}

// has reports whether key is present (null included).
func (o *Object) has(key string) bool { _, ok := o.m[key]; return ok }

// present reports whether key is present and not null.
func (o *Object) present(key string) bool { v, ok := o.m[key]; return ok && v != nil }

// str reads a required string field.
func (o *Object) str(key string, maxLen int) string {
	v, ok := o.m[key]
	if !ok {
		o.missing(key)
		return ""
	}
	s, ok := o.checkString([]any{key}, v, maxLen)
	if !ok {
		return ""
	}
	return s
}

// optStr reads an optional string field; absent and null give nil.
func (o *Object) optStr(key string, maxLen int) *string {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil
	}
	s, ok := o.checkString([]any{key}, v, maxLen)
	if !ok {
		return nil
	}
	return &s
}

func (o *Object) checkString(loc []any, v any, maxLen int) (string, bool) {
	s, ok := v.(string)
	if !ok {
		o.add("string_type", loc, "Input should be a valid string", v, nil)
		return "", false
	}
	if maxLen > 0 && utf8.RuneCountInString(s) > maxLen {
		o.add("string_too_long", loc, fmt.Sprintf("String should have at most %d characters", maxLen), v,
			map[string]any{"max_length": maxLen})
		return "", false
	}
	return s, true
}

// integer reads an integer field the way pydantic's lax mode does: JSON
// integers, integral floats and numeric strings. Absent or null gives
// ok=false (with a missing error when required).
func (o *Object) integer(key string, required bool, min, max int64) (int64, bool) {
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
			o.add("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", v, nil)
			return 0, false
		} else {
			o.add("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", v, nil)
			return 0, false
		}
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			o.add("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", v, nil)
			return 0, false
		}
		n = i
	default:
		o.add("int_type", loc, "Input should be a valid integer", v, nil)
		return 0, false
	}
	if n < min {
		o.add("greater_than_equal", loc, fmt.Sprintf("Input should be greater than or equal to %d", min), v,
			map[string]any{"ge": min})
		return 0, false
	}
	if n > max {
		o.add("less_than_equal", loc, fmt.Sprintf("Input should be less than or equal to %d", max), v,
			map[string]any{"le": max})
		return 0, false
	}
	return n, true
}

// number reads an optional number field the way pydantic's lax mode reads
// a float: JSON numbers and numeric strings, above gt and at most le.
// Absent or null gives ok=false.
func (o *Object) number(key string, gt, le float64) (float64, bool) {
	v, ok := o.m[key]
	if !ok || v == nil {
		return 0, false
	}
	loc := []any{key}
	var f float64
	var err error
	switch x := v.(type) {
	case json.Number:
		f, err = strconv.ParseFloat(string(x), 64)
	case string:
		f, err = strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			o.add("float_parsing", loc, "Input should be a valid number, unable to parse string as a number", v, nil)
			return 0, false
		}
	default:
		o.add("float_type", loc, "Input should be a valid number", v, nil)
		return 0, false
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		o.add("finite_number", loc, "Input should be a finite number", v, nil)
		return 0, false
	}
	if f <= gt {
		o.add("greater_than", loc, "Input should be greater than "+strconv.FormatFloat(gt, 'f', -1, 64), v, map[string]any{"gt": gt})
		return 0, false
	}
	if f > le {
		o.add("less_than_equal", loc, "Input should be less than or equal to "+strconv.FormatFloat(le, 'f', -1, 64), v, map[string]any{"le": le})
		return 0, false
	}
	return f, true
}

// list reads an optional list field; absent and null give ok=false.
func (o *Object) list(key string) ([]any, bool) {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil, false
	}
	l, ok := v.([]any)
	if !ok {
		o.add("list_type", []any{key}, "Input should be a valid list", v, nil)
		return nil, false
	}
	return l, true
}

// dict reads an optional object field; absent and null give ok=false.
func (o *Object) dict(key string) (map[string]any, bool) {
	v, ok := o.m[key]
	if !ok || v == nil {
		return nil, false
	}
	d, ok := v.(map[string]any)
	if !ok {
		if slices.Contains(secretFields, key) {
			v = Redacted
		}
		o.add("dict_type", []any{key}, "Input should be a valid dictionary", v, nil)
		return nil, false
	}
	return d, true
}

// stringMap reads an optional {str: str} object; absent and null give nil.
// The values of secret fields are never echoed in errors.
func (o *Object) stringMap(key string) map[string]string {
	secret := slices.Contains(secretFields, key)
	d, ok := o.dict(key)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(d))
	valid := true
	for _, k := range store.SortedKeys(d) {
		s, ok := d[k].(string)
		if !ok {
			var input any = d[k]
			if secret {
				input = Redacted
			}
			o.add("string_type", []any{key, k}, "Input should be a valid string", input, nil)
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

// ID returns the canonical form of a client's resource id; one that is not
// a UUID cannot exist, so it is the same 404 as an unknown one (never a 422
// or a 500). what names the resource: "Agent", "Environment", "Session".
func ID(raw, what string) (string, error) {
	id, ok := store.CanonicalID(raw)
	if !ok {
		return "", store.Errorf(store.NotFound, "%s not found", what)
	}
	return id, nil
}
