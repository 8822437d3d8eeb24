package ui_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
	"github.com/chromedp/chromedp"
	"github.com/matryer/is"
)

// chromiumPath finds Debian's Chromium (make test installs it when missing).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("AOD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	testkit.CannotRun(t, "AOD_REQUIRE_BROWSER", "browser test: Chromium not found (apt install chromium, or set AOD_CHROMIUM)")
	return ""
}

// screenshotDir is where the journey's screenshots go: a test-owned temp dir,
// so a plain `go test` leaves the tracked docs/screenshots alone, unless
// AOD_SCREENSHOTS names a directory (relative to the repository root, since
// go test runs in ui/): AOD_SCREENSHOTS=docs/screenshots refreshes the
// committed ones.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("AOD_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if !filepath.IsAbs(dir) {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowserJourney drives Debian's Chromium headless through the UI:
// register → the welcome page shows the token once → create an environment
// and an agent → start a shell session printing lines slowly → the lines
// appear without a reload → terminate → the status changes.
func TestBrowserJourney(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	ctx := context.Background()
	srv := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, UI: &ui.Config{Registration: "open"}})

	// Chromium's profile and its temporary files (singleton socket and
	// cookie) go under the test's temp dir, so nothing is left in /tmp.
	browserTmp := browserDir(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Env("TMPDIR="+browserTmp), chromedp.UserDataDir(filepath.Join(browserTmp, "profile")),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 900),
	)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 5*time.Minute) // a hang guard: a loaded CI machine is slow
	defer cancelTimeout()

	shots := screenshotDir(t)
	var taken []string
	shot := func(name string) chromedp.Action {
		taken = append(taken, name)
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	var text string
	bodyText := chromedp.Text("body", &text, chromedp.ByQuery)

	// Landing page, then register.
	is.NoErr(chromedp.Run(bctx, chromedp.Navigate(srv.URL+"/"), shot("landing"), bodyText)) // landing page
	is.True(strings.Contains(text, "Agent on Demand"))                                      // names the product
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(srv.URL+"/ui/register"),
		chromedp.SendKeys("#id_username", "ada", chromedp.ByQuery),
		chromedp.SendKeys("#id_password1", "correct horse battery", chromedp.ByQuery),
		chromedp.SendKeys("#id_password2", "correct horse battery", chromedp.ByQuery),
		chromedp.Click(`form[action="/ui/register"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#api-key", chromedp.ByQuery),
		bodyText,
	)) // register
	var url string
	is.NoErr(chromedp.Run(bctx, chromedp.Location(&url)))        // where registration landed
	is.True(strings.HasSuffix(url, "/ui/welcome"))               // the welcome page
	is.True(strings.Contains(text, "aod_"))                      // shows the new API token
	is.True(strings.Contains(text, "export AOD_API_TOKEN=aod_")) // with a copy-paste export line
	is.NoErr(chromedp.Run(bctx, shot("welcome")))                // screenshot

	is.NoErr(chromedp.Run(bctx, chromedp.Navigate(srv.URL+"/ui/welcome"), bodyText, chromedp.Location(&url))) // second visit
	is.True(!strings.Contains(text, "export AOD_API_TOKEN=aod_"))                                             // the token is not shown again
	is.True(!strings.HasSuffix(url, "/ui/welcome"))                                                           // and the page sends people on
	is.NoErr(chromedp.Run(bctx, chromedp.Navigate(srv.URL+"/ui/"), shot("dashboard")))                        // dashboard

	// An environment, then an agent using it.
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(srv.URL+"/ui/environments/new"),
		chromedp.SendKeys("#id_name", "scratch", chromedp.ByQuery),
		chromedp.Click(`form[action="/ui/environments/new"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("dl.kv", chromedp.ByQuery),
		shot("environment"),
		bodyText,
	)) // create an environment
	is.True(strings.Contains(text, "Environment created.")) // flash after the redirect
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(srv.URL+"/ui/agents/new"),
		chromedp.SendKeys("#id_name", "slow-printer", chromedp.ByQuery),
		chromedp.SetValue("#id_runtime", "shell", chromedp.ByQuery),
		chromedp.SetValue("#id_model", "local/shell", chromedp.ByQuery),
		chromedp.Click(`form[action="/ui/agents/new"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#id_prompt", chromedp.ByQuery),
		shot("agent"),
		bodyText,
	)) // create an agent
	is.True(strings.Contains(text, "Agent created.")) // flash after the redirect

	// A session printing slowly: the lines arrive while the page stays put.
	is.NoErr(chromedp.Run(bctx,
		chromedp.SetValue("#id_prompt", "for i in $(seq 1 200); do echo line $i; sleep 0.2; done", chromedp.ByQuery),
		chromedp.Click(`form[action$="/sessions"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("pre.logs", chromedp.ByQuery),
		chromedp.Evaluate(`window.__noReload = 1`, nil),
	)) // start the session from the agent page
	var logs string
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(`document.querySelector("pre.logs").textContent.includes("line 3")`, nil,
		chromedp.WithPollingTimeout(60*time.Second)))) // line 3 appears live
	var marker int
	is.NoErr(chromedp.Run(bctx, chromedp.Evaluate(`window.__noReload`, &marker), chromedp.Text("pre.logs", &logs, chromedp.ByQuery))) // read the page
	is.Equal(marker, 1)                                                                                                               // the page was not reloaded
	is.True(strings.Contains(logs, "line 1") && strings.Contains(logs, "line 2") && strings.Contains(logs, "line 3"))                 // every line so far, in the page
	is.NoErr(chromedp.Run(bctx, shot("session-live")))                                                                                // screenshot

	// Terminate: the status changes.
	var status string
	is.NoErr(chromedp.Run(bctx, chromedp.Click(`#terminate-form button[type=submit]`, chromedp.ByQuery))) // terminate
	// The click posts and the page redirects back (PRG): read the status
	// once the new page is there, retrying through the navigation.
	testkit.Eventually(30*time.Second, func() bool {
		return chromedp.Run(bctx, chromedp.Text("#session-status", &status, chromedp.ByQuery)) == nil && strings.TrimSpace(status) == "terminated"
	})
	is.NoErr(chromedp.Run(bctx, shot("session-terminated"))) // screenshot
	is.Equal(strings.TrimSpace(status), "terminated")        // the page shows the new status
	is.NoErr(chromedp.Run(bctx, chromedp.Navigate(srv.URL+"/ui/sessions"), shot("sessions"),
		chromedp.Navigate(srv.URL+"/ui/api-keys"), shot("api-keys"))) // the remaining main pages

	// Webhooks, by keyboard: add one (its secret is shown once), open its
	// deliveries page, delete it through the confirm step; on a phone's
	// width neither page scrolls sideways.
	is.NoErr(chromedp.Run(bctx,
		chromedp.Navigate(srv.URL+"/ui/webhooks"),
		chromedp.SendKeys("#id_url", "https://hooks.example/aod", chromedp.ByQuery),
		chromedp.SendKeys("#id_description", "CI\r", chromedp.ByQuery),
		chromedp.WaitVisible("#new-webhook-secret", chromedp.ByQuery),
		shot("webhooks"),
		bodyText,
	)) // create a webhook, Enter submitting the form
	is.True(strings.Contains(text, "whsec_"))               // the secret is shown
	is.True(strings.Contains(text, "Verifying a delivery")) // with how to check signatures
	var hookURL string
	is.NoErr(chromedp.Run(bctx,
		chromedp.Click(`td a[href^="/ui/webhooks/"]`, chromedp.ByQuery),
		chromedp.WaitVisible("dl.kv", chromedp.ByQuery),
		shot("webhook"),
		bodyText,
		chromedp.Location(&hookURL),
	)) // its deliveries page
	is.True(strings.Contains(text, "No deliveries yet.")) // none yet
	for _, target := range []string{srv.URL + "/ui/webhooks", hookURL} {
		var wide bool
		is.NoErr(chromedp.Run(bctx, chromedp.EmulateViewport(375, 740), chromedp.Navigate(target),
			chromedp.Evaluate(`document.documentElement.scrollWidth > document.documentElement.clientWidth`, &wide)))
		is.True(!wide) // no sideways scrolling on a phone (see target)
	}
	is.NoErr(chromedp.Run(bctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Focus(".console-action summary", chromedp.ByQuery),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(`.console-action button[type=submit]`, chromedp.ByQuery),
		chromedp.Focus(`.console-action button[type=submit]`, chromedp.ByQuery),
		chromedp.KeyEvent("\r"),
	)) // Delete… opens the confirm step; its button deletes
	// The list comes back after a redirect: read it once it is there,
	// retrying through the navigation.
	testkit.Eventually(30*time.Second, func() bool {
		return chromedp.Run(bctx, chromedp.Text("body", &text, chromedp.ByQuery)) == nil && strings.Contains(text, "No webhooks yet.")
	})
	is.True(strings.Contains(text, "Webhook deleted."))   // the list says so
	is.True(!strings.Contains(text, "hooks.example/aod")) // and no longer holds it

	is.True(len(taken) > 0) // the journey took screenshots
	for _, name := range taken {
		b, err := os.ReadFile(filepath.Join(shots, name+".png"))
		is.NoErr(err)                                            // the screenshot was written
		is.True(bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n"))) // and is a PNG
	}
}

// A page whose stream is refused at the user's stream limit says so, tries
// again by itself, and goes live once a stream is free: the output then
// arrives without a reload.
func TestBrowserStreamRetriesAfterTheLimit(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	ctx := context.Background()
	srv := apitest.New(t, apitest.Options{MaxStreamsPerUser: 1, UI: &ui.Config{Registration: "open"}})
	_, err := srv.DB.RegisterUser(ctx, "grace", "correct horse battery")
	is.NoErr(err)
	tok := srv.Token("grace")
	id := srv.StartSession(tok, apitest.SessionBody(srv.ShellAgent(tok), "echo hi")) // never runs: its stream stays open
	held, release := context.WithCancel(ctx)
	defer release()
	st := testkit.Connect(t, held, srv.URL+"/sessions/"+id+"/stream", map[string]string{"Authorization": "Bearer " + tok})
	is.Equal(st.Next(t).Event().Type, "start") // the user's one stream is taken

	bctx := browser(t, chrome)
	is.NoErr(chromedp.Run(bctx,
		logIn(srv.URL, "grace"),
		chromedp.Navigate(srv.URL+"/ui/sessions/"+id),
		chromedp.WaitVisible("pre.logs", chromedp.ByQuery),
	)) // log in, open the session's page
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(`document.getElementById("stream-state").textContent.includes("trying again")`, nil,
		chromedp.WithPollingTimeout(30*time.Second)))) // the refused stream says it will try again
	release() // the API stream closes
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(`document.getElementById("stream-state").textContent === "Live"`, nil,
		chromedp.WithPollingTimeout(30*time.Second)))) // the page's stream gets in by itself
	is.NoErr(srv.DB.AppendEvents(ctx, id, []store.Event{{Kind: store.KindOutput, Turn: 1, Stream: "stdout", Data: "after the wait\n"}}))
	is.NoErr(chromedp.Run(bctx, chromedp.Poll(`document.querySelector("pre.logs").textContent.includes("after the wait")`, nil,
		chromedp.WithPollingTimeout(30*time.Second)))) // and output arrives live
}

// When a turn ends while the page is open, the page shows the session's
// real status (an interrupted turn exits 143 yet completes the session)
// and opens the follow-up form, without a reload.
func TestBrowserFollowUpOpensWhenTheTurnEnds(t *testing.T) {
	t.Parallel()
	chrome := chromiumPath(t)
	is := is.New(t)
	ctx := context.Background()
	srv := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, UI: &ui.Config{Registration: "open"}})
	_, err := srv.DB.RegisterUser(ctx, "hopper", "correct horse battery")
	is.NoErr(err)
	tok := srv.Token("hopper")
	id := srv.StartSession(tok, apitest.SessionBody(srv.ShellAgent(tok), "echo started; exec sleep 600"))
	bctx := browser(t, chrome)
	is.NoErr(chromedp.Run(bctx,
		logIn(srv.URL, "hopper"),
		chromedp.Navigate(srv.URL+"/ui/sessions/"+id),
		chromedp.Poll(`document.querySelector("pre.logs").textContent.includes("started")`, nil, chromedp.WithPollingTimeout(60*time.Second)),
		chromedp.Evaluate(`window.__noReload = 1`, nil),
	)) // the page, live, while the turn runs
	var hidden bool
	is.NoErr(chromedp.Run(bctx, chromedp.Evaluate(`document.getElementById("follow-up-form").hidden`, &hidden)))
	is.True(hidden)                                                              // no follow-up while the turn runs
	is.Equal(srv.Do("POST", "/sessions/"+id+"/interrupt", tok, nil).Status, 202) // the turn is stopped elsewhere (the API)
	is.NoErr(chromedp.Run(bctx,
		chromedp.Poll(`document.getElementById("follow-up-form") && !document.getElementById("follow-up-form").hidden`, nil,
			chromedp.WithPollingTimeout(60*time.Second)),
	)) // the form opens once the turn has ended
	var marker int
	is.NoErr(chromedp.Run(bctx, chromedp.Evaluate(`window.__noReload`, &marker)))
	is.Equal(marker, 1) // without a reload
	var status string
	is.NoErr(chromedp.Run(bctx, chromedp.Text("#session-status", &status, chromedp.ByQuery)))
	is.Equal(strings.TrimSpace(status), "completed") // the session's real status, not a guess from the exit code
}

// browser starts Chromium for a test (its profile and temporary files in
// the test's temp dir), stopped when the test ends; every step is bounded
// by two minutes in all.
func browser(t *testing.T, chrome string) context.Context {
	t.Helper()
	tmp := browserDir(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Env("TMPDIR="+tmp), chromedp.UserDataDir(filepath.Join(tmp, "profile")),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("no-first-run", true),
	)...)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	bctx, cancelTimeout := context.WithTimeout(bctx, 5*time.Minute) // a hang guard: real CLIs on a loaded machine are slow
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	return bctx
}

// logIn signs a user in through the login form (password "correct horse
// battery").
func logIn(base, user string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Navigate(base + "/ui/login"),
		chromedp.SendKeys("#id_username", user, chromedp.ByQuery),
		chromedp.SendKeys("#id_password", "correct horse battery", chromedp.ByQuery),
		chromedp.Click(`form[action="/ui/login"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("main", chromedp.ByQuery),
	}
}

// browserDir is a directory for Chromium's profile and temporary files.
// Not t.TempDir: Chromium's helper processes may still be writing to the
// profile for a moment after the browser is stopped, so the directory is
// removed with retries, after the test's other cleanups (which run last
// registered first) and its defers have stopped the browser.
func browserDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "aod-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !testkit.Eventually(10*time.Second, func() bool { return os.RemoveAll(dir) == nil }) {
			t.Errorf("could not remove the browser's profile %s", dir)
		}
	})
	return dir
}
