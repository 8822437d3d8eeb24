package ui_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"
)

var curlRE = regexp.MustCompile(`(?s)<pre class="code">(curl -X [^<]*)</pre>`)

// curlOf returns the page's curl command, HTML-unescaped ("" when none).
func curlOf(p page) string {
	m := curlRE.FindStringSubmatch(p.Body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// curlBody is the JSON a curl command sends: its -d '...' as a shell
// reads it.
func curlBody(t *testing.T, cmd string) string {
	t.Helper()
	_, body, ok := strings.Cut(cmd, "-d '")
	if !ok || !strings.HasSuffix(body, "'") {
		t.Fatalf("no body in %q", cmd)
	}
	return strings.ReplaceAll(strings.TrimSuffix(body, "'"), `'\''`, "'")
}

// TestAgentEdit: the edit form updates an agent as PUT /agents/{id} does,
// version and all, and the version history shows what it was.
func TestAgentEdit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("editor")
	token := s.Token("editor")
	envID := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"py"}}))
	archivedEnv := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"gone"}}))
	v.post("/ui/environments/"+archivedEnv+"/archive", nil)
	v.get("/ui/agents/new")
	id := idOf(t, v.post("/ui/agents/new", url.Values{"name": {"helper"}, "runtime": {"claude"},
		"model": {"anthropic/claude-sonnet-4-6"}, "description": {"Helps out"}, "system": {"Be brief."}}))
	edit := "/ui/agents/" + id + "/edit"
	stored := func() (string, int) {
		a, err := s.DB.GetAgent(context.Background(), userID(t, s, "editor"), id)
		if err != nil {
			t.Fatal(err)
		}
		return a.Name, a.Version
	}

	t.Run("create form shows its curl", func(t *testing.T) {
		is := is.New(t)
		cmd := curlOf(v.get("/ui/agents/new"))
		is.True(strings.HasPrefix(cmd, "curl -X POST "+s.URL+"/agents \\\n"))       // method and this server's URL
		is.True(strings.Contains(cmd, `-H "Authorization: Bearer $AOD_API_TOKEN"`)) // the token from the shell
		is.True(strings.Contains(cmd, `"name": "<name>"`))                          // a blank required field as a placeholder
		is.True(strings.Contains(cmd, `"runtime": "claude"`))                       // the form's default
	})
	t.Run("detail links to edit and history", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/agents/" + id)
		is.True(p.Has(`href="` + edit + `">Edit agent</a>`))                    // the Edit link
		is.True(p.Has(`href="/ui/agents/` + id + `/versions">Version history`)) // and the history
	})
	t.Run("form is prefilled", func(t *testing.T) {
		is := is.New(t)
		p := v.get(edit)
		is.Equal(p.Status, http.StatusOK)                                // the form
		is.True(p.Has(`<form method="post" action="` + edit + `"`))      // posts to itself
		is.True(p.Has(`<input type="hidden" name="version" value="1">`)) // carrying the version read
		is.True(p.Has(`name="name" id="id_name" value="helper"`))        // the current name
		is.True(p.Has(`value="anthropic/claude-sonnet-4-6"`))            // model
		is.True(p.Has(`<option value="claude" selected>`))               // runtime
		is.True(p.Has(`value="Helps out"`))                              // description
		is.True(p.Has(">\nBe brief.</textarea>"))                        // system prompt
		is.True(p.Has(`<label for="id_` + "system" + `">`))              // labelled
		is.True(p.Has(`<option value="` + envID + `">py v1</option>`))   // environments offered
		is.True(!p.Has(archivedEnv))                                     // not archived ones
		cmd := curlOf(p)
		is.True(strings.HasPrefix(cmd, "curl -X PUT "+s.URL+"/agents/"+id+" \\\n")) // PUT to the agent
		is.True(strings.Contains(cmd, `"version": 1`))                              // with the version
		is.True(p.Has("<details"))                                                  // folded away

		// The command is the form's request: sent as it is, it is a no-op.
		res := s.Do(http.MethodPut, "/agents/"+id, token, curlBody(t, cmd))
		is.Equal(res.Status, http.StatusOK)        // the API takes it
		is.Equal(res.Obj()["version"], float64(1)) // and nothing changed
	})
	t.Run("round trip", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"1"}, "name": {" helper two "}, "runtime": {"claude"},
			"model": {"anthropic/claude-opus-4-1"}, "environment_id": {envID}, "description": {""}, "system": {"Be terse.\r\nVery."}})
		is.Equal(p.Status, http.StatusFound)     // PRG
		is.Equal(p.Location(), "/ui/agents/"+id) // to the detail
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Agent updated: now version 2."}) // flash
		for _, want := range []string{"helper two", "v2", "anthropic/claude-opus-4-1", "Be terse.\nVery.", `href="/ui/environments/` + envID + `"`} {
			is.True(p.Has(want)) // the detail shows the new values
		}
		is.True(!p.Has("Helps out")) // a blank description cleared it

		a := s.Do(http.MethodGet, "/agents/"+id, token, nil).Obj()
		is.Equal(a["version"], float64(2))                // the API sees version 2
		is.Equal(a["name"], "helper two")                 // trimmed name
		is.Equal(a["model"], "anthropic/claude-opus-4-1") // model
		is.Equal(a["system"], "Be terse.\nVery.")         // Unix line endings
		is.Equal(a["description"], nil)                   // cleared
		is.Equal(a["environment_id"], envID)              // attached
		vs := s.Do(http.MethodGet, "/agents/"+id+"/versions", token, nil).Data()
		is.Equal(len(vs), 2) // a new version snapshot
	})
	t.Run("untouched form changes nothing", func(t *testing.T) {
		is := is.New(t)
		p := v.get(edit)
		form := url.Values{"version": {"2"}}
		for _, k := range []string{"name", "model", "description"} {
			m := regexp.MustCompile(`name="` + k + `" id="id_` + k + `"[^>]*value="([^"]*)"`).FindStringSubmatch(p.Body)
			is.True(m != nil) // the field is there
			form.Set(k, html.UnescapeString(m[1]))
		}
		form.Set("runtime", "claude")
		form.Set("environment_id", envID)
		form.Set("system", "\r\nBe terse.\r\nVery.\r\n") // as a browser sends the textarea back
		p = v.post(edit, form)
		is.Equal(v.follow(p).Flashes(), []string{"warning: Nothing changed: the agent is still version 2."}) // a no-op says so
		_, version := stored()
		is.Equal(version, 2) // no new version
	})
	t.Run("stale version", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"1"}, "name": {"stale-name"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}})
		is.Equal(p.Status, http.StatusConflict)                                                  // refused
		is.True(p.HasText("This agent was changed elsewhere (now version 2): reload to see it")) // said so
		is.True(p.Has(`<a href="` + edit + `">reload to see it</a>`))                            // with a reload link
		is.True(p.Has(`value="stale-name"`))                                                     // the input is kept
		name, version := stored()
		is.Equal(name, "helper two") // no change
		is.Equal(version, 2)         // at all
	})
	t.Run("CSRF", func(t *testing.T) {
		is := is.New(t)
		p := v.post(edit, url.Values{"csrf_token": {""}, "version": {"2"}, "name": {"forged"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}})
		is.Equal(p.Status, http.StatusForbidden) // no token, no change
		name, _ := stored()
		is.Equal(name, "helper two") // unchanged
	})
	bad := []struct {
		name string
		form url.Values
		want string
	}{
		{"blank name", url.Values{"name": {" "}}, "This field is required."},
		{"blank model", url.Values{"model": {""}}, "Model must be a non-empty string"},
		{"unknown runtime", url.Values{"runtime": {"cobol"}}, "Unknown runtime: cobol. Must be one of: ['claude', 'codex', 'gemini', 'opencode', 'shell']"},
		{"runtime cannot serve", url.Values{"model": {"openai/gpt-5"}}, "Runtime claude cannot serve model openai/gpt-5: provider openai not in ['anthropic']"},
		{"archived environment", url.Values{"environment_id": {archivedEnv}}, "Cannot assign an archived environment to an agent"},
		{"long name", url.Values{"name": {strings.Repeat("n", 201)}}, "at most 200 characters"},
		{"bad version", url.Values{"version": {"two"}}, "Version: Enter a whole number."},
	}
	for _, c := range bad {
		t.Run("invalid: "+c.name, func(t *testing.T) {
			is := is.New(t)
			form := url.Values{"version": {"2"}, "name": {"renamed"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}}
			for k, vals := range c.form {
				form[k] = vals
			}
			v.get(edit)
			p := v.post(edit, form)
			is.Equal(p.Status, http.StatusOK)   // re-rendered
			is.True(p.Has(c.want))              // with the API's message
			is.True(p.Has(`class="errorlist"`)) // as a form error
			name, version := stored()
			is.Equal(name, "helper two") // nothing saved
			is.Equal(version, 2)
		})
	}
	t.Run("detach the environment", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"2"}, "name": {"helper two"}, "runtime": {"claude"}, "model": {"anthropic/claude-opus-4-1"},
			"environment_id": {""}, "system": {"Be terse.\nVery."}})
		is.Equal(p.Status, http.StatusFound) // saved
		a := s.Do(http.MethodGet, "/agents/"+id, token, nil).Obj()
		is.Equal(a["environment_id"], nil) // detached
		is.Equal(a["version"], float64(3)) // a new version
	})
	t.Run("an archived environment stays", func(t *testing.T) {
		is := is.New(t)
		later := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"later"}}))
		other := s.MustCreate("/agents", token, map[string]any{"name": "other", "runtime": "shell", "model": "local/shell", "environment_id": later})["id"].(string)
		v.post("/ui/environments/"+later+"/archive", nil)
		p := v.get("/ui/agents/" + other + "/edit")
		is.True(p.Has(`<option value="` + later + `" selected>later v1 (archived)</option>`)) // still shown, and said to be archived
		is.True(!strings.Contains(curlOf(p), "environment_id"))                               // not sent: the API would refuse it
		p = v.post("/ui/agents/"+other+"/edit", url.Values{"version": {"1"}, "name": {"other two"}, "runtime": {"shell"},
			"model": {"local/shell"}, "environment_id": {later}})
		is.Equal(p.Status, http.StatusFound) // the rest can be changed
		a := s.Do(http.MethodGet, "/agents/"+other, token, nil).Obj()
		is.Equal(a["name"], "other two")     // renamed
		is.Equal(a["environment_id"], later) // the environment kept
	})
	t.Run("others get 404", func(t *testing.T) {
		is := is.New(t)
		o := s.user("intruder")
		is.Equal(o.get(edit).Status, http.StatusNotFound) // the form
		p := o.post(edit, url.Values{"version": {"3"}, "name": {"mine"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}})
		is.Equal(p.Status, http.StatusNotFound)                                                   // the update, with a valid token of theirs
		is.Equal(o.get("/ui/agents/"+id+"/versions").Status, http.StatusNotFound)                 // the history
		is.Equal(o.get("/ui/agents/"+id+"/versions/1").Status, http.StatusNotFound)               // a version
		is.Equal(v.get("/ui/agents/not-a-uuid/edit").Status, http.StatusNotFound)                 // malformed ids
		is.Equal(v.send(http.MethodPut, edit, nil).Status, http.StatusMethodNotAllowed)           // GET and POST only
		is.Equal(v.post("/ui/agents/"+id+"/versions/1", nil).Status, http.StatusMethodNotAllowed) // versions are read only
		name, _ := stored()
		is.Equal(name, "helper two") // untouched
	})
	t.Run("version history", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/agents/" + id + "/versions")
		is.Equal(p.Status, http.StatusOK) // the list
		for _, n := range []string{"1", "2", "3"} {
			is.True(p.Has(`<a href="/ui/agents/` + id + `/versions/` + n + `">v` + n + `</a>`)) // every version, linked
		}
		is.True(p.Has(`class="table-wrap"`))                                                 // scrolls on a phone
		is.True(p.Has(`v3</a> <span class="status-pill">current`))                           // the current one marked
		is.True(strings.Index(p.Body, "/versions/3") < strings.Index(p.Body, "/versions/1")) // newest first

		p = v.get("/ui/agents/" + id + "/versions/1")
		is.Equal(p.Status, http.StatusOK) // the first version
		for _, want := range []string{"Version 1", "helper", "Helps out", "Be brief.", "anthropic/claude-sonnet-4-6", "version 3"} {
			is.True(p.Has(want)) // as it was, and where the agent is now
		}
		is.True(!p.Has("Be terse."))                                       // not the later values
		is.True(!p.Has("<form method=\"post\" action=\"/ui/agents/" + id)) // read only
		p = v.get("/ui/agents/" + id + "/versions/2")
		is.True(p.Has("helper two") && p.Has(`href="/ui/environments/`+envID+`"`)) // the second, with its environment
		for _, n := range []string{"4", "0", "01", "x", "-1"} {
			is.Equal(v.get("/ui/agents/"+id+"/versions/"+n).Status, http.StatusNotFound) // no such version
		}
	})
	t.Run("archived", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/" + id)
		v.post("/ui/agents/"+id+"/archive", nil)
		p := v.get("/ui/agents/" + id)
		is.True(!p.Has(`href="` + edit + `"`))                        // no Edit link
		is.True(p.Has("archived: it cannot be edited or unarchived")) // the header says why
		p = v.get(edit)
		is.Equal(p.Status, http.StatusOK)                            // the page still answers
		is.True(p.HasText("This agent is archived"))                 // and says so
		is.True(p.HasText("the API refuses changes to it"))          // and why
		is.True(!p.Has(`<form method="post" action="` + edit + `"`)) // with no form
		p = v.post(edit, url.Values{"version": {"3"}, "name": {"late"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}})
		is.Equal(p.Status, http.StatusConflict)           // a late POST is refused
		is.True(p.Has("Cannot update an archived agent")) // with the API's message
		name, _ := stored()
		is.Equal(name, "helper two") // unchanged
	})
}

// TestEnvironmentEdit: the edit form updates an environment as
// PUT /environments/{id} does, and no env var value ever reaches a page.
func TestEnvironmentEdit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("envedit")
	token := s.Token("envedit")
	v.get("/ui/environments/new")
	id := idOf(t, v.post("/ui/environments/new", url.Values{"name": {"web"}, "networking_type": {"limited"},
		"allowed_hosts": {"api.example.com\r\n"}, "allow_package_managers": {"on"}, "packages_json": {`{"pip": ["pytest"]}`},
		"env_vars_json": {`{"API_TOKEN": "sekrit-one", "OTHER": "sekrit-other"}`}, "setup_script": {"echo 'one'\r\n"}}))
	if _, err := s.DB.CreateEnvironment(context.Background(), userID(t, s, "envedit"), storeEnv("taken")); err != nil {
		t.Fatal(err)
	}
	edit := "/ui/environments/" + id + "/edit"
	secrets := func() map[string]string {
		m, err := s.DB.EnvironmentSecrets(context.Background(), userID(t, s, "envedit"), id)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	version := func() int {
		e, err := s.DB.GetEnvironment(context.Background(), userID(t, s, "envedit"), id)
		if err != nil {
			t.Fatal(err)
		}
		return e.Version
	}
	noSecrets := func(is *is.I, p page) {
		for _, secret := range []string{"sekrit-one", "sekrit-other", "sekrit-two", "sekrit-new", "sekrit-typed", "sekrit-json"} {
			is.True(!strings.Contains(p.Body, secret)) // no env var value anywhere on the page
		}
	}

	t.Run("create form's curl hides values", func(t *testing.T) {
		is := is.New(t)
		cmd := curlOf(v.get("/ui/environments/new"))
		is.True(strings.HasPrefix(cmd, "curl -X POST "+s.URL+"/environments \\\n")) // method and URL
		p := v.post("/ui/environments/new", url.Values{"name": {"taken"}, "env_vars_json": {`{"TOKEN": "sekrit-json"}`}})
		is.Equal(p.Status, http.StatusOK) // refused: the name is taken
		cmd = curlOf(p)
		is.True(strings.Contains(cmd, `"TOKEN": "<value of TOKEN>"`)) // the value as a placeholder
		noSecrets(is, p)
	})
	t.Run("form is prefilled without values", func(t *testing.T) {
		is := is.New(t)
		p := v.get(edit)
		is.Equal(p.Status, http.StatusOK)                                                 // the form
		is.True(p.Has(`<input type="hidden" name="version" value="1">`))                  // with the version read
		is.True(p.Has(`name="name" id="id_name" value="web"`))                            // name
		is.True(p.Has(`<option value="limited" selected>`))                               // networking
		is.True(p.Has(">\napi.example.com</textarea>"))                                   // hosts
		is.True(p.Has(`id="id_allow_package_managers" checked`))                          // registries allowed
		is.True(p.Has(`>` + "\n" + `{"pip":["pytest"]}</textarea>`))                      // packages as JSON
		is.True(p.Has(">\necho 'one'\n</textarea>"))                                      // setup script
		is.True(p.Has(`name="env_value_API_TOKEN" id="id_env_value_API_TOKEN" value=""`)) // a name, its value empty
		is.True(p.Has(`value="OTHER"`))                                                   // every name, with a Remove box
		is.True(p.Has(`placeholder="leave empty to keep"`))                               // keep semantics
		noSecrets(is, p)
		cmd := curlOf(p)
		is.True(strings.HasPrefix(cmd, "curl -X PUT "+s.URL+"/environments/"+id+" \\\n")) // PUT to it
		is.True(strings.Contains(cmd, `"setup_script": "echo '\''one'\''\n"`))            // quotes survive the shell's quoting
		is.True(!strings.Contains(cmd, "env_vars"))                                       // nothing to change there

		res := s.Do(http.MethodPut, "/environments/"+id, token, curlBody(t, cmd))
		is.Equal(res.Status, http.StatusOK)        // the API takes the command's body
		is.Equal(res.Obj()["version"], float64(1)) // as a no-op
	})
	t.Run("untouched form changes nothing", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"1"}, "name": {"web"}, "networking_type": {"limited"}, "allowed_hosts": {"api.example.com"},
			"allow_package_managers": {"on"}, "packages_json": {`{"pip":["pytest"]}`}, "setup_script": {"echo 'one'\r\n"}})
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"warning: Nothing changed: the environment is still version 1."}) // a no-op
		is.True(p.HasText("api.example.com, and the package registries"))                                // the policy as it was
		is.Equal(version(), 1)                                                                           // no new version
	})
	t.Run("round trip", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"1"}, "name": {"web2"}, "networking_type": {"limited"}, "allowed_hosts": {"api.example.com\r\npypi.org"},
			"packages_json": {`{"npm": ["typescript"]}`}, "setup_script": {"echo two\r\n"},
			"env_value_API_TOKEN": {"sekrit-two"}, "env_value_OTHER": {""}, "env_remove": {"OTHER"}, "env_vars_json": {`{"NEW_VAR": "sekrit-new"}`}})
		is.Equal(p.Status, http.StatusFound)           // PRG
		is.Equal(p.Location(), "/ui/environments/"+id) // to the detail
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: Environment updated: now version 2."}) // flash
		for _, want := range []string{"web2", "v2", "<strong>npm</strong>: typescript", "pypi.org", "echo two", "API_TOKEN", "NEW_VAR"} {
			is.True(p.Has(want)) // the detail shows the new values
		}
		is.True(!p.Has("<code>OTHER</code>")) // the removed name is gone
		noSecrets(is, p)
		is.Equal(secrets(), map[string]string{"API_TOKEN": "sekrit-two", "NEW_VAR": "sekrit-new"}) // replaced, removed, added

		e := s.Do(http.MethodGet, "/environments/"+id, token, nil).Obj()
		is.Equal(e["version"], float64(2))                                                                                  // the API sees version 2
		is.Equal(e["name"], "web2")                                                                                         // name
		is.Equal(e["setup_script"], "echo two\n")                                                                           // script
		is.Equal(e["packages"], map[string]any{"npm": []any{"typescript"}})                                                 // packages replaced
		is.Equal(e["networking"], map[string]any{"type": "limited", "allowed_hosts": []any{"api.example.com", "pypi.org"}}) // the unticked box dropped allow_package_managers
	})
	t.Run("validation never echoes values", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"2"}, "name": {""}, "networking_type": {"limited"}, "allowed_hosts": {"pypi.org"},
			"env_value_API_TOKEN": {"sekrit-typed"}, "env_vars_json": {`{"EXTRA": "sekrit-json"}`}})
		is.Equal(p.Status, http.StatusOK)            // re-rendered
		is.True(p.Has("This field is required."))    // the name's problem
		is.True(p.Has("Enter the new values again")) // and why the values are gone
		noSecrets(is, p)
		cmd := curlOf(p)
		is.True(strings.Contains(cmd, `"API_TOKEN": "<new value of API_TOKEN>"`)) // placeholders in the curl
		is.True(strings.Contains(cmd, `"NEW_VAR": "<current value of NEW_VAR>"`)) // the kept names too: env_vars replaces the map
		is.True(strings.Contains(cmd, `"EXTRA": "<new value of EXTRA>"`))
		is.Equal(version(), 2) // nothing saved

		p = v.post(edit, url.Values{"version": {"2"}, "name": {"web2"}, "env_vars_json": {`{"BAD-KEY": "sekrit-json"}`}})
		is.True(p.Has("Invalid env_var key 'BAD-KEY'")) // the API's rule on names
		noSecrets(is, p)
		p = v.post(edit, url.Values{"version": {"2"}, "name": {"web2"}, "env_vars_json": {`{"K": 1}`}})
		is.True(p.Has("K: Input should be a valid string")) // and on values
		p = v.post(edit, url.Values{"version": {"2"}, "name": {"web2"}, "env_value_API_TOKEN": {"sekrit-typed"}, "env_remove": {"API_TOKEN"}})
		is.True(p.Has("Give API_TOKEN a new value or remove it, not both.")) // one or the other
		is.True(p.Has(`value="API_TOKEN" checked`))                          // the tick is kept
		noSecrets(is, p)
		p = v.post(edit, url.Values{"version": {"2"}, "name": {"taken"}})
		is.True(p.Has("An active environment named 'taken' already exists")) // names stay unique
		p = v.post(edit, url.Values{"version": {"2"}, "name": {"web2"}, "packages_json": {`{"brew": ["jq"]}`}})
		is.True(p.Has("Unknown package manager: brew")) // packages checked as the API does
		is.Equal(version(), 2)                          // nothing saved
		is.Equal(secrets()["API_TOKEN"], "sekrit-two")  // the secret unchanged
	})
	t.Run("stale version", func(t *testing.T) {
		is := is.New(t)
		v.get(edit)
		p := v.post(edit, url.Values{"version": {"1"}, "name": {"stale-name"}, "env_value_API_TOKEN": {"sekrit-typed"}})
		is.Equal(p.Status, http.StatusConflict)                                                        // refused
		is.True(p.HasText("This environment was changed elsewhere (now version 2): reload to see it")) // said so
		is.True(p.Has(`<a href="` + edit + `">reload to see it</a>`))                                  // with a reload link
		is.True(p.Has(`value="stale-name"`))                                                           // the input kept
		noSecrets(is, p)                                                                               // but not the secret
		is.Equal(version(), 2)                                                                         // no change
		is.Equal(secrets()["API_TOKEN"], "sekrit-two")
	})
	t.Run("CSRF", func(t *testing.T) {
		is := is.New(t)
		p := v.post(edit, url.Values{"csrf_token": {""}, "version": {"2"}, "name": {"forged"}})
		is.Equal(p.Status, http.StatusForbidden) // no token, no change
		is.Equal(version(), 2)
	})
	t.Run("others get 404", func(t *testing.T) {
		is := is.New(t)
		o := s.user("prying")
		is.Equal(o.get(edit).Status, http.StatusNotFound)                                                  // the form
		is.Equal(o.post(edit, url.Values{"version": {"2"}, "name": {"mine"}}).Status, http.StatusNotFound) // the update
		is.Equal(o.get("/ui/environments/"+id+"/versions").Status, http.StatusNotFound)                    // the history
		is.Equal(o.get("/ui/environments/"+id+"/versions/1").Status, http.StatusNotFound)                  // a version
		is.Equal(version(), 2)                                                                             // untouched
	})
	t.Run("version history", func(t *testing.T) {
		is := is.New(t)
		p := v.get("/ui/environments/" + id)
		is.True(p.Has(`href="` + edit + `">Edit environment</a>`)) // the Edit link
		for _, n := range []string{"1", "2"} {
			is.True(p.Has(`<a href="/ui/environments/` + id + `/versions/` + n + `">v` + n + `</a>`)) // versions listed on the detail
		}
		is.True(p.Has(`class="table-wrap"`)) // in a scrolling table
		p = v.get("/ui/environments/" + id + "/versions")
		is.Equal(p.Status, http.StatusOK)                          // the list page too
		is.True(p.Has(`v2</a> <span class="status-pill">current`)) // current marked
		p = v.get("/ui/environments/" + id + "/versions/1")
		is.Equal(p.Status, http.StatusOK) // the first version
		for _, want := range []string{"Version 1", "web", "<strong>pip</strong>: pytest", "echo 'one'", "api.example.com", "allow_package_managers", "version 2"} {
			is.True(p.Has(want)) // as it was
		}
		is.True(!p.Has("typescript")) // not the later values
		noSecrets(is, p)
		is.Equal(v.get("/ui/environments/"+id+"/versions/3").Status, http.StatusNotFound) // no such version
	})
	t.Run("archived", func(t *testing.T) {
		is := is.New(t)
		v.post("/ui/environments/"+id+"/archive", nil)
		p := v.get(edit)
		is.Equal(p.Status, http.StatusOK)                            // the page answers
		is.True(p.HasText("This environment is archived"))           // and says so
		is.True(!p.Has(`<form method="post" action="` + edit + `"`)) // with no form
		p = v.post(edit, url.Values{"version": {"2"}, "name": {"late"}})
		is.Equal(p.Status, http.StatusConflict)                              // a late POST is refused
		is.True(p.Has("Cannot update an archived environment"))              // with the API's message
		is.True(!v.get("/ui/environments/" + id).Has(`href="` + edit + `"`)) // no Edit link any more
		is.Equal(version(), 2)
	})
}
