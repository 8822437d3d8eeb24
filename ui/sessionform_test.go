package ui_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/matryer/is"
)

// startForm is a start-session form as a browser sends it: the single
// fields, then every repository and variable row in page order (a row
// left blank still sends its inputs).
func startForm(fields map[string]string, repos [][4]string, secrets [][2]string) url.Values {
	f := url.Values{}
	for k, v := range fields {
		f.Set(k, v)
	}
	for _, r := range repos {
		f.Add("repo_url", r[0])
		f.Add("repo_mount_path", r[1])
		f.Add("repo_checkout", r[2])
		f.Add("repo_token", r[3])
	}
	for _, s := range secrets {
		f.Add("secret_name", s[0])
		f.Add("secret_value", s[1])
	}
	return f
}

var startCurlRE = regexp.MustCompile(`(?s)<pre class="code" id="start-session-curl"[^>]*>(.*?)</pre>`)

// startCurlOf returns the page's curl command (unescaped) and the JSON body it
// sends, decoded.
func startCurlOf(t *testing.T, p page) (string, map[string]any) {
	t.Helper()
	m := startCurlRE.FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("no curl block in %.300s", p.Body)
	}
	cmd := html.UnescapeString(m[1])
	_, data, ok := strings.Cut(cmd, "-d '")
	if !ok || !strings.HasSuffix(data, "'") {
		t.Fatalf("no -d '…' in %s", cmd)
	}
	data = strings.ReplaceAll(strings.TrimSuffix(data, "'"), `'\''`, `'`)
	var body map[string]any
	if err := json.Unmarshal([]byte(data), &body); err != nil {
		t.Fatalf("curl body %s: %v", data, err)
	}
	return cmd, body
}

var textareaRE = regexp.MustCompile(`(?s)<textarea name="prompt"[^>]*>\n(.*?)</textarea>`)

// promptOf is what the page's prompt box holds.
func promptOf(p page) string {
	m := textareaRE.FindStringSubmatch(p.Body)
	if m == nil {
		return "<none>"
	}
	return html.UnescapeString(m[1])
}

// newEnvironment creates an environment through its form and returns its id.
func (v *visitor) newEnvironment(name string) string {
	v.s.T().Helper()
	v.get("/ui/environments/new")
	return idOf(v.s.T(), v.post("/ui/environments/new", url.Values{"name": {name}}))
}

// TestStartFormRunsSession starts a real shell session from the full form:
// the secret env var reaches the command, and the timeout, budget and
// environment override are the session's.
func TestStartFormRunsSession(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("starter")
	is := is.New(t)
	agent := v.shellAgent("sh")
	env := v.newEnvironment("alt")
	const secret = "s3cr3t-value-0123" // 17 characters; echo adds a newline

	p := v.get("/ui/agents/" + agent)
	is.Equal(p.Status, http.StatusOK)                                                              // the page
	is.True(p.Has(`<option value="">The agent's: none</option>`))                                  // the default: the agent's environment
	is.True(p.Has(`<option value="` + env + `">alt v1</option>`))                                  // the user's environments to choose from
	is.True(p.Has("<legend>Repositories</legend>"))                                                // the groups are fieldsets with legends
	is.True(p.Has("<legend>Secret env vars</legend>"))                                             //
	is.True(p.Has(`id="id_repo_url_2"`) && p.Has(`id="id_secret_name_2"`))                         // three rows each, without JavaScript
	is.True(p.Has(`<details class="options">`))                                                    // the optional groups start folded
	is.True(p.Has(`data-add-row="start-repos" hidden`))                                            // the Add button waits for the script
	is.True(p.Has(`name="budget_usd" id="id_budget_usd"`))                                         // the budget
	is.True(regexp.MustCompile(`src="/static/sessionform\.[0-9a-f]{12}\.js"`).MatchString(p.Body)) // the form's script, a file (CSP)

	f := startForm(map[string]string{"prompt": "echo $MYVAR | wc -c", "timeout": "45", "environment_id": env, "budget_usd": "2.5"},
		[][4]string{{}, {}, {}}, [][2]string{{"MYVAR", secret}, {}, {}})
	p = v.post("/ui/agents/"+agent+"/sessions", f)
	is.Equal(p.Status, http.StatusFound) // PRG
	id := idOf(t, p)
	is.Equal(p.Location(), "/ui/sessions/"+id)                             // to the session
	is.Equal(v.follow(p).Flashes(), []string{"success: Session started."}) // flash

	sess := s.waitStatus(id, "completed")
	is.Equal(*sess.ExitCode, 0)                       // the command ran
	s.waitOutput(id, "18")                            // the variable's length, plus echo's newline: the value reached the command
	is.True(!v.get("/ui/sessions/" + id).Has(secret)) // and is never on the session's page

	tok := s.Token("starter")
	got := s.Do(http.MethodGet, "/sessions/"+id, tok, nil).Obj()
	is.Equal(got["environment_id"], env) // the override is the session's environment
	is.Equal(got["budget_usd"], 2.5)     // the budget is recorded
	is.Equal(got["resources"], []any{})  // blank repository rows are left out
	turns := s.Do(http.MethodGet, "/sessions/"+id+"/turns", tok, nil).Data()
	is.Equal(len(turns), 1)                                                          // one turn
	is.Equal(turns[0].(map[string]any)["prompt"], "echo $MYVAR | wc -c")             // with the prompt
	stored, err := s.DB.ListTurns(context.Background(), userID(t, s, "starter"), id) // the API shows no timeout: the store has it
	is.NoErr(err)
	is.Equal(stored[0].Timeout, 45) // the form's timeout
	vars, _, err := s.DB.SessionSecrets(context.Background(), id)
	is.NoErr(err)
	is.Equal(vars["MYVAR"], secret) // stored as given
}

// TestStartFormRefused: a refused form comes back with its messages and
// every input but tokens and secret values; the rest of the form's
// refusals, CSRF and ownership.
func TestStartFormRefused(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("refused")
	agent := v.shellAgent("sh")
	env := v.newEnvironment("alt")
	const (
		token1 = "ghp_TOKEN_ONE_sentinel"
		token2 = "ghp_TOKEN_TWO_sentinel"
		value1 = "VALUE_ONE_sentinel"
		value2 = "VALUE_TWO_sentinel"
	)
	count := func() int {
		list, err := s.DB.ListSessions(context.Background(), userID(t, s, "refused"))
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}

	t.Run("bad repository URL", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/" + agent)
		f := startForm(map[string]string{"prompt": "echo 'it''s' <b>", "timeout": "120", "environment_id": env, "budget_usd": "3.25"},
			[][4]string{
				{"https://github.com/acme/lib", "/work/lib", "v2.1", token1},
				{}, // blank rows are left out
				{"https://gitlab.com/acme/app", "/work/app", "main", token2},
			},
			[][2]string{{"API_KEY", value1}, {"OTHER", value2}, {}})
		p := v.post("/ui/agents/"+agent+"/sessions", f)
		is.Equal(p.Status, http.StatusOK)                                                                                                                           // the form again
		is.Equal(p.Flashes(), []string{"error: Repository 2 URL: Must be a valid https://github.com/<owner>/<repo> URL"})                                           // the API's rule, on the row as the form now shows it
		is.True(regexp.MustCompile(`id="id_repo_url_1" value="https://gitlab.com/acme/app"[^>]*>\s*<ul class="errorlist"><li>Must be a valid`).MatchString(p.Body)) // beside its input
		for _, secret := range []string{token1, token2, value1, value2} {
			is.True(!strings.Contains(p.Body, secret)) // no token or secret value anywhere in the page
		}
		is.Equal(promptOf(p), "echo 'it''s' <b>")                                          // the prompt is kept
		is.True(p.Has(`name="timeout" id="id_timeout" min="10" max="3600" value="120"`))   // the timeout
		is.True(p.Has(`<option value="` + env + `" selected>alt v1</option>`))             // the environment
		is.True(p.Has(`id="id_repo_url_0" value="https://github.com/acme/lib"`))           // the URLs
		is.True(p.Has(`id="id_repo_url_1" value="https://gitlab.com/acme/app"`))           //
		is.True(p.Has(`id="id_repo_mount_path_0" value="/work/lib"`))                      // mount paths
		is.True(p.Has(`id="id_repo_checkout_1" value="main"`))                             // checkouts
		is.True(p.Has(`id="id_secret_name_0" value="API_KEY"`))                            // secret names
		is.True(p.Has(`id="id_secret_name_1" value="OTHER"`))                              //
		is.True(p.Has(`name="budget_usd" id="id_budget_usd" step="any" value="3.25"`))     // the budget
		is.Equal(strings.Count(p.Body, "Re-enter the token: it is never sent back"), 2)    // each token must be entered again, said beside it
		is.Equal(strings.Count(p.Body, "Re-enter the value: it is never sent back"), 2)    // each secret value too
		is.True(p.Has(`<details class="options" open>`))                                   // the groups are unfolded
		is.True(p.Has(`id="id_repo_url_2" value=""`))                                      // with a blank row to add one
		is.True(!regexp.MustCompile(`name="repo_token"[^>]*value=`).MatchString(p.Body))   // token inputs are empty
		is.True(!regexp.MustCompile(`name="secret_value"[^>]*value=`).MatchString(p.Body)) // and so are value inputs
		is.Equal(count(), 0)                                                               // no session
	})

	t.Run("field problems", func(t *testing.T) {
		is := is.New(t)
		for _, c := range []struct {
			name    string
			fields  map[string]string
			repos   [][4]string
			secrets [][2]string
			want    []string
		}{
			{"budget zero", map[string]string{"budget_usd": "0"}, nil, nil,
				[]string{"error: Budget: Ensure this value is greater than 0."}},
			{"budget too big", map[string]string{"budget_usd": "2000000"}, nil, nil,
				[]string{"error: Budget: Ensure this value is less than or equal to 1000000."}},
			{"budget not a number", map[string]string{"budget_usd": "lots"}, nil, nil,
				[]string{"error: Budget: Enter a number."}},
			{"secret name", nil, nil, [][2]string{{"BAD-NAME", value1}},
				[]string{"error: Secret env vars: Invalid env_var key 'BAD-NAME': must match [A-Za-z_][A-Za-z0-9_]*"}},
			{"repository fields", nil, [][4]string{{"", "/work/x", "", token1}, {"https://github.com/a/b", "relative", "bad..ref", ""}}, nil,
				[]string{"error: Repository 1 URL: This field is required.",
					"error: Repository 2 mount path: mount_path must be an absolute path",
					"error: Repository 2 checkout: checkout must not contain '..' or '@{', nor be '@'"}},
			{"duplicate mount paths", nil, [][4]string{{"https://github.com/a/x", "/work/x", "", ""}, {"https://github.com/b/x", "/work/x/", "", ""}}, nil,
				[]string{"error: Repositories: Duplicate mount_path in resources"}},
			{"several at once", map[string]string{"prompt": " ", "timeout": "5"}, nil, nil,
				[]string{"error: Prompt: This field is required.", "error: Timeout: Ensure this value is greater than or equal to 10."}},
		} {
			fields := map[string]string{"prompt": "echo hi", "timeout": "60"}
			for k, val := range c.fields {
				fields[k] = val
			}
			p := v.post("/ui/agents/"+agent+"/sessions", startForm(fields, c.repos, c.secrets))
			is.Equal(p.Status, http.StatusOK)         // the form again
			is.Equal(p.Flashes(), c.want)             // each problem, named
			is.True(!p.Has(value1) && !p.Has(token1)) // never a secret
		}
		p := v.post("/ui/agents/"+agent+"/sessions", startForm(map[string]string{"prompt": "echo hi", "budget_usd": "1"}, nil, [][2]string{{"BAD-NAME", value1}}))
		is.True(p.Has(`value="BAD-NAME"`))                                                                                            // the name is kept
		is.True(regexp.MustCompile(`(?s)id="id_secret_value_0".*?<ul class="errorlist"><li>Invalid env_var key`).MatchString(p.Body)) // the message on its row
		is.Equal(count(), 0)                                                                                                          // no session
	})

	t.Run("environment", func(t *testing.T) {
		is := is.New(t)
		other := s.user("neighbour").newEnvironment("theirs")
		for _, id := range []string{other, "not-an-id"} {
			p := v.post("/ui/agents/"+agent+"/sessions", startForm(map[string]string{"prompt": "echo hi", "environment_id": id}, nil, nil))
			is.Equal(p.Status, http.StatusOK)                                                                                                                    // the form again
			is.Equal(p.Flashes(), []string{"error: Environment not found"})                                                                                      // someone else's environment is unknown
			is.True(regexp.MustCompile(`id="id_environment_id_help">[^<]*</p>\s*<ul class="errorlist"><li>Environment not found</li></ul>`).MatchString(p.Body)) // under the select
		}
		v.get("/ui/environments/" + env)
		v.follow(v.post("/ui/environments/"+env+"/archive", nil))
		p := v.post("/ui/agents/"+agent+"/sessions", startForm(map[string]string{"prompt": "echo hi", "environment_id": env}, nil, nil))
		is.Equal(p.Flashes(), []string{"error: Cannot create session with archived environment"}) // the use case's refusal
		is.True(!p.Has(`<option value="` + env + `"`))                                            // archived environments are not offered
		is.Equal(count(), 0)                                                                      // no session
	})

	t.Run("no model key", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/new")
		claude := idOf(t, v.post("/ui/agents/new", url.Values{"name": {"c"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}}))
		v.get("/ui/agents/" + claude)
		p := v.post("/ui/agents/"+claude+"/sessions", startForm(map[string]string{"prompt": "say hi", "timeout": "60"}, nil, [][2]string{{"UNRELATED", value1}}))
		is.Equal(p.Status, http.StatusOK)                                                   // the form again
		is.Equal(p.Flashes(), []string{"error: No API key configured for runtime: claude"}) // the API's detail
		is.True(p.HasText("Set ANTHROPIC_API_KEY"))                                         // the server's hint of where a key goes
		is.True(p.Has(`<a href="/ui/settings/secrets">`))                                   // a link to the secrets page
		is.True(p.Has(`<details class="options" open>`))                                    // the secret env vars unfolded
		is.Equal(promptOf(p), "say hi")                                                     // the prompt kept
		is.True(!p.Has(value1))                                                             // the value not
		is.Equal(count(), 0)                                                                // no session
	})

	t.Run("csrf", func(t *testing.T) {
		is := is.New(t)
		f := startForm(map[string]string{"prompt": "echo hi", "csrf_token": ""}, nil, [][2]string{{"X", value1}})
		p := v.post("/ui/agents/"+agent+"/sessions", f)
		is.Equal(p.Status, http.StatusForbidden) // no token, no session
		f.Set("csrf_token", "forged")
		is.Equal(v.post("/ui/agents/"+agent+"/sessions", f).Status, http.StatusForbidden) // nor with a wrong one
		is.Equal(count(), 0)                                                              // none made
	})

	t.Run("someone else's agent", func(t *testing.T) {
		is := is.New(t)
		o := s.user("outsider")
		o.get("/ui/")
		f := startForm(map[string]string{"prompt": "echo hi", "timeout": "60"}, [][4]string{{"https://github.com/a/b", "", "", token1}}, [][2]string{{"X", value1}})
		p := o.post("/ui/agents/"+agent+"/sessions", f)
		is.Equal(p.Status, http.StatusNotFound)   // as if it did not exist
		is.True(!p.Has(token1) && !p.Has(value1)) // and nothing of the form comes back
		f.Set("prompt", "")
		is.Equal(o.post("/ui/agents/"+agent+"/sessions", f).Status, http.StatusNotFound) // an invalid form too: ownership first
		is.Equal(count(), 0)                                                             // no session
	})

	t.Run("repositories and secrets stored", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/" + agent)
		f := startForm(map[string]string{"prompt": "true", "timeout": "60"},
			[][4]string{{"https://github.com/acme/lib.git", "", "v2.1", token1}, {}, {" https://github.com/acme/app ", "/work/app", "", ""}},
			[][2]string{{}, {"ONE", value1}, {"TWO", ""}})
		p := v.post("/ui/agents/"+agent+"/sessions", f)
		is.Equal(p.Status, http.StatusFound) // started
		id := idOf(t, p)
		got := s.Do(http.MethodGet, "/sessions/"+id, s.Token("refused"), nil).Obj()
		is.Equal(got["resources"], []any{
			map[string]any{"type": "github_repository", "url": "https://github.com/acme/lib", "mount_path": "/workspace/lib", "checkout": "v2.1"},
			map[string]any{"type": "github_repository", "url": "https://github.com/acme/app", "mount_path": "/work/app"},
		}) // as the API would have them from the same JSON
		vars, repos, err := s.DB.SessionSecrets(context.Background(), id)
		is.NoErr(err)
		is.Equal(repos[0].Token, token1) // the token is kept, for git
		is.Equal(repos[1].Token, "")     // only where given
		is.Equal(vars["ONE"], value1)    // the variables
		_, ok := vars["TWO"]
		is.True(ok) // an empty value too
		v.get("/ui/sessions/" + id)
		v.post("/ui/sessions/"+id+"/terminate", nil)
	})
}

// TestStartFormCurl: the form shows its request as a curl command, from
// the current values, with placeholders for secrets; the command's JSON is
// what POST /sessions takes.
func TestStartFormCurl(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("curler")
	is := is.New(t)
	agent := v.shellAgent("sh")
	env := v.newEnvironment("alt")

	p := v.get("/ui/agents/" + agent)
	cmd, body := startCurlOf(t, p)
	is.True(strings.HasPrefix(cmd, "curl -X POST "+s.URL+"/sessions \\\n"))                   // this server's sessions URL
	is.True(strings.Contains(cmd, `-H "Authorization: Bearer $AOD_API_TOKEN"`))               // a key from the shell
	is.True(strings.Contains(cmd, `-H "Content-Type: application/json"`))                     // JSON
	is.Equal(body, map[string]any{"agent_id": agent, "prompt": "<prompt>", "timeout": 600.0}) // a fresh form
	is.True(p.Has(`<details class="curl">`))                                                  // folded away
	is.True(p.Has(`data-url="` + s.URL + `/sessions"`))                                       // the script's copy of the URL

	// A refused form (no prompt) shows everything else it held.
	const token, value = "ghp_CURL_sentinel", "CURL_VALUE_sentinel"
	f := startForm(map[string]string{"prompt": "", "timeout": "90", "environment_id": env, "budget_usd": "1.5"},
		[][4]string{{"https://github.com/acme/lib", "/work/lib", "main", token}, {"https://github.com/acme/app", "", "", ""}},
		[][2]string{{"API_KEY", value}, {}})
	p = v.post("/ui/agents/"+agent+"/sessions", f)
	is.Equal(p.Flashes(), []string{"error: Prompt: This field is required."}) // refused
	cmd, body = startCurlOf(t, p)
	is.True(!strings.Contains(cmd, token) && !strings.Contains(cmd, value)) // no secret in the command
	is.Equal(body, map[string]any{
		"agent_id": agent, "prompt": "<prompt>", "timeout": 90.0, "environment_id": env, "budget_usd": 1.5,
		"resources": []any{
			map[string]any{"type": "github_repository", "url": "https://github.com/acme/lib", "mount_path": "/work/lib", "checkout": "main", "authorization_token": "<token>"},
			map[string]any{"type": "github_repository", "url": "https://github.com/acme/app"},
		},
		"secret_env_vars": map[string]any{"API_KEY": "<value>"},
	}) // the form's values, placeholders for the secrets

	// Filled in, the command's body is a session the API starts.
	body["prompt"] = "echo from curl"
	body["resources"].([]any)[0].(map[string]any)["authorization_token"] = token
	body["secret_env_vars"] = map[string]any{"API_KEY": value}
	tok := s.Token("curler")
	r := s.Do(http.MethodPost, "/sessions", tok, body)
	is.Equal(r.Status, http.StatusAccepted) // the API takes it
	got := s.Do(http.MethodGet, "/sessions/"+r.Obj()["id"].(string), tok, nil).Obj()
	is.Equal(got["environment_id"], env) // as the form asked
	is.Equal(got["budget_usd"], 1.5)     //

	// Shell quoting: a prompt with a single quote stays one argument.
	f = startForm(map[string]string{"prompt": "echo 'hi'", "timeout": "soon"}, nil, nil)
	p = v.post("/ui/agents/"+agent+"/sessions", f)
	is.Equal(p.Flashes(), []string{"error: Timeout: Enter a whole number."}) // refused
	cmd, body = startCurlOf(t, p)
	is.True(strings.Contains(cmd, `"prompt": "echo '\''hi'\''"`)) // quoted for the shell
	is.Equal(body["prompt"], "echo 'hi'")                         // the JSON itself unchanged
	is.Equal(body["timeout"], "soon")                             // what isn't a number is shown as typed
}

// TestStartFormScript drives the form's script in Chromium: the Add
// buttons show, a new row takes the keyboard, and the curl command follows
// the fields as they change, written exactly as the server writes it for
// the same values.
func TestStartFormScript(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	s := newSiteWith(t, siteOptions{maxConcurrent: 1})
	_, err := s.DB.RegisterUser(context.Background(), "scripter", "correct horse battery")
	is.NoErr(err) // the browser's user
	v := s.visitor()
	v.get("/ui/login")
	is.Equal(v.post("/ui/login", url.Values{"username": {"scripter"}, "password": {"correct horse battery"}}).Status, http.StatusFound) // and the test's own visit
	agent := v.shellAgent("sh")
	env := v.newEnvironment("alt")
	v.startSession(agent, "sleep 60") // never runs here: at the limit, every start is refused and the form comes back
	const token, value = "ghp_SCRIPT_sentinel", "SCRIPT_VALUE_sentinel"

	bctx := browser(t, chrome)
	var addShown bool
	var rows int
	var focused, live, final string
	is.NoErr(chromedp.Run(bctx,
		logIn(s.URL, "scripter"),
		chromedp.Navigate(s.URL+"/ui/agents/"+agent),
		chromedp.WaitVisible("#id_prompt", chromedp.ByQuery),
		chromedp.Click("details.options > summary", chromedp.ByQuery), // unfold the optional groups
		chromedp.Evaluate(`!document.querySelector('[data-add-row="start-repos"]').hidden`, &addShown),
		chromedp.Focus(`[data-add-row="start-repos"]`, chromedp.ByQuery),
		chromedp.KeyEvent("\r"), // the keyboard's way to press it
		chromedp.Evaluate(`document.querySelectorAll('#start-repos [data-row]').length`, &rows),
		chromedp.Evaluate(`document.activeElement.id`, &focused),
		chromedp.SendKeys("#id_prompt", "echo 'hi'", chromedp.ByQuery),
		chromedp.TextContent("#start-session-curl", &live, chromedp.ByQuery, chromedp.NodeReady),
	)) // open the page, add a row, type a prompt
	is.True(addShown)                                              // the Add buttons show with the script
	is.Equal(rows, 4)                                              // a fourth repository row
	is.Equal(focused, "id_repo_url_3")                             // with the keyboard in it
	is.True(strings.Contains(live, `"prompt": "echo '\''hi'\''"`)) // the command follows the typing, quoted for the shell

	set := func(sel, val string) chromedp.Action { return chromedp.SetValue(sel, val, chromedp.ByQuery) }
	is.NoErr(chromedp.Run(bctx,
		set("#id_timeout", "90"), set("#id_environment_id", env), set("#id_budget_usd", "1.50"),
		set("#id_repo_url_0", "https://github.com/acme/lib"), set("#id_repo_mount_path_0", "/work/lib"),
		set("#id_repo_checkout_0", "main"), set("#id_repo_token_0", token),
		set("#id_repo_url_3", " https://github.com/acme/app "),
		set("#id_secret_name_1", "API_KEY"), set("#id_secret_value_1", value),
		chromedp.Evaluate(`document.getElementById("start-session-form").dispatchEvent(new Event("change")), 0`, nil),
		chromedp.TextContent("#start-session-curl", &final, chromedp.ByQuery, chromedp.NodeReady),
	)) // fill in the rest
	is.True(!strings.Contains(final, token) && !strings.Contains(final, value)) // placeholders, never the secrets

	f := startForm(map[string]string{"prompt": "echo 'hi'", "timeout": "90", "environment_id": env, "budget_usd": "1.50"},
		[][4]string{{"https://github.com/acme/lib", "/work/lib", "main", token}, {}, {}, {" https://github.com/acme/app ", "", "", ""}},
		[][2]string{{}, {"API_KEY", value}, {}})
	v.get("/ui/agents/" + agent)
	p := v.post("/ui/agents/"+agent+"/sessions", f)
	is.Equal(p.Status, http.StatusOK) // refused at the limit: the server's command for the same values
	server, _ := startCurlOf(t, p)
	is.Equal(final, server) // the script writes what the server writes
}
