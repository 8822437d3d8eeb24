package ui_test

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner"
	"github.com/aod/aod/server"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
)

// site is the real aod server (API and UI) on an httptest listener over a
// fresh data dir, with the real session runner.
type site struct {
	t   *testing.T
	URL string
	DB  *store.DB
}

// siteOptions adjust the server a test starts.
type siteOptions struct {
	registration  string
	secure        bool
	maxConcurrent int
	keyless       map[string]bool
}

func newSite(t *testing.T) *site { return newSiteWith(t, siteOptions{}) }

func newSiteWith(t *testing.T, o siteOptions) *site {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := runner.New(db, runner.Config{DataDir: dir, KillGrace: 200 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	if err := run.Start(context.Background()); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	stream := sse.Config{Heartbeat: time.Second}
	policy := store.SessionPolicy{MaxConcurrent: o.maxConcurrent}
	if o.keyless != nil {
		policy.Keyless = func(p string) bool { return o.keyless[p] }
	}
	sess := sessions.New(db, run, policy)
	h, err := ui.New(db, sess, ui.Config{Registration: o.registration, Secure: o.secure, Stream: stream, Logger: quiet})
	if err != nil {
		t.Fatalf("ui: %v", err)
	}
	ts := httptest.NewServer(server.New(db, sess, server.Config{UI: h, Logger: quiet, Stream: stream}))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		run.Shutdown(context.Background(), 0)
		db.Close()
	})
	return &site{t: t, URL: ts.URL, DB: db}
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
	v.s.t.Helper()
	res, err := v.client.Do(req)
	if err != nil {
		v.s.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		v.s.t.Fatalf("read %s: %v", req.URL, err)
	}
	p := page{Status: res.StatusCode, Header: res.Header, Body: string(b), res: res}
	if m := csrfRE.FindStringSubmatch(p.Body); m != nil {
		v.csrf = html.UnescapeString(m[1])
	}
	return p
}

// get fetches a path (extra headers as "Name: value").
func (v *visitor) get(path string, headers ...string) page {
	v.s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.s.URL+path, nil)
	if err != nil {
		v.s.t.Fatal(err)
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
	v.s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf_token"]; !ok {
		form.Set("csrf_token", v.csrf)
	}
	return v.send(http.MethodPost, path, form, headers...)
}

func (v *visitor) send(method, path string, form url.Values, headers ...string) page {
	v.s.t.Helper()
	req, err := http.NewRequest(method, v.s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		v.s.t.Fatal(err)
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
	v.s.t.Helper()
	if p.Status != http.StatusFound {
		v.s.t.Fatalf("want a 302 to follow, got %d: %.300s", p.Status, p.Body)
	}
	return v.get(p.Location())
}

// register signs a new user up through the form and leaves the visitor
// logged in (the welcome key still stashed).
func (v *visitor) register(name string) page {
	v.s.t.Helper()
	v.get("/ui/register")
	p := v.post("/ui/register", url.Values{"username": {name}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	if p.Status != http.StatusFound || p.Location() != "/ui/welcome" {
		v.s.t.Fatalf("register %s: %d %s %.300s", name, p.Status, p.Location(), p.Body)
	}
	return p
}

// user is a visitor logged in as a fresh user created in the store (so
// it has no keys yet), on the dashboard.
func (s *site) user(name string) *visitor {
	s.t.Helper()
	if _, err := s.DB.RegisterUser(context.Background(), name, "s3cret-pass"); err != nil {
		s.t.Fatalf("register %s: %v", name, err)
	}
	v := s.visitor()
	v.get("/ui/login")
	p := v.post("/ui/login", url.Values{"username": {name}, "password": {"s3cret-pass"}})
	if p.Status != http.StatusFound {
		s.t.Fatalf("login %s: %d %.300s", name, p.Status, p.Body)
	}
	v.get("/ui/")
	return v
}

var idInPathRE = regexp.MustCompile(`/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// idOf returns the id a redirect to a detail page names.
func idOf(t *testing.T, p page) string {
	t.Helper()
	m := idInPathRE.FindStringSubmatch(p.Location())
	if m == nil {
		t.Fatalf("no id in redirect %q (status %d): %.300s", p.Location(), p.Status, p.Body)
	}
	return m[1]
}

// shellAgent creates a shell agent through the form and returns its id.
func (v *visitor) shellAgent(name string) string {
	v.s.t.Helper()
	v.get("/ui/agents/new")
	p := v.post("/ui/agents/new", url.Values{"name": {name}, "runtime": {"shell"}, "model": {"local/shell"}})
	return idOf(v.s.t, p)
}

// startSession starts a session of agent from its page and returns its id.
func (v *visitor) startSession(agentID, script string) string {
	v.s.t.Helper()
	v.get("/ui/agents/" + agentID)
	p := v.post("/ui/agents/"+agentID+"/sessions", url.Values{"prompt": {script}, "timeout": {"60"}})
	return idOf(v.s.t, p)
}

// waitStatus polls the store until the session reaches one of statuses.
func (s *site) waitStatus(id string, statuses ...string) *store.Session {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sess, err := s.DB.GetSession(context.Background(), "", id)
		if err != nil {
			s.t.Fatalf("get session: %v", err)
		}
		for _, st := range statuses {
			if sess.Status == st {
				return sess
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("session %s still %s, want one of %v", id, sess.Status, statuses)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOutput waits until a session's log holds output containing text.
func (s *site) waitOutput(id, text string) {
	s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		events, err := s.DB.Events(context.Background(), id, 0, 10000)
		if err != nil {
			s.t.Fatalf("events: %v", err)
		}
		for _, e := range events {
			if e.Kind == store.KindOutput && strings.Contains(e.Data, text) {
				return
			}
		}
	}
	s.t.Fatalf("session %s never printed %q", id, text)
}
