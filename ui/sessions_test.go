package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// TestShellSessionFromAgentPage starts a shell session from an agent's
// page: it runs, its page shows the stored log and the live stream route
// carries the rest; then a follow-up and terminate, all by forms.
func TestShellSessionFromAgentPage(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("runner")
	agent := v.shellAgent("sh")
	is := is.New(t)

	p := v.get("/ui/sessions")
	is.True(p.Has("No sessions yet. Start one from an agent page.")) // empty state

	v.get("/ui/agents/" + agent)
	p = v.post("/ui/agents/"+agent+"/sessions", url.Values{"prompt": {"echo hello-one\necho oops >&2\necho hello-two"}, "timeout": {"60"}})
	is.Equal(p.Status, http.StatusFound) // PRG
	id := idOf(t, p)
	is.Equal(p.Location(), "/ui/sessions/"+id) // to the session
	first := v.follow(p)
	is.Equal(first.Flashes(), []string{"success: Session started."})       // flash
	is.True(first.Has("Session " + id))                                    // header
	is.True(first.Has(`data-stream-url="/ui/sessions/` + id + `/stream"`)) // the live stream hook
	is.True(first.Has(`id="session-status"`))                              // the status hook
	is.True(first.Has(`<pre class="logs"`))                                // the log block
	is.True(first.Has("static/session."))                                  // the live-log script

	sess := s.waitStatus(id, "completed")
	is.Equal(*sess.ExitCode, 0) // the script succeeded

	p = v.get("/ui/sessions/" + id)
	is.Equal(p.Status, http.StatusOK)                                       // the page
	is.True(p.HasText("[stdout] hello-one\n"))                              // stored stdout rows, labelled
	is.True(p.HasText("[stdout] hello-two\n"))                              // every line
	is.True(p.Has(`<span class="stderr">oops`))                             // stderr apart
	is.True(p.Has("[stage] create_sprite started"))                         // stage progress
	is.True(p.Has("[stage] runtime_start started"))                         // to the last stage
	is.True(p.Has(`id="session-status">completed<`))                        // status
	is.True(p.Has(`<dd id="session-exit-code">0</dd>`))                     // exit code
	is.True(p.Has("echo hello-one"))                                        // the latest prompt
	is.True(p.Has(`href="/ui/agents/` + agent + `">sh</a>`))                // the agent
	is.True(p.Has("Terminate session"))                                     // completed sessions can be terminated
	is.True(p.Has(`action="/ui/sessions/` + id + `/prompt"`))               // and take a follow-up
	is.True(p.Has("curl -X POST " + s.URL + "/sessions/" + id + "/prompt")) // whose request is shown as curl
	is.True(!p.Has("No logs yet."))                                         // there are logs
	is.True(p.Has("No network connections yet."))                           // the egress record, empty
	is.NoErr(s.DB.RecordEgress(context.Background(), id, []store.EgressHit{
		{Host: "registry.npmjs.org", Port: 443, Allowed: true, Count: 2, At: time.Now()},
		{Host: "evil.test", Port: 80, Allowed: false, Count: 1, At: time.Now()},
	}))
	p = v.get("/ui/sessions/" + id)
	is.True(p.Has("<code>registry.npmjs.org:443</code>"))                                   // an allowed host
	is.True(p.Has(`<tr class="egress-refused"><td class="wrap"><code>evil.test:80</code>`)) // a refused one
	is.True(p.HasText("refused"))                                                           // said in words, not colour alone
	lastID := regexp.MustCompile(`data-last-id="(\d+)"`).FindStringSubmatch(p.Body)
	is.True(lastID != nil) // the page says where the stream resumes
	last, _ := strconv.ParseInt(lastID[1], 10, 64)
	is.True(last > 0) // after the rows it rendered

	// The stream route: cookie auth, the sse package, resumable.
	res := streamGet(t, v, "/ui/sessions/"+id+"/stream")
	is.Equal(res.status, http.StatusOK)                       // streams
	is.Equal(res.contentType, "text/event-stream")            // as SSE
	is.True(strings.Contains(res.body, `"data": "hello-one`)) // full replay by default
	is.True(strings.Contains(res.body, `"type": "exit"`))     // to the terminal event
	res = streamGet(t, v, "/ui/sessions/"+id+"/stream?since="+lastID[1])
	is.True(!strings.Contains(res.body, `"type": "output"`)) // nothing after the rendered rows
	is.True(strings.Contains(res.body, `"type": "exit"`))    // but the end
	res = streamGet(t, v, "/ui/sessions/"+id+"/stream?since=x")
	is.Equal(res.status, http.StatusBadRequest) // a bad cursor

	p = v.get("/ui/sessions")
	is.True(p.Has(`href="/ui/sessions/` + id + `"><code>` + id[:8] + `…</code>`)) // short id link
	is.True(p.Has(">sh</a>"))                                                     // agent name
	is.True(p.Has(">completed<"))                                                 // status pill

	// Follow-up: validation, then a second turn.
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"  "}})
	is.Equal(v.follow(p).Flashes(), []string{"error: Prompt: This field is required."}) // form error as a flash
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"echo again"}, "timeout": {"9"}})
	is.Equal(v.follow(p).Flashes(), []string{"error: Timeout: Ensure this value is greater than or equal to 10."})  // range
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"echo turn-two\r\nsleep 5"}, "timeout": {"30"}}) // as a browser sends a textarea
	is.Equal(p.Status, http.StatusFound)                                                                            // PRG
	is.Equal(p.Location(), "/ui/sessions/"+id)                                                                      // to the session
	is.Equal(v.follow(p).Flashes(), []string{"success: Follow-up sent."})                                           // flash
	s.waitStatus(id, "running")
	s.waitOutput(id, "turn-two") // turn 2's output is in the log
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"echo three"}})
	is.Equal(v.follow(p).Flashes(), []string{"error: Session is already running"}) // a running session takes no prompt
	st, _ := s.DB.GetSession(context.Background(), "", id)
	is.Equal(st.TurnCount, 2) // and got no new turn
	turns, _ := s.DB.ListTurns(context.Background(), "", id)
	is.Equal(turns[1].Prompt, "echo turn-two\nsleep 5") // the script has Unix line endings
	p = v.get("/ui/sessions/" + id)
	is.True(p.Has("When this turn completes, the form below opens.")) // the follow-up panel explains
	is.True(p.Has(`class="stacked" id="follow-up-form" hidden>`))     // the form waits, hidden, for the turn's end
	state := v.get("/ui/sessions/" + id + "/state")
	is.Equal(state.Header.Get("Content-Type"), "application/json") // the page's script asks the session's state
	is.True(strings.Contains(state.Body, `"status":"running"`))    // as JSON

	// Terminate.
	p = v.post("/ui/sessions/"+id+"/terminate", nil)
	is.Equal(p.Status, http.StatusFound) // PRG
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Session terminated."}) // flash
	is.True(p.Has(`id="session-status">terminated<`))               // status
	is.True(!p.Has("Terminate session"))                            // no button any more
	is.True(p.Has("cannot be resumed"))                             // the panel says why
	is.True(p.Has("[turn 2]"))                                      // the second turn is marked in the log
	p = v.post("/ui/sessions/"+id+"/terminate", nil)
	is.Equal(v.follow(p).Flashes(), []string{"error: Session is already terminated"}) // twice: the API's message
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"echo late"}})
	is.Equal(v.follow(p).Flashes(), []string{"error: Session has been terminated"}) // no prompts after
	res = streamGet(t, v, "/ui/sessions/"+id+"/stream")
	is.True(strings.Contains(res.body, `"type": "terminated"`)) // the stream ends terminated

	// Another user sees none of it.
	o := s.user("stranger")
	is.Equal(o.get("/ui/sessions/"+id).Status, http.StatusNotFound)                                         // page
	is.Equal(streamGet(t, o, "/ui/sessions/"+id+"/stream").status, http.StatusNotFound)                     // stream
	is.Equal(o.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"x"}}).Status, http.StatusNotFound) // prompt
	is.Equal(o.post("/ui/sessions/"+id+"/terminate", nil).Status, http.StatusNotFound)                      // terminate
	is.True(!o.get("/ui/sessions").Has(id[:8]))                                                             // list
	is.Equal(v.get("/ui/sessions/nope").Status, http.StatusNotFound)                                        // malformed id
	is.Equal(v.send(http.MethodDelete, "/ui/sessions/"+id, nil).Status, http.StatusMethodNotAllowed)        // wrong method
}

type streamResult struct {
	status      int
	contentType string
	body        string
}

// streamGet reads a stream until the server closes it (terminal sessions
// end their stream) or 10 s pass.
func streamGet(t *testing.T, v *visitor, path string) streamResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := testkit.Get(ctx, v.s.URL+path, nil)
	res, err := testkit.Read(v.client, req, nil)
	if err != nil && res.Status == 0 {
		t.Fatalf("GET %s: %v", path, err)
	}
	return streamResult{status: res.Status, contentType: res.Header.Get("Content-Type"), body: string(res.Raw)}
}

// TestLiveStream: a page opened while the session runs renders what is
// stored so far; the stream from that point brings the rest, with ids a
// reconnect can resume from.
func TestLiveStream(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("live")
	agent := v.shellAgent("slow")
	is := is.New(t)
	id := v.startSession(agent, "echo first; sleep 1.5; echo second")
	var p page
	testkit.Eventually(30*time.Second, func() bool {
		p = v.get("/ui/sessions/" + id)
		return p.HasText("[stdout] first")
	})
	is.True(p.HasText("[stdout] first"))   // the stored row is rendered
	is.True(!p.HasText("[stdout] second")) // the later one is not there yet
	since := regexp.MustCompile(`data-last-id="(\d+)"`).FindStringSubmatch(p.Body)[1]
	res := streamGet(t, v, "/ui/sessions/"+id+"/stream?since="+since)
	is.Equal(res.status, http.StatusOK)                                // live
	is.True(!strings.Contains(res.body, `"data": "first\n"`))          // no duplicate of the rendered row
	is.True(strings.Contains(res.body, `"data": "second\n"`))          // the new output arrives
	is.True(strings.Contains(res.body, `"type": "exit"`))              // then the end
	is.True(regexp.MustCompile(`(?m)^id: \d+$`).MatchString(res.body)) // with ids for Last-Event-ID
}

func TestStartSessionRefusals(t *testing.T) {
	t.Parallel()
	s := newSiteWith(t, siteOptions{maxConcurrent: 1})
	v := s.user("limits")
	agent := v.shellAgent("sh")
	t.Run("form errors", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/" + agent)
		for form, want := range map[string]string{
			"":             "error: Prompt: This field is required.",
			"timeout=5":    "error: Timeout: Ensure this value is greater than or equal to 10.",
			"timeout=3601": "error: Timeout: Ensure this value is less than or equal to 3600.",
			"timeout=soon": "error: Timeout: Enter a whole number.",
		} {
			f, _ := url.ParseQuery(form)
			if form != "" {
				f.Set("prompt", "echo hi")
			}
			p := v.post("/ui/agents/"+agent+"/sessions", f)
			is.Equal(p.Status, http.StatusOK)         // the form again, filled in
			is.Equal(p.Flashes(), []string{want})     // "<Label>: <message>"
			is.True(p.Has(`id="start-session-form"`)) // on the agent's page
		}
	})
	t.Run("quota", func(t *testing.T) {
		is := is.New(t)
		id := v.startSession(agent, "sleep 30")
		v.get("/ui/agents/" + agent)
		p := v.post("/ui/agents/"+agent+"/sessions", url.Values{"prompt": {"echo hi"}})
		is.Equal(p.Status, http.StatusOK)                                                                                                        // refused: the form again
		is.Equal(p.Flashes(), []string{"error: Concurrent session limit reached (1/1). Terminate an active session before starting a new one."}) // the API's message
		v.get("/ui/sessions/" + id)
		v.post("/ui/sessions/"+id+"/terminate", nil)
	})
	t.Run("credential", func(t *testing.T) {
		is := is.New(t)
		v.get("/ui/agents/new")
		claude := idOf(t, v.post("/ui/agents/new", url.Values{"name": {"c"}, "runtime": {"claude"}, "model": {"anthropic/claude-sonnet-4-6"}}))
		v.get("/ui/agents/" + claude)
		p := v.post("/ui/agents/"+claude+"/sessions", url.Values{"prompt": {"hi"}})
		is.Equal(p.Flashes(), []string{"error: No API key configured for runtime: claude"}) // no key, no session
		sessions, err := s.DB.ListSessions(context.Background(), userID(t, s, "limits"))
		is.NoErr(err)              // list
		is.Equal(len(sessions), 1) // only the quota test's session exists
	})
}

func TestSessionPageStates(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("states")
	agent := v.shellAgent("sh")
	is := is.New(t)
	id := v.startSession(agent, "echo bad >&2; exit 3")
	sess := s.waitStatus(id, "failed")
	is.Equal(*sess.ExitCode, 3) // the script failed
	p := v.get("/ui/sessions/" + id)
	is.True(p.Has(`id="session-status">failed<`))       // status
	is.True(p.Has(`<dd id="session-exit-code">3</dd>`)) // exit code
	is.True(p.Has("failed and cannot be resumed"))      // the follow-up panel explains
	is.True(p.HasText("[stderr] bad"))                  // stderr row
	p = v.post("/ui/sessions/"+id+"/prompt", url.Values{"prompt": {"echo again"}})
	is.Equal(v.follow(p).Flashes(), []string{"error: Session has failed and cannot be resumed. Start a new session."}) // API detail

	empty := v.startSession(agent, "true")
	s.waitStatus(empty, "completed")
	p = v.get("/ui/sessions/" + empty)
	is.True(p.Has("[stage] "))  // stages even without output
	is.True(!p.Has("[stdout]")) // and no output rows
}

// The session page names the environment version the session runs (as it
// was then) and shows the provisioning log, escaped, in a collapsible
// block whose heading is the toggle; no block without a log.
func TestSessionPageProvisioningLog(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("prov")
	agent := v.shellAgent("sh")
	is := is.New(t)
	ctx := context.Background()
	uid := userID(t, s, "prov")
	env, err := s.DB.CreateEnvironment(ctx, uid, storeEnv("py"))
	is.NoErr(err) // an environment
	sess, err := s.DB.CreateSession(ctx, uid, store.SessionInput{AgentID: agent, EnvironmentID: env.ID, Prompt: "true", Timeout: 60})
	is.NoErr(err) // a session on it
	renamed := "py-renamed"
	_, err = s.DB.UpdateEnvironment(ctx, uid, env.ID, store.EnvironmentPatch{Version: 1, Name: &renamed})
	is.NoErr(err) // edited afterwards

	p := v.get("/ui/sessions/" + sess.ID)
	is.Equal(p.Status, http.StatusOK)                                               // the page
	is.True(p.Has(`>py</a> <span class="muted">(version 1)</span>`))                // the version the session runs, as it was
	is.True(!p.Has("Provisioning log"))                                             // no log, no block
	is.NoErr(s.DB.SetProvisionLog(ctx, sess.ID, "<script>alert(1)</script>\nok\n")) // a log arrives

	p = v.get("/ui/sessions/" + sess.ID)
	is.True(strings.Contains(p.Body, `<details>`))                                                            // a collapsible block, closed
	is.True(strings.Contains(p.Body, `<summary><h2 class="summary-heading">Provisioning log</h2></summary>`)) // toggled by its heading (a summary: focusable, Enter and Space open it)
	is.True(strings.Contains(p.Body, `tabindex="0" aria-label="Provisioning log">&lt;script&gt;alert(1)&lt;/script&gt;
ok
</pre>`)) // the text, escaped, scrollable from the keyboard
	is.True(!strings.Contains(p.Body, "<script>alert(1)")) // never markup
}

// TestSessionPageResources: the page lists a session's repositories with
// their checkout, never their token.
func TestSessionPageResources(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("repos")
	agent := v.shellAgent("sh")
	is := is.New(t)
	const token = "ghp_uiSENTINEL_51a0e7"
	tok := s.Token("repos")
	id := s.StartSession(tok, apitest.SessionBody(agent, "true", "resources", []any{
		map[string]any{"type": "github_repository", "url": "https://github.com/acme/lib", "checkout": "v2.1", "authorization_token": token},
		map[string]any{"type": "github_repository", "url": "https://github.com/acme/app"},
	}))
	p := v.get("/ui/sessions/" + id)
	is.Equal(p.Status, http.StatusOK)                                                                     // the page
	is.True(p.Has("<code>github_repository: https://github.com/acme/lib @ v2.1 → /workspace/lib</code>")) // with its checkout
	is.True(p.Has("<code>github_repository: https://github.com/acme/app → /workspace/app</code>"))        // and without one
	is.True(!p.Has(token))                                                                                // never the token
}

func TestStaticFiles(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	is := is.New(t)
	v := s.visitor()
	p := v.get("/")
	css := regexp.MustCompile(`href="(/static/styles\.[0-9a-f]{12}\.css)"`).FindStringSubmatch(p.Body)
	is.True(css != nil) // pages link the hashed stylesheet
	p = v.get(css[1])
	is.Equal(p.Status, http.StatusOK)                                              // served
	is.Equal(p.Header.Get("Content-Type"), "text/css; charset=utf-8")              // as CSS
	is.Equal(p.Header.Get("Cache-Control"), "public, max-age=31536000, immutable") // cached for good
	is.True(strings.Contains(p.Body, ".logs"))                                     // the terminal block style
	is.True(strings.Contains(p.Body, "@media (max-width: 780px)"))                 // responsive
	p = v.get("/static/styles.css")
	is.Equal(p.Status, http.StatusOK)                   // the plain name works too
	is.Equal(p.Header.Get("Cache-Control"), "no-cache") // but is revalidated
	p = v.get("/static/nope.js")
	is.Equal(p.Status, http.StatusNotFound) // unknown files are 404

	u := s.user("js")
	agent := u.shellAgent("sh")
	id := u.startSession(agent, "true")
	js := regexp.MustCompile(`src="(/static/session\.[0-9a-f]{12}\.js)"`).FindStringSubmatch(u.get("/ui/sessions/" + id).Body)
	is.True(js != nil) // the session page loads the live-log script
	p = u.get(js[1])
	is.Equal(p.Header.Get("Content-Type"), "text/javascript; charset=utf-8") // as JavaScript
	is.True(strings.Contains(p.Body, "EventSource"))                         // it streams
	is.True(strings.Contains(p.Body, "?since="))                             // resuming after the rendered rows
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	is := is.New(t)
	p := s.visitor().get("/ui/login")
	is.True(strings.Contains(p.Header.Get("Content-Security-Policy"), "script-src 'self'")) // no inline scripts
	is.Equal(p.Header.Get("X-Frame-Options"), "DENY")                                       // no framing
	is.Equal(p.Header.Get("X-Content-Type-Options"), "nosniff")                             // no sniffing
	p = s.visitor().send(http.MethodHead, "/ui/login", nil)
	is.Equal(p.Status, http.StatusOK) // HEAD works like GET
}

// The page's stream counts against the same per-user limit as the API's:
// a user at it gets the 429, and the page's EventSource tries again later.
func TestSessionStreamLimit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSiteWith(t, siteOptions{streamsPerUser: 1})
	v := s.user("limited")
	agent := v.shellAgent("sh")
	id := v.startSession(agent, "sleep 60") // never runs here: its stream stays open
	tok := s.Token("limited")
	st := testkit.Connect(t, t.Context(), s.URL+"/sessions/"+id+"/stream", map[string]string{"Authorization": "Bearer " + tok})
	is.Equal(st.Next(t).Event().Type, "start") // the API stream is open
	res := streamGet(t, v, "/ui/sessions/"+id+"/stream")
	is.Equal(res.status, http.StatusTooManyRequests)                       // the page's stream is over the limit
	is.True(strings.Contains(res.body, "Concurrent stream limit reached")) // and says so
}

// A running session's page has a "Stop turn" button apart from
// "Terminate": it stops the turn and keeps the session for a follow-up.
func TestStopTurn(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("stopper")
	agent := v.shellAgent("sh")
	is := is.New(t)
	id := v.startSession(agent, "echo started; exec sleep 1000")
	s.waitStatus(id, "running")
	p := v.get("/ui/sessions/" + id)
	is.True(p.Has(`action="/ui/sessions/` + id + `/interrupt"`)) // the Stop turn form
	is.True(p.HasText("Stop turn"))                              // labelled
	p = v.post("/ui/sessions/"+id+"/interrupt", nil)
	is.Equal(p.Status, http.StatusFound) // PRG
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Stopping the turn: the session stays open for your next prompt."}) // said
	sess := s.waitStatus(id, "completed", "failed")
	is.Equal(sess.Status, "completed") // the session is completed, ready for a follow-up
	p = v.get("/ui/sessions/" + id)
	is.True(!p.Has(`/interrupt"`)) // no Stop turn once nothing runs
	p = v.post("/ui/sessions/"+id+"/interrupt", nil)
	is.Equal(v.follow(p).Flashes(), []string{"error: Session has no active turn to interrupt"}) // a second stop says why not
}

// The session page lists every turn with its prompt, result, duration and
// cost; the session list shows turns, duration and cost.
func TestSessionTurnsAndCost(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSite(t)
	v := s.user("costs")
	agent := v.shellAgent("sh")
	id := v.startSession(agent, "echo <b>first</b>")
	ctx := context.Background()
	is.NoErr(s.DB.SetProvisionState(ctx, id, store.ProvisionDone))
	ok, err := s.DB.StartTurn(ctx, id, 1)
	is.NoErr(err)
	is.True(ok) // the turn runs (the recording runner runs nothing itself)
	code, answer := 0, "the <answer>"
	is.NoErr(s.DB.FinishTurn(ctx, id, 1, store.TurnResult{ExitCode: &code, Result: &answer,
		Usage: []byte(`{"input_tokens":1200,"output_tokens":34,"cost_usd":0.0125}`)}))
	p := v.get("/ui/sessions/" + id)
	is.True(p.Has(`id="turn-1"`))                                        // the turn's row
	is.True(strings.Contains(p.Body, "echo &lt;b&gt;first&lt;/b&gt;"))   // its prompt, escaped
	is.True(strings.Contains(p.Body, "the &lt;answer&gt;"))              // its result, escaped
	is.True(p.HasText("$0.0125"))                                        // its cost
	is.True(p.HasText("as the CLI reported it; 1200 tokens in, 34 out")) // the session's cost, with where it came from
	list := v.get("/ui/sessions")
	is.True(list.HasText("$0.0125")) // the list shows the cost
	is.True(list.Has("<td>1</td>"))  // and the turns
}

// The session's Files page browses its sprite (a symlink shown with its
// target, never followed), downloads a file and a directory's archive; the
// Diff page says when there is nothing to show.
func TestSessionFilesAndDiffPages(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newRunningSite(t)
	v := s.user("files")
	agent := v.shellAgent("sh")
	id := v.startSession(agent, "mkdir -p out && echo '<hi>' > out/a.txt && ln -s /etc/passwd out/pw")
	is.Equal(s.waitStatus(id, "completed", "failed").Status, "completed")
	p := v.get("/ui/sessions/" + id)
	is.True(p.Has(`href="/ui/sessions/` + id + `/files"`)) // the session page links its files
	p = v.get("/ui/sessions/" + id + "/files")
	is.Equal(p.Status, http.StatusOK)                                                  // the home directory
	is.True(p.Has(`href="/ui/sessions/` + id + `/files?path=%2fhome%2fsprite%2fout"`)) // with the directory to open
	p = v.get("/ui/sessions/" + id + "/files?path=/home/sprite/out")
	is.True(p.Has(`href="/ui/sessions/` + id + `/files/content?path=%2fhome%2fsprite%2fout%2fa.txt"`)) // a file to download
	is.True(p.HasText("pw → /etc/passwd"))                                                             // a symlink, shown
	is.True(!p.Has(`content?path=%2fhome%2fsprite%2fout%2fpw"`))                                       // not offered for download
	dl := v.get("/ui/sessions/" + id + "/files/content?path=/home/sprite/out/a.txt")
	is.Equal(dl.Status, http.StatusOK)
	is.Equal(dl.Body, "<hi>\n")                                                                               // its bytes, as an attachment
	is.Equal(dl.Header.Get("Content-Disposition"), "attachment; filename=a.txt")                              // not rendered
	is.Equal(v.get("/ui/sessions/"+id+"/files/content?path=/home/sprite/out/pw").Status, http.StatusNotFound) // the link is not followed
	ar := v.get("/ui/sessions/" + id + "/archive?path=/home/sprite/out")
	is.Equal(ar.Header.Get("Content-Type"), "application/gzip") // the archive
	d := v.get("/ui/sessions/" + id + "/diff")
	is.Equal(d.Status, http.StatusOK)
	is.True(d.HasText("No changes: this session has no repositories.")) // the diff page, empty
	other := s.user("other")
	is.Equal(other.get("/ui/sessions/"+id+"/files").Status, http.StatusNotFound) // others see nothing
}
