package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/matryer/is"
)

// TestSecretsPage: Settings → Secrets lists names, adds and replaces a
// secret (POST, CSRF, then back to the list), shows a refused form again
// with the API's reason and never with the value, deletes behind a
// confirm step, and shows the form's curl with a placeholder for the value.
func TestSecretsPage(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("vault")
	is := is.New(t)
	const value = "sk-ant-PAGE-secret-90ab3f"

	p := v.get("/ui/settings/secrets")
	is.Equal(p.Status, http.StatusOK)                                                // the secrets page
	is.True(p.Has(`<a href="/ui/settings/secrets" aria-current="page">Secrets</a>`)) // in the nav, marked current
	is.True(p.Has("No secrets yet."))                                                // empty state
	is.True(p.Has(`<label for="id_name">Name</label>`))                              // labelled fields
	is.True(p.Has(`<label for="id_value">Value</label>`))                            // for name and value
	is.True(p.Has(`type="password" name="value"`))                                   // the value is typed unseen
	is.True(p.Has("curl -X PUT " + s.URL + "/secrets/NAME"))                         // the form's curl
	is.True(p.Has(`"value": "<value of NAME>"`))                                     // with a placeholder for the value
	is.True(v.get("/ui/api-keys").Has(`<a href="/ui/settings/secrets">Secrets</a>`)) // the nav links here from the API keys page

	p = v.post("/ui/settings/secrets", url.Values{"csrf_token": {""}, "name": {"ANTHROPIC_API_KEY"}, "value": {value}})
	is.Equal(p.Status, http.StatusForbidden) // no CSRF token, no secret
	list, err := s.DB.ListSecrets(context.Background(), userID(t, s, "vault"))
	is.NoErr(err)
	is.Equal(len(list), 0) // nothing stored

	v.get("/ui/settings/secrets")
	for _, c := range []struct {
		what   string
		form   url.Values
		field  string
		reason string
	}{
		{"a bad name", url.Values{"name": {"BAD-NAME"}, "value": {value}}, "BAD-NAME", "Invalid secret name 'BAD-NAME': must match [A-Za-z_][A-Za-z0-9_]*"},
		{"no name", url.Values{"name": {" "}, "value": {value}}, "", "This field is required."},
		{"no value", url.Values{"name": {"ANTHROPIC_API_KEY"}, "value": {"  "}}, "ANTHROPIC_API_KEY", "This field is required."},
		{"an oversized value", url.Values{"name": {"ANTHROPIC_API_KEY"}, "value": {value + strings.Repeat("v", validate.MaxSecretValueLen)}},
			"ANTHROPIC_API_KEY", fmt.Sprintf("Ensure this value has at most %d characters.", validate.MaxSecretValueLen)},
	} {
		t.Run(c.what, func(t *testing.T) {
			is := is.New(t)
			p := v.post("/ui/settings/secrets", c.form)
			is.Equal(p.Status, http.StatusOK)                                                  // shown again, never a 500
			is.True(p.Has(`<ul class="errorlist"><li>` + c.reason))                            // with the reason under its field
			is.True(p.Has(`name="name" id="id_name" maxlength="200" value="` + c.field + `"`)) // keeping the name
			is.True(p.Has(`name="value" id="id_value" maxlength="16384" value=""`))            // but not the value
			is.True(!p.Has(value))                                                             // which is nowhere on the page
		})
	}
	list, _ = s.DB.ListSecrets(context.Background(), userID(t, s, "vault"))
	is.Equal(len(list), 0) // no refused form stored anything

	p = v.post("/ui/settings/secrets", url.Values{"name": {"ANTHROPIC_API_KEY"}, "value": {" " + value + "\n"}})
	is.Equal(p.Status, http.StatusFound)           // saved, then
	is.Equal(p.Location(), "/ui/settings/secrets") // back to the list
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Secret ANTHROPIC_API_KEY added: your sessions get it as an env var."})
	is.True(p.Has("<td><code>ANTHROPIC_API_KEY</code></td>")) // listed by name
	is.True(!p.Has(value))                                    // never its value
	is.True(p.HasText("1 of at most 100 secrets."))           // and the count
	vals, err := s.DB.UserSecrets(context.Background(), userID(t, s, "vault"))
	is.NoErr(err)
	is.Equal(vals["ANTHROPIC_API_KEY"], value) // stored without the spaces around it

	p = v.follow(v.post("/ui/settings/secrets", url.Values{"name": {"ANTHROPIC_API_KEY"}, "value": {"second"}}))
	is.Equal(p.Flashes(), []string{"success: Secret ANTHROPIC_API_KEY replaced: sessions get the new value from their next turn."}) // the same name replaces
	p = v.post("/ui/settings/secrets", url.Values{"name": {"OPENAI_API_KEY"}, "value": {""}})
	is.True(p.Has("curl -X PUT " + s.URL + "/secrets/OPENAI_API_KEY")) // the curl names the name typed

	other := s.user("intruder")
	is.True(!other.get("/ui/settings/secrets").Has("<td><code>ANTHROPIC_API_KEY</code></td>"))             // another user sees none
	is.Equal(other.post("/ui/settings/secrets/ANTHROPIC_API_KEY/delete", nil).Status, http.StatusNotFound) // nor deletes one
	list, _ = s.DB.ListSecrets(context.Background(), userID(t, s, "vault"))
	is.Equal(len(list), 1) // it is still there

	p = v.get("/ui/settings/secrets")
	is.True(p.Has(`<summary class="button danger small" aria-label="Delete the secret ANTHROPIC_API_KEY">Delete…</summary>`)) // a confirm step, without JavaScript
	p = v.post("/ui/settings/secrets/ANTHROPIC_API_KEY/delete", url.Values{"csrf_token": {""}})
	is.Equal(p.Status, http.StatusForbidden) // delete wants the CSRF token too
	p = v.post("/ui/settings/secrets/ANTHROPIC_API_KEY/delete", nil)
	is.Equal(p.Status, http.StatusFound) // deleted
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Secret ANTHROPIC_API_KEY deleted."})
	is.True(p.Has("No secrets yet."))
	is.Equal(v.post("/ui/settings/secrets/ANTHROPIC_API_KEY/delete", nil).Status, http.StatusNotFound) // once
	is.Equal(v.get("/ui/settings/secrets/ANTHROPIC_API_KEY/delete").Status, http.StatusMethodNotAllowed)

	for i := range store.MaxSecretsPerUser {
		_, _, err := s.DB.PutSecret(context.Background(), userID(t, s, "vault"), fmt.Sprintf("S%03d", i), "v")
		is.NoErr(err)
	}
	v.get("/ui/settings/secrets")
	p = v.post("/ui/settings/secrets", url.Values{"name": {"ONE_MORE"}, "value": {value}})
	is.Equal(p.Status, http.StatusOK)                     // one more is shown again
	is.True(p.Has("A user may have at most 100 secrets")) // with the limit
	is.True(!p.Has(value))                                // and without the value

	anon := s.visitor()
	p = anon.get("/ui/settings/secrets")
	is.Equal(p.Status, http.StatusFound)                                              // anonymous
	is.Equal(p.Location(), "/ui/login?next="+url.QueryEscape("/ui/settings/secrets")) // sent to log in
}

// TestStartSessionKeyHint: starting a claude session from its agent's page
// without a model key says so with a link to Settings → Secrets; once the
// key is a secret there, the session starts.
func TestStartSessionKeyHint(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("keyless")
	is := is.New(t)
	v.get("/ui/agents/new")
	claude := idOf(t, v.post("/ui/agents/new", url.Values{"name": {"c"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}}))
	v.get("/ui/agents/" + claude)
	p := v.post("/ui/agents/"+claude+"/sessions", url.Values{"prompt": {"hi"}, "timeout": {"60"}})
	if p.Status == http.StatusFound {
		p = v.follow(p)
	}
	is.True(p.HasText("No API key configured for runtime: claude"))    // refused
	is.True(p.HasText("PUT /secrets/ANTHROPIC_API_KEY"))               // with the hint
	is.True(strings.Count(p.Body, `href="/ui/settings/secrets"`) >= 2) // and a link to the page besides the nav's
	is.Equal(len(s.sessionsOf(t, "keyless")), 0)                       // nothing started

	v.get("/ui/settings/secrets")
	v.post("/ui/settings/secrets", url.Values{"name": {"ANTHROPIC_API_KEY"}, "value": {"sk-ant-x"}})
	v.get("/ui/agents/" + claude)
	p = v.post("/ui/agents/"+claude+"/sessions", url.Values{"prompt": {"hi"}, "timeout": {"60"}})
	is.Equal(p.Status, http.StatusFound)                      // started
	is.True(strings.HasPrefix(p.Location(), "/ui/sessions/")) // off to its page
	is.Equal(len(s.sessionsOf(t, "keyless")), 1)              // one session
}

func (s *site) sessionsOf(t *testing.T, name string) []*store.Session {
	t.Helper()
	list, err := s.DB.ListSessions(context.Background(), userID(t, s, name))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestCopyKeyButtons: a key shown once has a Copy button, hidden until the
// page's script (a file of aod's, as the CSP wants) shows it.
func TestCopyKeyButtons(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	is := is.New(t)
	v := s.visitor()
	v.register("copier")
	p := v.get("/ui/welcome")
	is.Equal(p.Status, http.StatusOK)
	is.True(p.Has(`<button type="button" class="button small" data-copy="api-key" hidden>Copy key</button>`)) // the welcome key's button
	is.True(p.Has(`<span id="api-key-copy-status" role="status"></span>`))                                    // and where it says it copied
	script := regexp.MustCompile(`<script src="(/static/copy\.[0-9a-f]{12}\.js)" defer></script>`).FindStringSubmatch(p.Body)
	is.True(script != nil) // loaded from a file, no inline script

	v.get("/ui/api-keys")
	p = v.post("/ui/api-keys", url.Values{"name": {"ci"}})
	is.Equal(p.Status, http.StatusOK)
	is.True(p.Has(`data-copy="new-api-key" hidden>Copy key</button>`)) // the new key's button
	is.True(p.Has(script[0]))                                          // with the same script
	is.True(!v.get("/ui/api-keys").Has("data-copy"))                   // no key shown, no button

	js := v.get(script[1])
	is.Equal(js.Status, http.StatusOK)
	is.Equal(js.Header.Get("Content-Type"), "text/javascript; charset=utf-8") // served as JavaScript
	is.True(strings.Contains(js.Body, "navigator.clipboard"))                 // copies with the Clipboard API
	is.True(strings.Contains(js.Body, `execCommand("copy")`))                 // or a selection where it is refused
}
