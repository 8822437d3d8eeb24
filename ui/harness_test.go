package ui_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

// site is the real aod server (API and UI) on 127.0.0.1:<random port>
// over a fresh data dir (apitest), with a runner that only records unless
// the test's sessions must run.
type site struct{ *apitest.Server }

// siteOptions adjust the server a test starts.
type siteOptions struct {
	registration   string
	secure         bool
	maxConcurrent  int
	run            bool           // sessions run for real, with the real runner
	streamsPerUser int            // open streams a user may hold (0: the default)
	trusted        []netip.Prefix // the UI's trusted proxies
	sandbox        string         // the real runner's (run only; "": as AOD_TEST_SANDBOX says)
}

// newSite starts a site whose sessions never run.
func newSite(t *testing.T) *site { return newSiteWith(t, siteOptions{}) }

// newRunningSite starts a site whose sessions run with the real runner.
func newRunningSite(t *testing.T) *site { return newSiteWith(t, siteOptions{run: true}) }

func newSiteWith(t *testing.T, o siteOptions) *site {
	t.Helper()
	opts := apitest.Options{MaxConcurrent: o.maxConcurrent, Heartbeat: time.Second, MaxStreamsPerUser: o.streamsPerUser,
		UI: &ui.Config{Registration: o.registration, Secure: o.secure, TrustedProxies: o.trusted}}
	if o.run {
		opts.Runner, opts.Sandbox = apitest.RealRunner, o.sandbox
	}
	return &site{apitest.New(t, opts)}
}

// visitor is one browser: a cookie jar, redirects not followed so tests
// see every 302.
type visitor struct {
	s      *site
	client *http.Client
	csrf   string // the token of the last page that had a form
}

func (s *site) visitor() *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{s: s, client: &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is a response with its body read.
type page struct {
	Status int
	Header http.Header
	Body   string
	res    *http.Response
}

// Location is where a redirect points (path and query).
func (p page) Location() string { return p.Header.Get("Location") }

// Has reports whether the HTML holds text (HTML-unescaped before looking).
func (p page) Has(text string) bool { return strings.Contains(html.UnescapeString(p.Body), text) }

var tagRE = regexp.MustCompile(`<[^>]*>`)

// HasText reports whether the page's text (tags removed, unescaped) holds
// text: what a reader sees.
func (p page) HasText(text string) bool {
	return strings.Contains(html.UnescapeString(tagRE.ReplaceAllString(p.Body, "")), text)
}

var flashRE = regexp.MustCompile(`<li class="(success|error|warning)" role="\w+">([^<]*)</li>`)

// Flashes lists the page's messages as "level: text".
func (p page) Flashes() []string {
	var out []string
	for _, m := range flashRE.FindAllStringSubmatch(p.Body, -1) {
		out = append(out, m[1]+": "+html.UnescapeString(m[2]))
	}
	return out
}

// Cookie returns the Set-Cookie of name, nil when not set.
func (p page) Cookie(name string) *http.Cookie {
	for _, c := range p.res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func (v *visitor) do(req *http.Request) page {
	v.s.T().Helper()
	res, err := v.client.Do(req)
	if err != nil {
		v.s.T().Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		v.s.T().Fatalf("read %s: %v", req.URL, err)
	}
	p := page{Status: res.StatusCode, Header: res.Header, Body: string(b), res: res}
	if m := csrfRE.FindStringSubmatch(p.Body); m != nil {
		v.csrf = html.UnescapeString(m[1])
	}
	return p
}

// get fetches a path (extra headers as "Name: value").
func (v *visitor) get(path string, headers ...string) page {
	v.s.T().Helper()
	req, err := http.NewRequest(http.MethodGet, v.s.URL+path, nil)
	if err != nil {
		v.s.T().Fatal(err)
	}
	for _, h := range headers {
		k, val, _ := strings.Cut(h, ": ")
		req.Header.Set(k, val)
	}
	return v.do(req)
}

// post submits a form with the CSRF token of the last page seen, unless
// the form names csrf_token itself (even as "").
func (v *visitor) post(path string, form url.Values, headers ...string) page {
	v.s.T().Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf_token"]; !ok {
		form.Set("csrf_token", v.csrf)
	}
	return v.send(http.MethodPost, path, form, headers...)
}

func (v *visitor) send(method, path string, form url.Values, headers ...string) page {
	v.s.T().Helper()
	req, err := http.NewRequest(method, v.s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		v.s.T().Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, h := range headers {
		k, val, _ := strings.Cut(h, ": ")
		req.Header.Set(k, val)
	}
	return v.do(req)
}

// follow GETs where a redirect points.
func (v *visitor) follow(p page) page {
	v.s.T().Helper()
	if p.Status != http.StatusFound {
		v.s.T().Fatalf("want a 302 to follow, got %d: %.300s", p.Status, p.Body)
	}
	return v.get(p.Location())
}

// register signs a new user up through the form and leaves the visitor
// logged in (the welcome key still stashed).
func (v *visitor) register(name string) page {
	v.s.T().Helper()
	v.get("/ui/register")
	p := v.post("/ui/register", url.Values{"username": {name}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	if p.Status != http.StatusFound || p.Location() != "/ui/welcome" {
		v.s.T().Fatalf("register %s: %d %s %.300s", name, p.Status, p.Location(), p.Body)
	}
	return p
}

// user is a visitor logged in as a fresh user created in the store (so
// it has no keys yet), on the dashboard.
func (s *site) user(name string) *visitor {
	s.T().Helper()
	if _, err := s.DB.RegisterUser(context.Background(), name, "s3cret-pass"); err != nil {
		s.T().Fatalf("register %s: %v", name, err)
	}
	v := s.visitor()
	v.get("/ui/login")
	p := v.post("/ui/login", url.Values{"username": {name}, "password": {"s3cret-pass"}})
	if p.Status != http.StatusFound {
		s.T().Fatalf("login %s: %d %.300s", name, p.Status, p.Body)
	}
	v.get("/ui/")
	return v
}

var idInPathRE = regexp.MustCompile(`/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// idOf returns the id a redirect to a detail page names.
func idOf(t testing.TB, p page) string {
	t.Helper()
	m := idInPathRE.FindStringSubmatch(p.Location())
	if m == nil {
		t.Fatalf("no id in redirect %q (status %d): %.300s", p.Location(), p.Status, p.Body)
	}
	return m[1]
}

// shellAgent creates a shell agent through the form and returns its id.
func (v *visitor) shellAgent(name string) string {
	v.s.T().Helper()
	v.get("/ui/agents/new")
	p := v.post("/ui/agents/new", url.Values{"name": {name}, "runtime": {"shell"}, "model": {"local/shell"}})
	return idOf(v.s.T(), p)
}

// startSession starts a session of agent from its page and returns its id.
func (v *visitor) startSession(agentID, script string) string {
	v.s.T().Helper()
	v.get("/ui/agents/" + agentID)
	p := v.post("/ui/agents/"+agentID+"/sessions", url.Values{"prompt": {script}, "timeout": {"60"}})
	return idOf(v.s.T(), p)
}

// waitStatus polls the store until the session reaches one of statuses.
func (s *site) waitStatus(id string, statuses ...string) *store.Session {
	s.T().Helper()
	var sess *store.Session
	if !testkit.Eventually(apitest.Patience, func() bool {
		var err error
		sess, err = s.DB.GetSession(context.Background(), "", id)
		if err != nil {
			s.T().Fatalf("get session: %v", err)
		}
		return slices.Contains(statuses, sess.Status)
	}) {
		s.T().Fatalf("session %s still %s, want one of %v", id, sess.Status, statuses)
	}
	return sess
}

// waitOutput waits until a session's log holds output containing text.
func (s *site) waitOutput(id, text string) {
	s.T().Helper()
	if !testkit.Eventually(30*time.Second, func() bool {
		events, err := s.DB.Events(context.Background(), id, 0, 10000)
		if err != nil {
			s.T().Fatalf("events: %v", err)
		}
		for _, e := range events {
			if e.Kind == store.KindOutput && strings.Contains(e.Data, text) {
				return true
			}
		}
		return false
	}) {
		s.T().Fatalf("session %s never printed %q", id, text)
	}
}
