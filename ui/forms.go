package ui

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
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
		n := 0
		if s, ok := fe.Input.(string); ok {
			n = utf8.RuneCountInString(s)
		}
		return fmt.Sprintf("Ensure this value has at most %v characters (it has %d).", fe.Ctx["max_length"], n)
	case "greater_than_equal":
		return fmt.Sprintf("Ensure this value is greater than or equal to %v.", fe.Ctx["ge"])
	case "less_than_equal":
		return fmt.Sprintf("Ensure this value is less than or equal to %v.", fe.Ctx["le"])
	case "int_parsing", "int_type", "int_from_float":
		return "Enter a whole number."
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
