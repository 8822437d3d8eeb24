package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("keys")
	is := is.New(t)

	p := v.get("/ui/api-keys")
	is.Equal(p.Status, http.StatusOK)                                            // the keys page
	is.True(p.Has("No keys yet."))                                               // empty state
	is.True(p.Has(`<label for="id_name">Label</label>`))                         // the name field is labelled Label
	is.True(p.Has(`type="datetime-local" name="expires_at" id="id_expires_at"`)) // optional expiry

	p = v.post("/ui/api-keys", url.Values{"name": {strings.Repeat("x", 101)}})
	is.Equal(p.Status, http.StatusOK)                              // too long re-renders
	is.True(p.Has("Ensure this value has at most 100 characters")) // with the limit
	p = v.post("/ui/api-keys", url.Values{"name": {"old"}, "expires_at": {"2001-01-01T00:00"}})
	is.Equal(p.Status, http.StatusOK)               // a past expiry re-renders
	is.True(p.Has("Expiry must be in the future.")) // with the reason
	p = v.post("/ui/api-keys", url.Values{"name": {"bad"}, "expires_at": {"tomorrow"}})
	is.True(p.Has("Enter a valid date/time.")) // a malformed expiry
	keys, err := s.DB.ListAPIKeys(context.Background(), userID(t, s, "keys"))
	is.NoErr(err)          // list
	is.Equal(len(keys), 0) // no key was made by invalid forms

	exp := time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02T15:04")
	p = v.post("/ui/api-keys", url.Values{"name": {"ci"}, "expires_at": {exp}})
	is.Equal(p.Status, http.StatusOK)                                                                   // create re-renders 200
	is.True(p.Has("Copy this key now — it will not be shown again:"))                                   // the reveal box
	is.Equal(p.Flashes(), []string{"success: API key created — copy it now, it won't be shown again."}) // the flash
	raw := regexp.MustCompile(`aod_[A-Za-z0-9_-]{40,}`).FindString(p.Body)
	is.True(raw != "")                                  // the raw key is on the page
	is.True(p.Has(`class="reveal"`))                    // in the green box
	is.True(p.Has(raw[:12] + "…"))                      // the table lists its prefix
	is.True(p.Has(">ci<"))                              // and label
	is.True(p.Has(exp[:10]))                            // and expiry
	is.Equal(p.Header.Get("Cache-Control"), "no-store") // never cached

	p = v.get("/ui/api-keys")
	is.True(!p.Has(raw))           // shown once only
	is.True(p.Has(raw[:12] + "…")) // then by prefix
	is.True(p.Has(">active<"))     // active pill
	is.True(p.Has("Revoke"))       // with a revoke button

	keys, err = s.DB.ListAPIKeys(context.Background(), userID(t, s, "keys"))
	is.NoErr(err)          // list
	is.Equal(len(keys), 1) // one key
	id := keys[0].ID
	is.True(keys[0].ExpiresAt != nil) // with its expiry

	other := s.user("other")
	p = other.post("/ui/api-keys/"+itoa(id)+"/revoke", nil)
	is.Equal(p.Status, http.StatusNotFound) // someone else's key is a 404
	p = v.post("/ui/api-keys/nope/revoke", nil)
	is.Equal(p.Status, http.StatusNotFound) // a non-integer id too
	p = v.get("/ui/api-keys/" + itoa(id) + "/revoke")
	is.Equal(p.Status, http.StatusMethodNotAllowed) // revoke is POST only

	p = v.post("/ui/api-keys/"+itoa(id)+"/revoke", nil)
	is.Equal(p.Status, http.StatusFound)   // revoke redirects
	is.Equal(p.Location(), "/ui/api-keys") // to the list
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Revoked " + raw[:12] + "…"}) // flash names the prefix
	is.True(p.Has(">revoked<"))                                           // the pill changed
	is.True(!p.Has(">Revoke<"))                                           // no button for revoked keys

	req, _ := http.NewRequest(http.MethodGet, s.URL+"/agents", nil)
	req.Header.Set("Authorization", "Bearer "+raw)
	res, err := http.DefaultClient.Do(req)
	is.NoErr(err) // API call
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusUnauthorized) // a revoked key no longer works

	p = v.get("/ui/")
	is.True(p.Has(`<span class="number">0</span><span class="label">Active API keys</span>`)) // dashboard counts active keys
}

func userID(t *testing.T, s *site, name string) string {
	t.Helper()
	u, err := s.DB.UserByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func storeEnv(name string) store.EnvironmentInput {
	return store.EnvironmentInput{Name: name, Networking: store.Networking{Type: "unrestricted", Config: json.RawMessage("{}")}}
}

func TestAgents(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("builder")

	t.Run("list", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/agents")
		is.Equal(p.Status, http.StatusOK)                                                          // list page
		is.True(p.Has("No agents yet. Use New agent to create the first one."))                    // empty state
		is.True(p.Has(`href="/ui/agents/new"`))                                                    // New agent link
		is.True(!p.Has(`<form method="post" action="/ui/agents/new"`))                             // no inline create form
		is.Equal(v.post("/ui/agents", nil).Status, http.StatusMethodNotAllowed)                    // POST /ui/agents is 405
		is.Equal(v.send(http.MethodDelete, "/ui/agents", nil).Status, http.StatusMethodNotAllowed) // and DELETE
	})
	t.Run("new form", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/agents/new")
		is.Equal(p.Status, http.StatusOK) // the form
		for _, f := range []string{"name", "runtime", "model", "environment_id", "description", "system"} {
			is.True(p.Has(`name="` + f + `" id="id_` + f + `"`)) // every field, with its id
			is.True(p.Has(`<label for="id_` + f + `">`))         // and a label
		}
		for _, rt := range []string{"claude", "codex", "gemini", "opencode", "shell"} {
			is.True(p.Has(`<option value="` + rt + `"`)) // runtime choices
		}
		is.True(p.Has(`<option value="local/shell">`))                                              // model suggestions include the shell model
		is.True(p.Has("No environment"))                                                            // environment choice
		is.Equal(v.send(http.MethodPut, "/ui/agents/new", nil).Status, http.StatusMethodNotAllowed) // PUT is 405
	})

	envID := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"py"}}))
	archivedEnv := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"old"}}))
	v.get("/ui/environments/" + archivedEnv)
	v.post("/ui/environments/"+archivedEnv+"/archive", nil)

	bad := []struct {
		name string
		form url.Values
		want string
	}{
		{"blank name", url.Values{"name": {" "}, "runtime": {"shell"}, "model": {"local/shell"}}, "This field is required."},
		{"no model", url.Values{"name": {"a"}, "runtime": {"claude"}, "model": {""}}, "This field is required."},
		{"unknown runtime", url.Values{"name": {"a"}, "runtime": {"cobol"}, "model": {"anthropic/claude-sonnet-4-6"}},
			"Unknown runtime: cobol. Must be one of: ['claude', 'codex', 'gemini', 'opencode', 'shell']"},
		{"unknown model", url.Values{"name": {"a"}, "runtime": {"claude"}, "model": {"gpt"}}, "Unknown model: gpt"},
		{"runtime cannot serve", url.Values{"name": {"a"}, "runtime": {"codex"}, "model": {"anthropic/claude-sonnet-4-6"}},
			"Runtime codex cannot serve model anthropic/claude-sonnet-4-6: provider anthropic not in ['openai']"},
		{"shell model only", url.Values{"name": {"a"}, "runtime": {"shell"}, "model": {"local/other"}}, "Unknown model: local/other"},
		{"unknown environment", url.Values{"name": {"a"}, "runtime": {"shell"}, "model": {"local/shell"},
			"environment_id": {"0195a0c0-0000-7000-8000-000000000001"}}, "Environment not found"},
		{"malformed environment", url.Values{"name": {"a"}, "runtime": {"shell"}, "model": {"local/shell"},
			"environment_id": {"nope"}}, "Environment not found"},
		{"archived environment", url.Values{"name": {"a"}, "runtime": {"shell"}, "model": {"local/shell"},
			"environment_id": {archivedEnv}}, "Cannot assign an archived environment to an agent"},
		{"long name", url.Values{"name": {strings.Repeat("n", 201)}, "runtime": {"shell"}, "model": {"local/shell"}}, "at most 200 characters"},
	}
	for _, c := range bad {
		t.Run("invalid: "+c.name, func(t *testing.T) {
			is := is.New(t)
			v.get("/ui/agents/new")
			p := v.post("/ui/agents/new", c.form)
			is.Equal(p.Status, http.StatusOK)                     // errors re-render 200
			is.True(p.Has(c.want))                                // with the API's message
			is.True(p.Has(`class="errorlist"`))                   // as a form error
			is.True(p.Has(`value="` + c.form.Get("model") + `"`)) // keeping what was typed
		})
	}
	t.Run("none were made", func(t *testing.T) {
		is := is.New(t)
		agents, err := s.DB.ListAgents(context.Background(), userID(t, s, "builder"), true)
		is.NoErr(err)            // list
		is.Equal(len(agents), 0) // invalid forms made no agent
	})

	var agentID string
	t.Run("create", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/new")
		p := v.post("/ui/agents/new", url.Values{"name": {"helper"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"},
			"environment_id": {envID}, "description": {"Helps out"}, "system": {"Be brief."}})
		is.Equal(p.Status, http.StatusFound) // PRG
		agentID = idOf(t, p)
		is.Equal(p.Location(), "/ui/agents/"+agentID) // to the new agent
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Agent created."}) // flash
		for _, want := range []string{agentID, "v1", "anthropic / claude", "anthropic/claude-sonnet-4-6", `href="/ui/environments/` + envID + `"`,
			"py v1", "Helps out", "Be brief.", ">active<", "Archive agent", "Start session", `name="prompt" id="id_prompt"`,
			`name="timeout" id="id_timeout" min="10" max="3600" value="600"`} {
			is.True(p.Has(want)) // the detail shows it
		}
		a, err := s.DB.GetAgent(context.Background(), userID(t, s, "builder"), agentID)
		is.NoErr(err)                    // stored
		is.Equal(a.Version, 1)           // at version 1
		is.Equal(a.EnvironmentID, envID) // with its environment
		p = v.get("/ui/agents")
		is.True(p.Has(`href="/ui/agents/` + agentID + `">helper</a>`))                   // listed
		is.True(p.Has("anthropic / claude"))                                             // provider/runtime
		is.Equal(v.post("/ui/agents/"+agentID, nil).Status, http.StatusMethodNotAllowed) // a detail page takes no POST
	})
	t.Run("others get 404", func(t *testing.T) {
		is := is.New(t)
		o := s.user("outsider")
		is.Equal(o.get("/ui/agents/"+agentID).Status, http.StatusNotFound)                                              // detail
		is.Equal(o.post("/ui/agents/"+agentID+"/archive", nil).Status, http.StatusNotFound)                             // archive
		is.Equal(o.post("/ui/agents/"+agentID+"/sessions", url.Values{"prompt": {"echo"}}).Status, http.StatusNotFound) // start
		is.True(!o.get("/ui/agents").Has("helper"))                                                                     // not in their list
		is.Equal(v.get("/ui/agents/not-a-uuid").Status, http.StatusNotFound)                                            // malformed ids are 404
		is.Equal(v.get("/ui/agents/0195a0c0-0000-7000-8000-000000000001").Status, http.StatusNotFound)                  // unknown ids too
	})
	t.Run("archive", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/" + agentID)
		p := v.post("/ui/agents/"+agentID+"/archive", nil)
		is.Equal(p.Status, http.StatusFound)          // PRG
		is.Equal(p.Location(), "/ui/agents/"+agentID) // back to the agent
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Agent archived."}) // flash
		is.True(p.Has(">archived<"))                                // status
		is.True(!p.Has("Archive agent"))                            // no archive button
		is.True(!p.Has(`name="prompt"`))                            // no start form
		p = v.post("/ui/agents/"+agentID+"/archive", nil)
		is.Equal(v.follow(p).Flashes(), []string{"warning: Agent is already archived."}) // twice: a warning
		is.True(v.get("/ui/agents").Has(">archived<"))                                   // the list shows archived agents
		p = v.post("/ui/agents/"+agentID+"/sessions", url.Values{"prompt": {"hi"}})
		is.Equal(p.Location(), "/ui/agents/"+agentID)                                                 // refused, back to the agent
		is.Equal(v.follow(p).Flashes(), []string{"error: Cannot create session with archived agent"}) // with the API's message
	})
}

func TestEnvironments(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("env")
	t.Run("list", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/environments")
		is.Equal(p.Status, http.StatusOK)                                                                            // list
		is.True(p.Has("No environments yet. Use New environment to add one, or run agents without an environment.")) // empty state
		is.True(p.Has(`href="/ui/environments/new"`))                                                                // New link
		is.Equal(v.post("/ui/environments", nil).Status, http.StatusMethodNotAllowed)                                // POST is 405
	})
	t.Run("new form", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/environments/new")
		is.Equal(p.Status, http.StatusOK) // the form
		for _, f := range []string{"name", "networking_type", "packages_json", "env_vars_json", "setup_script", "allowed_hosts"} {
			is.True(p.Has(`name="` + f + `" id="id_` + f + `"`)) // every field
			is.True(p.Has(`<label for="id_` + f + `">`))         // labelled
		}
		is.True(p.Has(`{"pip": ["pytest"], "npm": ["typescript"]}`)) // the packages placeholder
	})
	if _, err := s.DB.CreateEnvironment(context.Background(), userID(t, s, "env"), storeEnv("taken")); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		form url.Values
		want string
	}{
		{"blank name", url.Values{"name": {""}}, "This field is required."},
		{"invalid JSON", url.Values{"name": {"a"}, "packages_json": {`{"pip": [`}}, "Enter valid JSON."},
		{"trailing JSON", url.Values{"name": {"a"}, "packages_json": {`{} {}`}}, "Enter valid JSON."},
		{"not an object", url.Values{"name": {"a"}, "packages_json": {`["pytest"]`}}, "Enter a JSON object."},
		{"package not a list", url.Values{"name": {"a"}, "packages_json": {`{"pip": "pytest"}`}}, "pip: Input should be a valid list"},
		{"package not strings", url.Values{"name": {"a"}, "packages_json": {`{"pip": [123]}`}}, "pip.0: Input should be a valid string"},
		{"package null", url.Values{"name": {"a"}, "packages_json": {`{"pip": ["a", null]}`}}, "pip.1: Input should be a valid string"},
		{"unknown manager", url.Values{"name": {"a"}, "packages_json": {`{"brew": ["jq"]}`}},
			"Unknown package manager: brew. Must be one of: ['apt', 'cargo', 'gem', 'go', 'npm', 'pip']"},
		{"env vars not an object", url.Values{"name": {"a"}, "env_vars_json": {`"x"`}}, "Enter a JSON object."},
		{"env var not a string", url.Values{"name": {"a"}, "env_vars_json": {`{"K": 1}`}}, "K: Input should be a valid string"},
		{"env var null", url.Values{"name": {"a"}, "env_vars_json": {`{"K": null}`}}, "K: Input should be a valid string"},
		{"env var bad name", url.Values{"name": {"a"}, "env_vars_json": {`{"BAD-KEY": "v"}`}}, "BAD-KEY"},
		{"limited without hosts", url.Values{"name": {"a"}, "networking_type": {"limited"}, "allowed_hosts": {"\n  \n"}},
			"networking.allowed_hosts must list at least one host when type is 'limited'"},
		{"unknown networking", url.Values{"name": {"a"}, "networking_type": {"open"}}, "networking.type must be 'unrestricted' or 'limited'"},
		{"duplicate name", url.Values{"name": {"taken"}}, "An active environment named 'taken' already exists"},
	}
	for _, c := range bad {
		t.Run("invalid: "+c.name, func(t *testing.T) {
			is := is.New(t)
			v.get("/ui/environments/new")
			p := v.post("/ui/environments/new", c.form)
			is.Equal(p.Status, http.StatusOK)   // re-rendered
			is.True(p.Has(c.want))              // with the message
			is.True(p.Has(`class="errorlist"`)) // as a form error
		})
	}
	t.Run("secrets never echo in errors", func(t *testing.T) {
		is := is.New(t)
		p := v.post("/ui/environments/new", url.Values{"name": {"taken"}, "env_vars_json": {`{"TOKEN": "sekrit-value"}`}})
		is.Equal(p.Status, http.StatusOK)                                                   // re-rendered
		is.True(!strings.Contains(between(p.Body, `class="errorlist"`, "</ul>"), "sekrit")) // errors name no value
		// Nor does the re-rendered form: a secret is sent to the server once.
		is.True(!strings.Contains(p.Body, "sekrit"))            // the value is nowhere on the page
		is.True(p.Has("Enter the environment variables again")) // and the form says why the field is empty
		p = v.post("/ui/environments/new", url.Values{"name": {""}, "env_vars_json": {`{"BAD-KEY": "sekrit-value"}`}})
		is.True(!strings.Contains(p.Body, "sekrit")) // not when the env vars themselves are refused either
	})

	var envID string
	t.Run("create", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/environments/new")
		p := v.post("/ui/environments/new", url.Values{"name": {"web"}, "networking_type": {"limited"},
			"allowed_hosts": {"api.example.com\r\n\r\npypi.org\r\n"}, "packages_json": {`{"pip": ["pytest"], "npm": ["typescript"]}`},
			"env_vars_json": {`{"API_TOKEN": "sekrit-value"}`}, "setup_script": {"echo ready\r\n"}})
		is.Equal(p.Status, http.StatusFound) // PRG
		envID = idOf(t, p)
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Environment created."}) // flash
		for _, want := range []string{envID, "v1", "limited", "api.example.com", "pypi.org", "<strong>npm</strong>: typescript",
			"<strong>pip</strong>: pytest", "echo ready", "API_TOKEN", "(value hidden)", "Archive environment", ">active<"} {
			is.True(p.Has(want)) // the detail shows it
		}
		is.True(!p.Has("sekrit-value")) // env var values are never shown
		e, err := s.DB.GetEnvironment(context.Background(), userID(t, s, "env"), envID)
		is.NoErr(err)                                                                             // stored
		is.Equal(string(e.Networking.Config), `{"allowed_hosts":["api.example.com","pypi.org"]}`) // hosts, one per line
		is.Equal(e.SetupScript, "echo ready\n")                                                   // line endings normalised
		secrets, err := s.DB.EnvironmentSecrets(context.Background(), userID(t, s, "env"), envID)
		is.NoErr(err)                                  // decrypt
		is.Equal(secrets["API_TOKEN"], "sekrit-value") // the value is kept
		p = v.get("/ui/environments")
		is.True(p.Has(`href="/ui/environments/` + envID + `">web</a>`))                      // listed
		is.True(!p.Has("sekrit-value"))                                                      // without secrets
		is.Equal(v.post("/ui/environments/"+envID, nil).Status, http.StatusMethodNotAllowed) // no POST to a detail page
		is.True(v.get("/ui/agents/new").Has(">web v1</option>"))                             // offered to agents as name vN
	})
	t.Run("minimal", func(t *testing.T) {
		is := is.New(t)
		p := v.post("/ui/environments/new", url.Values{"name": {"bare"}})
		is.Equal(p.Status, http.StatusFound) // defaults are fine
		p = v.follow(p)
		is.True(p.Has("unrestricted")) // networking
	})
	t.Run("others get 404", func(t *testing.T) {
		is := is.New(t)
		o := s.user("nosy")
		is.Equal(o.get("/ui/environments/"+envID).Status, http.StatusNotFound)                  // detail
		is.Equal(o.post("/ui/environments/"+envID+"/archive", nil).Status, http.StatusNotFound) // archive
		is.Equal(o.get("/ui/environments/xyz").Status, http.StatusNotFound)                     // malformed id
	})
	t.Run("archive", func(t *testing.T) {
		is := is.New(t)
		p := v.post("/ui/environments/"+envID+"/archive", nil)
		is.Equal(p.Status, http.StatusFound)              // PRG
		is.Equal(p.Location(), "/ui/environments/"+envID) // to the detail
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Environment archived."}) // flash
		is.True(p.Has(">archived<"))                                      // status
		p = v.follow(v.post("/ui/environments/"+envID+"/archive", nil))
		is.Equal(p.Flashes(), []string{"warning: Environment is already archived."}) // twice: a warning
		is.True(v.get("/ui/environments").Has(">archived<"))                         // list shows archived ones
		is.True(!v.get("/ui/agents/new").Has(">web v1</option>"))                    // no longer offered to agents
		p = v.post("/ui/environments/new", url.Values{"name": {"web"}})
		is.Equal(p.Status, http.StatusFound) // an archived name can be reused
	})
}
