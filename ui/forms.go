package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
)

// The UI validates nothing itself: it turns form fields into the object the
// API would decode (validate.FromMap), and puts the resulting domain errors
// back onto the form. These are the helpers for the way back.

// fieldMessage phrases one validation item for a person: the wording forms
// use for the generic rules (required, length, range, whole numbers), the
// API's own message otherwise, naming the nested key it is about.
func fieldMessage(fe store.FieldError) string {
	switch fe.Type {
	case "missing", "string_too_short":
		return fieldRequired
	case "string_too_long":
		s, ok := fe.Input.(string)
		if !ok || s == validate.Redacted { // a secret's length is not told either
			return fmt.Sprintf("Ensure this value has at most %v characters.", fe.Ctx["max_length"])
		}
		return fmt.Sprintf("Ensure this value has at most %v characters (it has %d).", fe.Ctx["max_length"], utf8.RuneCountInString(s))
	case "greater_than_equal":
		return fmt.Sprintf("Ensure this value is greater than or equal to %s.", boundText(fe.Ctx["ge"]))
	case "greater_than":
		return fmt.Sprintf("Ensure this value is greater than %s.", boundText(fe.Ctx["gt"]))
	case "less_than_equal":
		return fmt.Sprintf("Ensure this value is less than or equal to %s.", boundText(fe.Ctx["le"]))
	case "int_parsing", "int_type", "int_from_float":
		return "Enter a whole number."
	case "float_parsing", "float_type", "finite_number":
		return "Enter a number."
	}
	msg := strings.TrimPrefix(fe.Msg, "Value error, ")
	if len(fe.Loc) > 1 {
		parts := make([]string, len(fe.Loc)-1)
		for i, l := range fe.Loc[1:] {
			parts[i] = fmt.Sprint(l)
		}
		msg = strings.Join(parts, ".") + ": " + msg
	}
	return msg
}

// boundText writes a rule's limit as people write numbers: 1000000, not 1e+06.
func boundText(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// formFields maps an API field to the form field showing its errors, where
// the form names it differently.
var formFields = map[string]string{
	"packages": "packages_json",
	"env_vars": "env_vars_json",
}

// applyError puts a domain error onto f: each field problem under its
// field, any other client error under field (a non-field error about one
// input, e.g. an unknown runtime) or the form. It returns err itself when it
// is not the client's doing (a 500).
func (f *form) applyError(err error, field string) error {
	e := store.AsError(err)
	if e == nil || e.Code == store.Internal {
		return err
	}
	if e.Fields == nil {
		f.add(field, e.Message)
		return nil
	}
	for _, fe := range e.Fields {
		name := ""
		if len(fe.Loc) > 0 {
			name = fmt.Sprint(fe.Loc[0])
		}
		if alt, ok := formFields[name]; ok {
			name = alt
		}
		if name == "networking" { // one API field, two form fields
			name = "networking_type"
			if strings.Contains(fe.Msg, "allowed_hosts") {
				name = "allowed_hosts"
			}
		}
		f.add(name, fieldMessage(fe))
	}
	return nil
}

// flashMessage is a refused form as one line for a flash: "<Field>: <why>"
// for a field problem, the API's message otherwise.
func flashMessage(err error) string {
	e := store.AsError(err)
	if e == nil || len(e.Fields) == 0 {
		return store.ErrorMessage(err)
	}
	fe := e.Fields[0]
	if len(fe.Loc) == 0 {
		return fieldMessage(fe)
	}
	name := fmt.Sprint(fe.Loc[0])
	return strings.ToUpper(name[:1]) + name[1:] + ": " + fieldMessage(fe)
}

// setIf puts a trimmed form value into m unless it is blank: a blank field
// is one the person did not fill in, as absent as a missing JSON key.
func setIf(m map[string]any, key, value string) {
	if strings.TrimSpace(value) != "" {
		m[key] = strings.TrimSpace(value)
	}
}

// textarea is a textarea's value with the Windows line endings browsers
// send made Unix ones (a shell script must not get stray carriage returns).
func textarea(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// normText is a text field as the form compares it: textarea line
// endings, outer space trimmed.
func normText(s string) string { return strings.TrimSpace(textarea(s)) }

// keepText is what an edit form sends for a text field: the stored value
// itself when the submitted one differs from it only in outer space and
// line endings (so saving an untouched form changes nothing), else the
// submitted value with Unix line endings, trimmed unless it is a script.
func keepText(submitted, current string, trim bool) string {
	if normText(submitted) == normText(current) {
		return current
	}
	if trim || normText(submitted) == "" {
		return normText(submitted)
	}
	return textarea(submitted)
}

// versionField is the hidden version of an edit form as a request body
// holds it: a JSON number when it is one, else the text as sent, which
// the API's validation then refuses.
func versionField(raw string) any {
	raw = strings.TrimSpace(raw)
	if _, err := strconv.Atoi(raw); err == nil {
		return json.Number(raw)
	}
	return raw
}

// isVersionMismatch reports whether err is the API's stale-version 409.
func isVersionMismatch(err error) bool {
	return store.ErrorCode(err) == store.Conflict && strings.HasPrefix(store.ErrorMessage(err), "Version mismatch")
}

// curlCommand is the API request a form makes, written as a curl command
// for a shell where AOD_API_TOKEN holds a key. body must hold no secret:
// callers put placeholders where the form has secret values.
func curlCommand(method, target string, body map[string]any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the template escapes the page; the command stays copyable
	enc.SetIndent("", "  ")
	if err := enc.Encode(body); err != nil {
		return ""
	}
	data := strings.TrimRight(buf.String(), "\n")
	return "curl -X " + method + " " + target + " \\\n" +
		"  -H \"Authorization: Bearer $AOD_API_TOKEN\" \\\n" +
		"  -H \"Content-Type: application/json\" \\\n" +
		"  -d '" + strings.ReplaceAll(data, "'", `'\''`) + "'"
}

// withPlaceholders copies a request body for showing, with every env var
// value replaced by a placeholder naming it.
func withPlaceholders(body map[string]any, placeholder func(name string) string) map[string]any {
	out := make(map[string]any, len(body))
	for k, v := range body {
		out[k] = v
	}
	if vars, ok := body["env_vars"].(map[string]any); ok {
		shown := make(map[string]any, len(vars))
		for name := range vars {
			shown[name] = placeholder(name)
		}
		out["env_vars"] = shown
	}
	return out
}
