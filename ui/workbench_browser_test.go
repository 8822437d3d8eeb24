package ui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/ui"
	"github.com/chromedp/chromedp"
	"github.com/matryer/is"
)

// A new user's first real run, in Chromium, on a server that requires
// model keys: the provider key goes in Settings → Secrets, a claude agent
// is made, its session started from the full form runs the real CLI
// against the fake model, the session page shows the turn's result and
// cost; the agent is edited, and the next session uses the new version.
func TestBrowserWorkbench(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	ctx := context.Background()
	srv := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, UI: &ui.Config{Registration: "open"}})
	_, err := srv.DB.RegisterUser(ctx, "grace", "correct horse battery")
	is.NoErr(err)
	bctx := browser(t, chrome)
	var text string
	bodyText := chromedp.Evaluate(`document.body.textContent`, &text)

	// No key yet: the agent page's form says where one goes.
	is.NoErr(chromedp.Run(bctx,
		logIn(srv.URL, "grace"),
		chromedp.Navigate(srv.URL+"/ui/agents/new"),
		chromedp.SendKeys("#id_name", "helper", chromedp.ByQuery),
		chromedp.SetValue("#id_runtime", "claude", chromedp.ByQuery),
		chromedp.SetValue("#id_model", "anthropic/claude-sonnet-4-6", chromedp.ByQuery),
		chromedp.SendKeys("#id_system", "You are version one.", chromedp.ByQuery),
		chromedp.Click(`form[action="/ui/agents/new"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#id_prompt", chromedp.ByQuery),
	)) // a claude agent
	var agentURL string
	is.NoErr(chromedp.Run(bctx, chromedp.Location(&agentURL)))
	is.NoErr(chromedp.Run(bctx,
		chromedp.SendKeys("#id_prompt", "first workbench question", chromedp.ByQuery),
		chromedp.Click(`form[action$="/sessions"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`a[href="/ui/settings/secrets"]`, chromedp.ByQuery),
		bodyText,
	)) // refused: no key
	is.True(strings.Contains(text, "No API key configured for runtime: claude")) // the contract's message
	is.True(strings.Contains(text, "Settings → Secrets"))                        // and where a key goes

	// The key, in Settings → Secrets.
	is.NoErr(chromedp.Run(bctx,
		chromedp.Click(`a[href="/ui/settings/secrets"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#id_value", chromedp.ByQuery),
		chromedp.SendKeys("#id_name", "ANTHROPIC_API_KEY", chromedp.ByQuery),
		chromedp.SendKeys("#id_value", "sk-ant-workbench-secret\r", chromedp.ByQuery),
		chromedp.WaitVisible(`td code`, chromedp.ByQuery),
		bodyText,
	)) // saved, Enter submitting the form
	is.True(strings.Contains(text, "ANTHROPIC_API_KEY"))        // listed by name
	is.True(!strings.Contains(text, "sk-ant-workbench-secret")) // never its value

	// The session, from the full form.
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(agentURL),
		chromedp.SendKeys("#id_prompt", "first workbench question", chromedp.ByQuery),
		chromedp.Click(`form[action$="/sessions"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#session-status", chromedp.ByQuery),
	)) // started
	var sessionURL string
	is.NoErr(chromedp.Run(bctx, chromedp.Location(&sessionURL)))
	first := sessionURL[strings.LastIndex(sessionURL, "/")+1:]
	is.Equal(finished(t, srv, first), "completed") // the real CLI ran its turn
	is.NoErr(chromedp.Run(bctx, chromedp.Navigate(sessionURL), chromedp.WaitVisible("#session-cost", chromedp.ByQuery), bodyText))
	is.True(strings.Contains(text, "fake reply to: You are version one.")) // the turn's result (the fake model's reply to system prompt + prompt)
	var cost string
	is.NoErr(chromedp.Run(bctx, chromedp.Text("#session-cost", &cost, chromedp.ByQuery)))
	is.True(strings.Contains(cost, "$")) // and its cost (see cost)

	// Edit the agent; the next session runs the new version.
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(agentURL+"/edit"),
		chromedp.WaitVisible("#id_system", chromedp.ByQuery),
		chromedp.SetValue("#id_system", "You are version two.", chromedp.ByQuery),
		chromedp.Click(`form[action$="/edit"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#id_prompt", chromedp.ByQuery),
		bodyText,
	)) // saved
	is.True(strings.Contains(text, "version 2")) // the page says which version is current
	is.NoErr(chromedp.Run(bctx,
		chromedp.SendKeys("#id_prompt", "second workbench question", chromedp.ByQuery),
		chromedp.Click(`form[action$="/sessions"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#session-status", chromedp.ByQuery),
		chromedp.Location(&sessionURL),
	)) // the next session
	second := sessionURL[strings.LastIndex(sessionURL, "/")+1:]
	is.Equal(finished(t, srv, second), "completed")
	sess, err := srv.DB.GetSession(ctx, "", second)
	is.NoErr(err)
	is.Equal(sess.System, "You are version two.") // it took the edited agent's version
	is.True(testkit.Eventually(10*time.Second, func() bool {
		for _, r := range srv.Fake.Requests() {
			if b := string(r.Body); strings.Contains(b, "second workbench question") && strings.Contains(b, "You are version two.") {
				return true
			}
		}
		return false
	})) // whose system prompt the model received
}

// finished waits for session id to end, longer than apitest's patience:
// the real CLI on a loaded machine may take minutes. It returns the
// session's status.
func finished(t *testing.T, srv *apitest.Server, id string) string {
	t.Helper()
	var status string
	testkit.Eventually(4*time.Minute, func() bool {
		s, err := srv.DB.GetSession(context.Background(), "", id)
		if err == nil {
			status = s.Status
		}
		return status == "completed" || status == "failed"
	})
	return status
}
