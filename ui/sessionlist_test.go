package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
	"github.com/chromedp/chromedp"
	"github.com/matryer/is"
)

// endTurn runs a session's turn n to exit code 0 through the store, as the
// runner would, reporting usage ("" for none): the recording runner of
// newSite runs nothing itself.
func endTurn(t *testing.T, s *site, id string, n int, usage string) {
	t.Helper()
	ctx := context.Background()
	if err := s.DB.SetProvisionState(ctx, id, store.ProvisionDone); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.DB.StartTurn(ctx, id, n); err != nil || !ok {
		t.Fatalf("start turn: %v %v", ok, err)
	}
	code := 0
	r := store.TurnResult{ExitCode: &code}
	if usage != "" {
		r.Usage = json.RawMessage(usage)
	}
	if err := s.DB.FinishTurn(ctx, id, n, r); err != nil {
		t.Fatal(err)
	}
}

// listedIDs are the session ids of a list page's rows, in order.
func listedIDs(p page) []string {
	out := []string{}
	for _, m := range regexp.MustCompile(`<tr data-session-id="([^"]+)"`).FindAllStringSubmatch(p.Body, -1) {
		out = append(out, m[1])
	}
	return out
}

// The session list narrows by status, agent and a search of the prompts
// through a plain GET form that keeps what was chosen; rows show the
// agent, duration, turns, cost and the first prompt; pages link to their
// neighbours with the filters kept; another user's filters find nothing
// of this user's.
func TestSessionListFilters(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSite(t)
	v := s.user("lister")
	alpha, beta := v.shellAgent("alpha"), v.shellAgent("beta")
	pct := v.startSession(alpha, "echo 100% done")
	snake := v.startSession(beta, "echo snake_case")
	other := v.startSession(alpha, "echo snakeXcase 100 percent")
	endTurn(t, s, pct, 1, `{"input_tokens":1200,"output_tokens":34,"cost_usd":0.0125}`)

	p := v.get("/ui/sessions")
	is.Equal(p.Status, http.StatusOK)
	is.Equal(listedIDs(p), []string{other, snake, pct})                                      // every session, newest first
	is.True(p.Has(`<form method="get" action="/ui/sessions" class="filters" role="search"`)) // a GET form: works without a script
	is.True(p.Has(`<label for="id_q">Prompt contains</label>`))                              // labelled fields
	is.True(p.Has(`<option value="` + beta + `">beta</option>`))                             // the user's agents to choose from
	is.True(p.Has(`<div class="table-wrap">`))                                               // the table scrolls on a phone, not the page
	is.True(p.HasText("echo 100% done"))                                                     // the first prompt
	is.True(p.HasText("$0.0125"))                                                            // the cost of the ended session
	is.True(!p.Has("Clear</a>"))                                                             // nothing to clear

	p = v.get("/ui/sessions?status=completed")
	is.Equal(listedIDs(p), []string{pct})                         // by status
	is.True(p.Has(`<option value="completed" selected>`))         // the choice is kept
	is.True(p.Has(`<a class="button" href="/ui/sessions">Clear`)) // and can be cleared
	p = v.get("/ui/sessions?agent=" + beta)
	is.Equal(listedIDs(p), []string{snake})                               // by agent
	is.True(p.Has(`<option value="` + beta + `" selected>beta</option>`)) // kept
	p = v.get("/ui/sessions?q=" + url.QueryEscape("100%"))
	is.Equal(listedIDs(p), []string{pct})                                                        // % is no wildcard: "100 percent" does not match
	is.True(p.Has(`value="100%"`))                                                               // the search is kept
	is.Equal(listedIDs(v.get("/ui/sessions?q=snake_case")), []string{snake})                     // nor is _
	is.Equal(listedIDs(v.get("/ui/sessions?q=SNAKE")), []string{other, snake})                   // capitals don't matter
	is.Equal(listedIDs(v.get("/ui/sessions?q=snake&agent="+alpha)), []string{other})             // filters combine
	is.Equal(listedIDs(v.get("/ui/sessions?status=bogus")), []string{other, snake, pct})         // an unknown status is no filter
	is.True(v.get("/ui/sessions?q=nothing-like-it").HasText("No sessions match these filters.")) // said when nothing matches
	long := v.get("/ui/sessions?q=" + strings.Repeat("x", 300))
	is.Equal(long.Status, http.StatusOK)                          // a search too long is cut, not an error
	is.True(long.Has(`value="` + strings.Repeat("x", 200) + `"`)) // to 200 characters
	is.True(!long.Has(`value="` + strings.Repeat("x", 201)))      // no more

	o := s.user("outsider")
	is.Equal(listedIDs(o.get("/ui/sessions")), []string{})              // another user lists none of them
	is.Equal(listedIDs(o.get("/ui/sessions?agent="+alpha)), []string{}) // not even naming the agent
	is.True(!o.get("/ui/sessions?agent=" + alpha).Has(">alpha<"))       // whose name is not offered

	// 50 more sessions of alpha: two pages.
	ctx := context.Background()
	uid := userID(t, s, "lister")
	for range 50 {
		_, err := s.DB.CreateSession(ctx, uid, store.SessionInput{AgentID: alpha, Prompt: "true", Timeout: 60})
		is.NoErr(err)
	}
	p = v.get("/ui/sessions?agent=" + alpha)
	is.Equal(len(listedIDs(p)), 50)                                                     // a full page
	is.True(p.Has(`href="/ui/sessions?agent=` + alpha + `&page=2" rel="next">Older →`)) // the next page, filters kept
	is.True(!p.Has(`rel="prev"`))                                                       // none before the first
	p = v.get("/ui/sessions?agent=" + alpha + "&page=2")
	is.Equal(listedIDs(p), []string{other, pct})                                     // the rest
	is.True(p.Has(`href="/ui/sessions?agent=` + alpha + `" rel="prev">← Newer</a>`)) // back
	is.True(!p.Has(`rel="next"`))                                                    // none after the last
	is.True(v.get("/ui/sessions?page=9").HasText("No sessions on this page."))       // past the end
}

// The list's rows of live sessions carry what the list's script needs,
// and the endpoint it asks answers, with one request, how the caller's own
// sessions stand: another user's id, or a malformed one, is left out.
func TestSessionStates(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSite(t)
	v := s.user("watcher")
	agent := v.shellAgent("sh")
	live := v.startSession(agent, "sleep 100")
	done := v.startSession(agent, "true")
	endTurn(t, s, done, 1, `{"cost_usd":0.5}`)
	o := s.user("neighbour")
	theirs := o.startSession(o.shellAgent("sh"), "true")

	p := v.get("/ui/sessions")
	is.True(p.Has(`<table class="session-list" data-live-url="/ui/session-states">`))                                   // where the script asks
	is.True(p.Has(`<tr data-session-id="` + live + `" data-status="pending">`))                                         // a live row
	is.True(p.Has(`<tr data-session-id="` + done + `" data-status="completed">`))                                       // a settled one
	is.True(p.Has(`<th scope="col" data-col="status">`))                                                                // the columns it updates
	is.True(regexp.MustCompile(`<script src="/static/sessions\.[0-9a-f]{12}\.js" defer></script>`).MatchString(p.Body)) // its script, no inline one

	type state struct {
		ID, Status, Duration, Cost string
		Live                       bool
		Turns                      int
	}
	states := func(v *visitor, ids ...string) (int, []state) {
		t.Helper()
		p := v.get("/ui/session-states?ids=" + url.QueryEscape(strings.Join(ids, ",")))
		var body struct{ Sessions []state }
		if p.Status == http.StatusOK {
			is.Equal(p.Header.Get("Content-Type"), "application/json") // JSON
			is.Equal(p.Header.Get("Cache-Control"), "no-store")        // never cached
			is.NoErr(json.Unmarshal([]byte(p.Body), &body))
		}
		return p.Status, body.Sessions
	}
	code, got := states(v, live, done, theirs, "not-an-id")
	is.Equal(code, http.StatusOK)
	is.Equal(len(got), 2) // the caller's two; the other user's and the malformed id are left out
	byID := map[string]state{}
	for _, st := range got {
		byID[st.ID] = st
	}
	is.Equal(byID[live], state{ID: live, Status: "pending", Duration: "—", Cost: "—", Live: true, Turns: 1}) // still live
	is.Equal(byID[done].Status, "completed")                                                                 // ended
	is.True(!byID[done].Live)                                                                                // nothing more to ask
	is.Equal(byID[done].Cost, "$0.5000")                                                                     // with its cost
	is.Equal(byID[done].Turns, 1)                                                                            // and turns
	code, got = states(o, live)
	is.Equal(code, http.StatusOK)
	is.Equal(len(got), 0) // another user's session is not there
	code, got = states(v)
	is.Equal(code, http.StatusOK)
	is.Equal(len(got), 0) // no ids, no sessions
	many := make([]string, 101)
	for i := range many {
		many[i] = store.NewID()
	}
	code, _ = states(v, many...)
	is.Equal(code, http.StatusBadRequest) // at most a page's worth
	anon := s.visitor().get("/ui/session-states?ids=" + live)
	is.Equal(anon.Status, http.StatusFound) // a login is needed
}

// The dashboard shows what runs now, what ended lately with its cost, and
// the spend of the last 7 days; a user with none of it is told so.
func TestDashboardSessionsAndSpend(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSite(t)
	v := s.user("boss")
	p := v.get("/ui/")
	is.True(p.HasText("Nothing is running."))                    // nothing running
	is.True(p.HasText("No session has ended yet."))              // nothing ended
	is.True(p.HasText("No usage recorded in the last 7 days."))  // no spend
	is.True(p.Has(`<span class="label">Active API keys</span>`)) // the counters stay

	agent := v.shellAgent("worker")
	running := v.startSession(agent, "sleep 100")
	ok, err := s.DB.StartTurn(context.Background(), running, 1)
	is.NoErr(err)
	is.True(ok) // running
	ended := v.startSession(agent, "echo done")
	endTurn(t, s, ended, 1, `{"input_tokens":1200,"output_tokens":34,"cost_usd":0.0125}`)

	p = v.get("/ui/")
	is.True(p.Has(`<tr data-session-id="` + running + `" data-status="running">`)) // the running session, live
	is.True(p.Has(`href="/ui/sessions/` + running + `"><code>` + running[:8]))     // linked
	is.True(p.Has(`>worker</a>`))                                                  // with its agent
	is.True(p.Has(`<span class="status-pill status-running">running</span>`))      // and status
	is.True(!p.HasText("Nothing is running."))                                     // no empty note
	recent := p.Body[strings.Index(p.Body, `id="recent-heading"`):]
	is.True(strings.Contains(recent, `href="/ui/sessions/`+ended+`"`))                                // the ended one is recent
	is.True(!strings.Contains(recent[:strings.Index(recent, "</section>")], `/ui/sessions/`+running)) // the running one is not
	is.True(p.HasText("$0.0125 over 1 turn"))                                                         // the spend of the week
	is.True(p.Has(`<meter min="0" max="0.0125" value="0.0125" aria-hidden="true"></meter>`))          // today's bar, full
	is.True(!p.HasText("No usage recorded"))                                                          // no empty note

	o := s.user("peer")
	p = o.get("/ui/")
	is.True(!p.Has(running) && !p.Has(ended))                   // another user sees none of it
	is.True(p.HasText("No usage recorded in the last 7 days.")) // nor its spend
}

// In a browser, a listed session's row follows its status without a
// reload (pending, running, then completed with its cost), and says so to
// screen readers; on a phone's width neither the list nor the dashboard
// scrolls sideways.
func TestBrowserSessionListGoesLive(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	ctx := context.Background()
	srv := apitest.New(t, apitest.Options{UI: &ui.Config{Registration: "open"}})
	_, err := srv.DB.RegisterUser(ctx, "lovelace", "correct horse battery")
	is.NoErr(err)
	tok := srv.Token("lovelace")
	id := srv.StartSession(tok, apitest.SessionBody(srv.ShellAgent(tok), "sleep 100")) // the recording runner leaves it pending
	row := `document.querySelector('tr[data-session-id="` + id + `"]')`
	bctx := browser(t, chrome)
	is.NoErr(chromedp.Run(bctx,
		logIn(srv.URL, "lovelace"),
		chromedp.Navigate(srv.URL+"/ui/sessions"),
		chromedp.WaitVisible("table.session-list", chromedp.ByQuery),
		chromedp.Evaluate(`window.__noReload = 1`, nil),
	)) // the list, with the session pending
	ok, err := srv.DB.StartTurn(ctx, id, 1)
	is.NoErr(err)
	is.True(ok) // it runs
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(row+`.querySelector(".status-pill").textContent === "running"`, nil,
		chromedp.WithPollingTimeout(30*time.Second)))) // the row says so
	code := 0
	is.NoErr(srv.DB.FinishTurn(ctx, id, 1, store.TurnResult{ExitCode: &code, Usage: json.RawMessage(`{"cost_usd":0.0125}`)}))
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(row+`.getAttribute("data-status") === "completed"`, nil,
		chromedp.WithPollingTimeout(30*time.Second)))) // then that it completed
	var marker int
	var cost, pill, note string
	is.NoErr(chromedp.Run(bctx,
		chromedp.Evaluate(`window.__noReload`, &marker),
		chromedp.Evaluate(row+`.cells[6].textContent`, &cost),
		chromedp.Evaluate(row+`.querySelector(".status-pill").className`, &pill),
		chromedp.Evaluate(`document.getElementById("live-note").textContent`, &note),
	))
	is.Equal(marker, 1)                              // without a reload
	is.Equal(cost, "$0.0125")                        // with its cost
	is.Equal(pill, "status-pill status-completed")   // styled as completed
	is.Equal(note, "Session "+id[:8]+"… completed.") // and said to screen readers

	for _, target := range []string{"/ui/sessions?q=sleep", "/ui/"} {
		var wide bool
		is.NoErr(chromedp.Run(bctx, chromedp.EmulateViewport(375, 740), chromedp.Navigate(srv.URL+target),
			chromedp.Evaluate(`document.documentElement.scrollWidth > document.documentElement.clientWidth`, &wide)))
		is.True(!wide) // no sideways scrolling on a phone
	}
}
