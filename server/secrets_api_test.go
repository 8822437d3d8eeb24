package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/matryer/is"
)

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The secrets API: a user's vault of name -> value. PUT creates (201) or
// replaces (200) and answers the name and times only; GET lists names;
// DELETE removes. Values appear in no response, 422 or log line; every
// route wants a token; another user's secret is a 404.
func TestSecretsAPI(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	logs := &syncBuffer{}
	a := apitest.New(t, apitest.Options{Log: logs})
	tok, bob := a.Token("alice"), a.Token("bob")
	const value = "zq-SECRET-vault-value-51c2"
	put := func(token, name string, body any) apitest.Response {
		return a.Do("PUT", "/secrets/"+name, token, body)
	}

	r := a.Do("GET", "/secrets", tok, nil)
	is.Equal(r.Status, http.StatusOK)                         // an empty list
	is.Equal(strings.TrimSpace(string(r.Raw)), `{"data":[]}`) // is {"data": []}

	r = put(tok, "ANTHROPIC_API_KEY", map[string]any{"value": value})
	is.Equal(r.Status, http.StatusCreated)                                  // a new name is created
	is.Equal(keysOf(r.Obj()), []string{"created_at", "name", "updated_at"}) // name and times only
	is.Equal(r.Obj()["name"], "ANTHROPIC_API_KEY")                          // named
	is.Equal(r.Obj()["created_at"], r.Obj()["updated_at"])                  // set once
	is.True(!strings.Contains(string(r.Raw), value))                        // never the value
	first := r.Obj()["created_at"]
	r = put(tok, "ANTHROPIC_API_KEY", map[string]any{"value": value + "-2"})
	is.Equal(r.Status, http.StatusOK)                // the same name again replaces
	is.Equal(r.Obj()["created_at"], first)           // keeping when it was created
	is.True(!strings.Contains(string(r.Raw), value)) // never the value
	is.Equal(put(tok, "OTHER_KEY", map[string]any{"value": "x"}).Status, http.StatusCreated)

	r = a.Do("GET", "/secrets", tok, nil)
	is.Equal(r.Status, http.StatusOK) // the list
	names := []string{}
	for _, d := range r.Data() {
		names = append(names, d.(map[string]any)["name"].(string))
		is.Equal(keysOf(d.(map[string]any)), []string{"created_at", "name", "updated_at"}) // no value member
	}
	is.Equal(names, []string{"ANTHROPIC_API_KEY", "OTHER_KEY"}) // by name
	is.True(!strings.Contains(string(r.Raw), value))            // and no value anywhere
	vals, err := a.DB.UserSecrets(context.Background(), userIDOf(t, a, "alice"))
	is.NoErr(err)
	is.Equal(vals["ANTHROPIC_API_KEY"], value+"-2") // the replaced value is stored

	for _, c := range []struct {
		what, name string
		body       any
		typ        string
	}{
		{"a name that is no env var name", "BAD-NAME", map[string]any{"value": value}, "value_error"},
		{"a name starting with a digit", "1KEY", map[string]any{"value": value}, "value_error"},
		{"a long name", strings.Repeat("N", validate.MaxSecretNameLen+1), map[string]any{"value": value}, "string_too_long"},
		{"no value", "OK", map[string]any{"valeu": value}, "missing"},
		{"an empty value", "OK", map[string]any{"value": ""}, "string_too_short"},
		{"a value that is no string", "OK", map[string]any{"value": []string{value}}, "string_type"},
		{"an oversized value", "OK", map[string]any{"value": value + strings.Repeat("v", validate.MaxSecretValueLen)}, "string_too_long"},
		{"a NUL in the value", "OK", map[string]any{"value": value + "\x00"}, "value_error"},
	} {
		t.Run(c.what, func(t *testing.T) {
			is := is.New(t)
			r := put(tok, c.name, c.body)
			is.Equal(r.Status, http.StatusUnprocessableEntity) // refused
			is.True(strings.Contains(r.Detail(), `"type":"`+c.typ+`"`))
			is.True(!strings.Contains(string(r.Raw), value)) // without echoing the value
		})
	}
	is.Equal(put(tok, "OK", "{not json").Status, http.StatusBadRequest) // not JSON
	r = a.Do("GET", "/secrets", tok, nil)
	is.Equal(len(r.Data()), 2) // no refused PUT stored anything

	for _, c := range []struct{ method, path string }{
		{"GET", "/secrets"}, {"PUT", "/secrets/ANTHROPIC_API_KEY"}, {"DELETE", "/secrets/ANTHROPIC_API_KEY/delete"},
	} {
		r := a.Do(c.method, c.path, "", map[string]any{"value": value})
		is.Equal(r.Status, http.StatusUnauthorized) // a token is needed
	}

	r = a.Do("GET", "/secrets", bob, nil)
	is.Equal(len(r.Data()), 0) // another user sees none of alice's
	r = a.Do("DELETE", "/secrets/ANTHROPIC_API_KEY/delete", bob, nil)
	is.Equal(r.Status, http.StatusNotFound)                                                             // nor can delete them
	is.Equal(r.Detail(), "Secret not found")                                                            // as if there were none
	is.Equal(put(bob, "ANTHROPIC_API_KEY", map[string]any{"value": "bobs"}).Status, http.StatusCreated) // a name is per user

	r = a.Do("DELETE", "/secrets/OTHER_KEY/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                                           // deleted
	is.Equal(r.Detail(), "Secret deleted")                                                      // saying so
	is.Equal(a.Do("DELETE", "/secrets/OTHER_KEY/delete", tok, nil).Status, http.StatusNotFound) // once
	is.Equal(a.Do("DELETE", "/secrets/OTHER_KEY", tok, nil).Status, http.StatusMethodNotAllowed)

	carol := a.Token("carol")
	for i := range store.MaxSecretsPerUser {
		_, _, err := a.DB.PutSecret(context.Background(), userIDOf(t, a, "carol"), fmt.Sprintf("S%03d", i), "v")
		is.NoErr(err)
	}
	r = put(carol, "ONE_MORE", map[string]any{"value": "v"})
	is.Equal(r.Status, http.StatusConflict)                                                          // a user's secrets are capped
	is.Equal(r.Detail(), fmt.Sprintf("A user may have at most %d secrets", store.MaxSecretsPerUser)) // saying how many
	is.Equal(put(carol, "S000", map[string]any{"value": "w"}).Status, http.StatusOK)                 // replacing one is fine

	is.True(strings.Contains(logs.String(), "path=/secrets/ANTHROPIC_API_KEY")) // the requests were logged
	is.True(!strings.Contains(logs.String(), value))                            // without a value
}

// userIDOf is the id of the user a test's token was made for.
func userIDOf(t *testing.T, a *apitest.Server, name string) string {
	t.Helper()
	u, err := a.DB.EnsureUser(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// Without a model key the 400 keeps its detail and adds a hint of where a
// key can go; a user secret of that name is a key.
func TestSessionCredentialHint(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording) // Keyless nil: every provider needs its key
	tok := a.Token("alice")
	claude, _ := a.MustCreate("/agents", tok, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	codex, _ := a.MustCreate("/agents", tok, map[string]any{"name": "x", "runtime": "codex", "model": "openai/gpt-5"})["id"].(string)

	r := a.Do("POST", "/sessions", tok, apitest.SessionBody(claude, "hi"))
	is.Equal(r.Status, http.StatusBadRequest)                         // no key
	is.Equal(r.Detail(), "No API key configured for runtime: claude") // the contract's detail, unchanged
	is.Equal(keysOf(r.Obj()), []string{"detail", "hint"})             // and a hint
	hint, _ := r.Obj()["hint"].(string)
	is.True(strings.Contains(hint, "ANTHROPIC_API_KEY"))                         // naming the variable
	is.True(strings.Contains(hint, "CLAUDE_CODE_OAUTH_TOKEN"))                   // and the others that work
	is.True(strings.Contains(hint, "Settings → Secrets (/ui/settings/secrets)")) // the web UI's page
	is.True(strings.Contains(hint, "PUT /secrets/ANTHROPIC_API_KEY"))            // the API
	is.True(strings.Contains(hint, "env_vars"))                                  // and the environment
	is.Equal(a.SessionCount(tok), 0)                                             // nothing stored

	is.Equal(a.Do("PUT", "/secrets/ANTHROPIC_API_KEY", tok, map[string]any{"value": "sk-ant-x"}).Status, http.StatusCreated)
	r = a.Do("POST", "/sessions", tok, apitest.SessionBody(claude, "hi"))
	is.Equal(r.Status, http.StatusAccepted) // the user's secret is the key

	r = a.Do("POST", "/sessions", tok, apitest.SessionBody(codex, "hi"))
	is.Equal(r.Status, http.StatusBadRequest)                                          // another provider's key is still missing
	is.Equal(r.Detail(), "No API key configured for runtime: codex")                   // said as before
	is.True(strings.Contains(r.Obj()["hint"].(string), "PUT /secrets/OPENAI_API_KEY")) // with its own variable
	bob := a.Token("bob")
	bobClaude, _ := a.MustCreate("/agents", bob, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	is.Equal(a.Do("POST", "/sessions", bob, apitest.SessionBody(bobClaude, "hi")).Status, http.StatusBadRequest) // alice's secret is not bob's key
}

// A real session gets its user's secrets as env vars, below the
// environment's env_vars and the session's secret_env_vars; a secret's
// value is redacted from the provisioning log like the other secrets; no
// other user's session sees them.
func TestUserSecretsReachSessions(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok, bob := a.Token("alice"), a.Token("bob")
	const leaky = "zq-USER-secret-7d2a41"
	for name, v := range map[string]string{"USER_ONLY": "from-user", "SHARED_ENV": "from-user", "SHARED_SESSION": "from-user", "LEAKY": leaky} {
		is.Equal(a.Do("PUT", "/secrets/"+name, tok, map[string]any{"value": v}).Status, http.StatusCreated)
	}
	env, _ := a.MustCreate("/environments", tok, map[string]any{"name": "vars",
		"env_vars": map[string]any{"SHARED_ENV": "from-env"}, "setup_script": `echo "setup sees $LEAKY"`})["id"].(string)
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, `echo "user=$USER_ONLY env=$SHARED_ENV session=$SHARED_SESSION"
test "$LEAKY" = "zq-USER-""secret-7d2a41" && echo leaky-ok`,
		"environment_id", env, "secret_env_vars", map[string]any{"SHARED_SESSION": "from-session"}))
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")                                                               // the session ran
	is.Equal(s.Output("stdout", 1), "user=from-user env=from-env session=from-session\nleaky-ok\n") // the user's secrets reach it, the environment's and the session's winning
	r := a.Do("GET", "/sessions/"+id+"/provision-log", tok, nil)
	is.Equal(r.Status, http.StatusOK)
	is.Equal(string(r.Raw), "setup sees [redacted]\n") // a user secret is redacted from the provisioning log

	other := a.ShellAgent(bob)
	id = a.StartSession(bob, apitest.SessionBody(other, `echo "[$USER_ONLY]"`))
	s = a.Finish(bob, id)
	is.Equal(s.Output("stdout", 1), "[]\n") // another user's session does not get them
}

// sessNoKey is a scenario check for the no-model-key 400: exactly the
// contract's detail, and a hint.
func sessNoKey(want string) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		is.Equal(r.Detail(), want)                            // the contract's detail
		is.Equal(keysOf(r.Obj()), []string{"detail", "hint"}) // and a hint
	}
}
