package validate_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aod/aod/validate"
	"github.com/matryer/is"
)

// A secret's name is an env var name; its value a non-empty, bounded
// string without NUL that no 422 ever echoes.
func TestSecretInput(t *testing.T) {
	const value = "sk-secret-value-0123"
	for _, c := range []struct {
		name, body string
		typ        string
		loc        string
	}{
		{"BAD-NAME", `{"value": "` + value + `"}`, "value_error", "name"},
		{"1ST", `{"value": "` + value + `"}`, "value_error", "name"},
		{strings.Repeat("N", validate.MaxSecretNameLen+1), `{"value": "` + value + `"}`, "string_too_long", "name"},
		{"OK", `{"valeu": "` + value + `"}`, "missing", "value"},
		{"OK", `{"value": ""}`, "string_too_short", "value"},
		{"OK", `{"value": ["` + value + `"]}`, "string_type", "value"},
		{"OK", `{"value": "` + value + `\u0000"}`, "value_error", "value"},
		{"OK", `{"value": "` + value + strings.Repeat("x", validate.MaxSecretValueLen) + `"}`, "string_too_long", "value"},
	} {
		t.Run(c.typ+"/"+c.loc, func(t *testing.T) {
			is := is.New(t)
			_, err := validate.SecretInput(c.name, parse(t, c.body))
			fields, _ := body422(t, err)
			is.Equal(len(fields), 1)        // one problem
			is.Equal(fields[0].Type, c.typ) // of this rule
			is.Equal(fields[0].Loc, []any{c.loc})
			b, _ := json.Marshal(fields)
			is.True(!strings.Contains(string(b), value)) // the value never echoed
		})
	}
	is := is.New(t)
	in, err := validate.SecretInput("ANTHROPIC_API_KEY", parse(t, `{"value": "`+value+`"}`))
	is.NoErr(err)
	is.Equal(in, validate.Secret{Name: "ANTHROPIC_API_KEY", Value: value})
}
