package validate

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// Bounds of a user's secret: its name is an env var name, its value what
// a model key, a token or a small key file needs. A sprite's environment
// holds every secret of the user, so the value stays well below what one
// variable may be (128 KiB on Linux).
const (
	MaxSecretNameLen  = MaxNameLen
	MaxSecretValueLen = 16384
)

// Secret is a validated PUT /secrets/{name}.
type Secret struct {
	Name  string
	Value string
}

// SecretInput validates a user's secret: the name (from the path in the
// API, a form field in the UI; reported at loc ["name"]) must be an env
// var name, as environments' env_vars are; the body's value (required) a
// non-empty string of at most MaxSecretValueLen characters with no NUL.
// The value is never echoed: a 422 shows Redacted in its place.
func SecretInput(name string, o *Object) (Secret, error) {
	in := Secret{Name: name}
	switch {
	case name == "":
		o.add("missing", []any{"name"}, "Field required", name, nil)
	case utf8.RuneCountInString(name) > MaxSecretNameLen:
		o.add("string_too_long", []any{"name"}, fmt.Sprintf("String should have at most %d characters", MaxSecretNameLen),
			boundedInput(name, MaxSecretNameLen), map[string]any{"max_length": MaxSecretNameLen})
	case !envVarName.MatchString(name):
		o.valueError([]any{"name"}, name, "Invalid secret name %s: must match [A-Za-z_][A-Za-z0-9_]*", store.PyRepr(name))
	}
	loc := []any{"value"}
	v, ok := o.m["value"]
	if !ok {
		// pydantic's input for a missing field is the whole object; its
		// members could be a mistyped value, so they are hidden too.
		hidden := make(map[string]any, len(o.m))
		for k := range o.m {
			hidden[k] = Redacted
		}
		o.add("missing", loc, "Field required", hidden, nil)
		return in, o.Err()
	}
	s, isStr := v.(string)
	switch {
	case !isStr:
		o.add("string_type", loc, "Input should be a valid string", Redacted, nil)
	case s == "":
		o.add("string_too_short", loc, "String should have at least 1 character", Redacted, map[string]any{"min_length": 1})
	case utf8.RuneCountInString(s) > MaxSecretValueLen:
		o.add("string_too_long", loc, fmt.Sprintf("String should have at most %d characters", MaxSecretValueLen),
			Redacted, map[string]any{"max_length": MaxSecretValueLen})
	case strings.ContainsRune(s, 0):
		o.valueError(loc, Redacted, "value must not contain a NUL character")
	default:
		in.Value = s
	}
	return in, o.Err()
}

// EnvVarName reports whether name is a valid env var name, the rule for
// environments' env_vars, sessions' secret_env_vars, user secrets and
// aod serve --pass-env.
func EnvVarName(name string) bool { return envVarName.MatchString(name) }
