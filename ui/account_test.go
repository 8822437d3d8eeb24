package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/aod/aod/runner"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/matryer/is"
)

func TestLanding(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	t.Run("anonymous", func(t *testing.T) {
		is := is.New(t)
		p := s.visitor().get("/")
		is.Equal(p.Status, http.StatusOK)                                     // landing is public
		is.True(strings.HasPrefix(p.Header.Get("Content-Type"), "text/html")) // HTML
		is.True(p.Has("Agent on Demand"))                                     // names the product
		is.True(p.Has("Ship agent workflows without building the runtime."))  // the hero
		is.True(p.Has(`href="/ui/register"`))                                 // the CTA to sign up
		is.True(p.Has("Create account"))                                      // its label
		is.True(p.Has(`href="/ui/docs"`))                                     // the docs, served by aod
		for _, call := range []string{"POST /agents", "POST /sessions", "GET /sessions/<id>/stream"} {
			is.True(p.Has(call)) // the three calls
		}
		for _, rt := range []string{"claude", "codex", "gemini", "opencode"} {
			is.True(p.Has("<code>" + rt + "</code>")) // the runtime list
		}
		is.True(p.Has(`<meta name="viewport"`)) // readable on a phone
	})
	t.Run("logged in", func(t *testing.T) {
		is := is.New(t)
		p := s.user("lena").get("/")
		is.Equal(p.Status, http.StatusOK)      // landing
		is.True(p.Has("Open dashboard"))       // the CTA goes to the console
		is.True(!p.Has("Create an account"))   // no sign-up pitch
		is.True(!p.Has(`href="/ui/register"`)) // nor link
	})
	t.Run("unknown paths", func(t *testing.T) {
		is := is.New(t)
		p := s.visitor().get("/ui/nowhere")
		is.Equal(p.Status, http.StatusNotFound) // 404 page
		is.True(p.Has("Page not found"))        // in HTML
	})
	t.Run("/ui redirects to the dashboard", func(t *testing.T) {
		is := is.New(t)
		p := s.visitor().get("/ui")
		is.Equal(p.Status, http.StatusFound) // redirect
		is.Equal(p.Location(), "/ui/")       // to /ui/
	})
}

// TestLoginRequired: every page but the landing, login and register pages
// sends anonymous visitors to the login page, with next for GETs.
func TestLoginRequired(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	const id = "0195a0c0-0000-7000-8000-000000000001"
	gets := []string{"/ui/", "/ui/welcome", "/ui/api-keys", "/ui/agents", "/ui/agents/new", "/ui/agents/" + id,
		"/ui/environments", "/ui/environments/new", "/ui/environments/" + id, "/ui/sessions", "/ui/sessions/" + id,
		"/ui/sessions/" + id + "/stream"}
	for _, path := range gets {
		t.Run("GET "+path, func(t *testing.T) {
			is := is.New(t)
			p := s.visitor().get(path)
			is.Equal(p.Status, http.StatusFound)                            // redirect
			is.Equal(p.Location(), "/ui/login?next="+url.QueryEscape(path)) // to login, coming back after
		})
	}
	posts := []string{"/ui/api-keys", "/ui/api-keys/1/revoke", "/ui/agents/new", "/ui/agents/" + id + "/archive",
		"/ui/agents/" + id + "/sessions", "/ui/environments/new", "/ui/environments/" + id + "/archive",
		"/ui/sessions/" + id + "/prompt", "/ui/sessions/" + id + "/terminate"}
	for _, path := range posts {
		t.Run("POST "+path, func(t *testing.T) {
			is := is.New(t)
			p := s.visitor().post(path, url.Values{"csrf_token": {"x"}})
			is.Equal(p.Status, http.StatusFound) // redirect
			is.Equal(p.Location(), "/ui/login")  // to login
		})
	}
}

func TestRegisterAndWelcome(t *testing.T) {
	t.Parallel()
	// The test's client reaches the site through a "proxy" it trusts, so
	// X-Forwarded-Proto counts.
	s := newSiteWith(t, siteOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	is := is.New(t)
	v := s.visitor()

	p := v.get("/ui/register")
	is.Equal(p.Status, http.StatusOK)           // register page
	is.True(p.Has(`id="id_username"`))          // Django-style ids
	is.True(p.Has(`id="id_password1"`))         // password
	is.True(p.Has(`id="id_password2"`))         // confirmation
	is.True(p.Has(`<label for="id_username">`)) // labelled
	is.True(p.Has("Create your account"))       // heading
	is.True(p.Has(`href="/ui/login"`))          // link to log in

	p = v.post("/ui/register", url.Values{"username": {"ada"}, "password1": {"s3cret-pass"}, "password2": {"other-pass"}})
	is.Equal(p.Status, http.StatusOK)                       // a mismatch re-renders
	is.True(p.Has("The two password fields didn’t match.")) // and says why
	is.True(p.Has(`value="ada"`))                           // keeping the username
	_, err := s.DB.UserByName(context.Background(), "ada")
	is.True(err != nil) // no user was made

	p = v.post("/ui/register", url.Values{"username": {"ada"}, "password1": {"short"}, "password2": {"short"}})
	is.Equal(p.Status, http.StatusOK)            // too short re-renders
	is.True(p.Has("This password is too short")) // with the rule

	p = v.post("/ui/register", url.Values{"username": {"bad name!"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusOK)        // invalid username re-renders
	is.True(p.Has("Enter a valid username")) // with the rule

	p = v.post("/ui/register", url.Values{"username": {"ada"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusFound)    // success redirects
	is.Equal(p.Location(), "/ui/welcome")   // to the welcome page
	is.True(p.Cookie("aod_session") != nil) // logged in

	p = v.get("/ui/welcome", "X-Forwarded-Proto: https")
	is.Equal(p.Status, http.StatusOK)                                                    // first visit shows the key
	is.True(p.Has("You're all set, ada"))                                                // greeting
	is.True(p.Has("Copy it now — it won't be shown again"))                              // warning
	is.True(p.Has("export AOD_API_TOKEN=aod_"))                                          // export line
	is.True(p.Has("export AOD_API_URL=https://" + strings.TrimPrefix(s.URL, "http://"))) // absolute base from the request
	is.True(p.Has("curl"))                                                               // curl snippets
	is.True(p.Has(`href="/ui/agents"`))                                                  // link to agents
	is.Equal(p.Header.Get("Cache-Control"), "no-store")                                  // never cached
	key := between(p.Body, "export AOD_API_TOKEN=", "\n")
	is.True(strings.HasPrefix(key, "aod_")) // the token line holds the key

	// The key works on the API, and the user has an "Onboarding key".
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/agents", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	is.NoErr(err) // the API answers
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusOK) // the welcome key authenticates
	keys := v.get("/ui/api-keys")
	is.True(keys.Has("Onboarding key")) // listed by its name
	is.True(!keys.Has(key))             // never shown again in full

	p = v.get("/ui/welcome")
	is.Equal(p.Status, http.StatusFound) // later visits
	is.Equal(p.Location(), "/ui/")       // go to the dashboard

	p = v.get("/ui/register")
	is.Equal(p.Status, http.StatusFound) // logged in: no register page
	is.Equal(p.Location(), "/ui/")       // dashboard instead

	p = v.get("/ui/")
	is.Equal(p.Status, http.StatusOK)                                                         // dashboard
	is.True(p.Has("Dashboard"))                                                               // the dashboard heading
	is.True(p.Has("Create agents"))                                                           // the control-plane blurb
	is.True(!p.Has("read-only"))                                                              // nothing is read-only
	is.True(p.Has("API service: Accepting requests"))                                         // the service panel
	is.True(p.Has("Manage API keys"))                                                         // the keys action
	is.True(p.Has(`<span class="number">1</span><span class="label">Active API keys</span>`)) // counts the onboarding key

	p = v.post("/ui/register", url.Values{"username": {"ada"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusFound) // a logged-in POST makes no second account
	is.Equal(p.Location(), "/ui/")       // to the dashboard

	w := s.visitor()
	w.get("/ui/register")
	p = w.post("/ui/register", url.Values{"username": {"ada"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusOK)                           // a taken name re-renders
	is.True(p.Has("A user with that username already exists.")) // with the reason
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}

func TestRegistrationClosed(t *testing.T) {
	t.Parallel()
	s := newSiteWith(t, siteOptions{registration: "closed"})
	is := is.New(t)
	v := s.visitor()
	p := v.get("/ui/register")
	is.Equal(p.Status, http.StatusOK)        // the page says so
	is.True(p.Has("Registration is closed")) // in words
	is.True(!p.Has(`id="id_password1"`))     // and offers no form
	p = v.post("/ui/register", url.Values{"username": {"eve"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusForbidden) // a POST is refused
	_, err := s.DB.UserByName(context.Background(), "eve")
	is.True(err != nil) // and made no user
	p = v.get("/")
	is.True(!p.Has(`href="/ui/register"`)) // nothing links to it
	p = s.user("op").get("/ui/")
	is.Equal(p.Status, http.StatusOK) // users made by the operator still log in
}

func TestLoginLogout(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	_, err := s.DB.RegisterUser(context.Background(), "grace", "s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("wrong password re-renders", func(t *testing.T) {
		is := is.New(t)
		v := s.visitor()
		p := v.get("/ui/login")
		is.Equal(p.Status, http.StatusOK)                               // login page
		is.True(p.Has(`id="id_username"`) && p.Has(`id="id_password"`)) // username and password fields
		p = v.post("/ui/login", url.Values{"username": {"grace"}, "password": {"nope-nope"}})
		is.Equal(p.Status, http.StatusOK)                               // re-rendered
		is.True(p.Has("Please enter a correct username and password.")) // with the error
		is.True(p.Cookie("aod_session") == nil)                         // not logged in
	})
	t.Run("success follows a safe next", func(t *testing.T) {
		is := is.New(t)
		v := s.visitor()
		p := v.get("/ui/agents")
		is.Equal(p.Location(), "/ui/login?next=%2Fui%2Fagents") // sent to login
		p = v.follow(p)
		is.True(p.Has(`name="next" value="/ui/agents"`)) // the form carries next
		p = v.post("/ui/login", url.Values{"username": {"grace"}, "password": {"s3cret-pass"}, "next": {"/ui/agents"}})
		is.Equal(p.Status, http.StatusFound)                // logged in
		is.Equal(p.Location(), "/ui/agents")                // back where they wanted to go
		is.Equal(v.get("/ui/agents").Status, http.StatusOK) // the page now opens
		p = v.get("/ui/login")
		is.Equal(p.Status, http.StatusFound) // logged in: login sends on
	})
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/\x00//evil.example"} {
		t.Run("ignores next "+next, func(t *testing.T) {
			is := is.New(t)
			v := s.visitor()
			v.get("/ui/login")
			p := v.post("/ui/login", url.Values{"username": {"grace"}, "password": {"s3cret-pass"}, "next": {next}})
			is.Equal(p.Status, http.StatusFound) // logged in
			is.Equal(p.Location(), "/ui/")       // but not sent off-site
			for _, c := range p.Location() {
				is.True(c >= 0x20 && c != 0x7f) // no control byte in the header
			}
		})
	}
	t.Run("logout", func(t *testing.T) {
		is := is.New(t)
		v := s.user("lin")
		p := v.post("/ui/logout", nil)
		is.Equal(p.Status, http.StatusFound)                                          // logout redirects
		is.Equal(p.Location(), "/ui/login")                                           // to login
		is.True(p.Cookie("aod_session") != nil && p.Cookie("aod_session").MaxAge < 0) // and clears the cookie
		p = v.follow(p)
		is.Equal(p.Flashes(), []string{"success: You have been logged out."}) // says so
		p = v.get("/ui/")
		is.Equal(p.Status, http.StatusFound)                  // the dashboard
		is.True(strings.HasPrefix(p.Location(), "/ui/login")) // needs a login again
	})
	t.Run("logout needs a CSRF token", func(t *testing.T) {
		is := is.New(t)
		v := s.user("lou")
		p := v.post("/ui/logout", url.Values{"csrf_token": {""}})
		is.Equal(p.Status, http.StatusForbidden)      // refused
		is.Equal(v.get("/ui/").Status, http.StatusOK) // still logged in
	})
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	is := is.New(t)
	if _, err := s.DB.RegisterUser(context.Background(), "target", "s3cret-pass"); err != nil {
		t.Fatal(err)
	}
	v := s.visitor()
	v.get("/ui/login")
	for i := 0; i < 10; i++ {
		p := v.post("/ui/login", url.Values{"username": {"target"}, "password": {"guess-" + string(rune('a'+i))}})
		is.Equal(p.Status, http.StatusOK) // failures re-render
	}
	p := v.post("/ui/login", url.Values{"username": {"target"}, "password": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusTooManyRequests)              // the 11th attempt is refused
	is.True(p.Has("Too many login attempts. Try again later.")) // and says why
	is.True(p.Cookie("aod_session") == nil)                     // even with the right password

	// The same user from elsewhere is throttled too (per username) …
	w := s.visitor()
	w.get("/ui/login")
	p = w.post("/ui/login", url.Values{"username": {"TARGET"}, "password": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusTooManyRequests) // per user, any case
	// … and this address is throttled for every user (per IP).
	if _, err := s.DB.RegisterUser(context.Background(), "bystander", "s3cret-pass"); err != nil {
		t.Fatal(err)
	}
	p = w.post("/ui/login", url.Values{"username": {"bystander"}, "password": {"s3cret-pass"}})
	is.Equal(p.Status, http.StatusTooManyRequests) // per IP
}

// TestCSRF: every POST needs the form's token.
func TestCSRF(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("csrf")
	agent := v.shellAgent("a")
	envPage := v.post("/ui/environments/new", url.Values{"name": {"e"}})
	env := idOf(t, envPage)
	sess := v.startSession(agent, "echo hi")
	s.waitStatus(sess, "completed")
	paths := []string{"/ui/logout", "/ui/api-keys", "/ui/api-keys/1/revoke", "/ui/agents/new", "/ui/agents/" + agent + "/archive",
		"/ui/agents/" + agent + "/sessions", "/ui/environments/new", "/ui/environments/" + env + "/archive",
		"/ui/sessions/" + sess + "/prompt", "/ui/sessions/" + sess + "/terminate"}
	for _, path := range paths {
		for name, tok := range map[string]string{"missing": "", "wrong": "not-the-token"} {
			t.Run(name+" "+path, func(t *testing.T) {
				is := is.New(t)
				form := url.Values{"csrf_token": {tok}, "name": {"x"}, "prompt": {"echo no"}, "runtime": {"shell"}, "model": {"local/shell"}}
				if tok == "" {
					form["csrf_token"] = nil // present, so post adds none, but sent empty-handed
				}
				p := v.post(path, form)
				is.Equal(p.Status, http.StatusForbidden) // refused
				is.True(p.Has("security token"))         // with an explanation
			})
		}
	}
	t.Run("nothing changed", func(t *testing.T) {
		is := is.New(t)
		u, err := s.DB.UserByName(context.Background(), "csrf")
		is.NoErr(err) // the user
		a, err := s.DB.GetAgent(context.Background(), u.ID, agent)
		is.NoErr(err)                // the agent
		is.True(a.ArchivedAt == nil) // is not archived
		st, _ := s.DB.GetSession(context.Background(), "", sess)
		is.Equal(st.Status, "completed") // the session was neither prompted nor terminated
		is.Equal(st.TurnCount, 1)        // one turn
	})
	t.Run("anonymous forms", func(t *testing.T) {
		is := is.New(t)
		w := s.visitor()
		p := w.post("/ui/login", url.Values{"username": {"csrf"}, "password": {"s3cret-pass"}, "csrf_token": {""}})
		is.Equal(p.Status, http.StatusForbidden) // login without a token
		w.get("/ui/login")
		forged := url.Values{"username": {"csrf"}, "password": {"s3cret-pass"}, "csrf_token": {"forged"}}
		is.Equal(w.post("/ui/login", forged).Status, http.StatusForbidden) // with a forged token
		other := s.visitor()
		other.get("/ui/login")
		stolen := url.Values{"username": {"csrf"}, "password": {"s3cret-pass"}, "csrf_token": {other.csrf}}
		is.Equal(w.post("/ui/login", stolen).Status, http.StatusForbidden) // with another browser's token
		p = w.post("/ui/register", url.Values{"username": {"new"}, "password1": {"s3cret-pass"}, "password2": {"s3cret-pass"}, "csrf_token": {""}})
		is.Equal(p.Status, http.StatusForbidden) // register without a token
	})
}

func TestCookieFlags(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, s *site, headers []string, wantSecure bool) {
		is := is.New(t)
		_, err := s.DB.RegisterUser(context.Background(), "cookie", "s3cret-pass")
		is.NoErr(err) // a user for the test
		v := s.visitor()
		p := v.get("/ui/login", headers...)
		anon := p.Cookie("aod_csrf")
		is.True(anon != nil)              // anonymous forms get a CSRF cookie
		is.True(anon.HttpOnly)            // HttpOnly
		is.Equal(anon.Secure, wantSecure) // Secure as the request says
		p = v.post("/ui/login", url.Values{"username": {"cookie"}, "password": {"s3cret-pass"}, "csrf_token": {v.csrf}}, headers...)
		is.Equal(p.Status, http.StatusFound) // logged in
		c := p.Cookie("aod_session")
		is.True(c != nil)                                                     // the login cookie
		is.True(c.HttpOnly)                                                   // not readable by scripts
		is.Equal(c.SameSite, http.SameSiteLaxMode)                            // SameSite=Lax
		is.Equal(c.Path, "/")                                                 // whole site
		is.Equal(c.Secure, wantSecure)                                        // Secure over HTTPS
		is.Equal(c.MaxAge, 14*24*3600)                                        // 14 days
		is.True(strings.Contains(p.Header.Get("Set-Cookie"), "SameSite=Lax")) // on the wire
	}
	t.Run("plain http", func(t *testing.T) { check(t, newSite(t), nil, false) })
	proxied := siteOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	t.Run("behind an https proxy", func(t *testing.T) { check(t, newSiteWith(t, proxied), []string{"X-Forwarded-Proto: https"}, true) })
	t.Run("a forwarded proto from anyone else", func(t *testing.T) { check(t, newSite(t), []string{"X-Forwarded-Proto: https"}, false) })
	t.Run("forced", func(t *testing.T) { check(t, newSiteWith(t, siteOptions{secure: true}), nil, true) })
}

// TestNoCORS: cookie routes never answer cross-origin requests with CORS
// headers (the API does; it takes bearer tokens only).
func TestNoCORS(t *testing.T) {
	t.Parallel()
	s := newRunningSite(t)
	v := s.user("cors")
	agent := v.shellAgent("a")
	sess := v.startSession(agent, "echo hi")
	s.waitStatus(sess, "completed")
	for _, path := range []string{"/", "/ui", "/ui/", "/ui/login", "/ui/agents", "/ui/agents/" + agent, "/ui/sessions/" + sess,
		"/ui/sessions/" + sess + "/stream", "/static/styles.css", "/ui/nowhere"} {
		t.Run(path, func(t *testing.T) {
			is := is.New(t)
			p := v.get(path, "Origin: https://evil.example")
			for k := range p.Header {
				is.True(!strings.HasPrefix(strings.ToLower(k), "access-control-")) // no CORS header
			}
		})
	}
	t.Run("preflight", func(t *testing.T) {
		is := is.New(t)
		p := v.send(http.MethodOptions, "/ui/agents", nil, "Origin: https://evil.example", "Access-Control-Request-Method: POST")
		for k := range p.Header {
			is.True(!strings.HasPrefix(strings.ToLower(k), "access-control-")) // no CORS header on preflight either
		}
	})
	t.Run("POST", func(t *testing.T) {
		is := is.New(t)
		p := v.post("/ui/agents/new", url.Values{"name": {"b"}, "runtime": {"shell"}, "model": {"local/shell"}}, "Origin: https://evil.example")
		for k := range p.Header {
			is.True(!strings.HasPrefix(strings.ToLower(k), "access-control-")) // no CORS header
		}
	})
}

// Behind a trusted proxy, the login throttle and the sign-up throttle
// count the real client (the last X-Forwarded-For hop that is not a
// proxy); from anyone else the header is ignored, so a client cannot
// dodge the throttle by inventing one, nor lock others out through it.
func TestThrottlesCountTheClientBehindATrustedProxy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSiteWith(t, siteOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	v := s.visitor()
	v.get("/ui/login")
	for i := range 10 { // ten failures from one client behind the proxy
		v.post("/ui/login", url.Values{"username": {fmt.Sprintf("who-%d", i)}, "password": {"x"}}, "X-Forwarded-For: 203.0.113.7, 127.0.0.1")
	}
	p := v.post("/ui/login", url.Values{"username": {"someone"}, "password": {"x"}}, "X-Forwarded-For: 203.0.113.7")
	is.Equal(p.Status, http.StatusTooManyRequests) // that client is throttled
	p = v.post("/ui/login", url.Values{"username": {"someone-else"}, "password": {"x"}}, "X-Forwarded-For: 198.51.100.2")
	is.Equal(p.Status, http.StatusOK) // another client behind the same proxy is not

	for i := range 10 { // sign-ups, per client
		w := s.visitor()
		w.get("/ui/register")
		p = w.post("/ui/register", url.Values{"username": {fmt.Sprintf("new%d", i)}, "password1": {"long-enough-1"}, "password2": {"long-enough-1"}},
			"X-Forwarded-For: 192.0.2.44")
		is.Equal(p.Status, http.StatusFound) // accounts made
	}
	w := s.visitor()
	w.get("/ui/register")
	p = w.post("/ui/register", url.Values{"username": {"new10"}, "password1": {"long-enough-1"}, "password2": {"long-enough-1"}}, "X-Forwarded-For: 192.0.2.44")
	is.Equal(p.Status, http.StatusTooManyRequests)                                  // the eleventh from that client is refused
	is.True(p.Has("Too many accounts created from your address. Try again later.")) // saying why
	p = w.post("/ui/register", url.Values{"username": {"other1"}, "password1": {"long-enough-1"}, "password2": {"long-enough-1"}}, "X-Forwarded-For: 192.0.2.45")
	is.Equal(p.Status, http.StatusFound) // another client may still sign up

	plain := newSite(t) // no trusted proxy: the header is the client's to forge, and ignored
	x := plain.visitor()
	x.get("/ui/login")
	for i := range 10 {
		x.post("/ui/login", url.Values{"username": {fmt.Sprintf("who-%d", i)}, "password": {"x"}}, fmt.Sprintf("X-Forwarded-For: 203.0.113.%d", i))
	}
	p = x.post("/ui/login", url.Values{"username": {"someone"}, "password": {"x"}}, "X-Forwarded-For: 198.51.100.99")
	is.Equal(p.Status, http.StatusTooManyRequests) // a new forwarded-for does not dodge the throttle
}

// The dashboard says where the server runs sessions: on Sprites with the
// Sprites backend, in bubblewrap or without a sandbox on this server.
func TestDashboardSaysWhereSessionsRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	spritesfake.RequireExec(t)
	s := newSiteWith(t, siteOptions{run: true, sandbox: runner.SandboxSprites})
	v := s.visitor()
	v.register("dana")
	p := v.get("/ui/")
	is.Equal(p.Status, http.StatusOK)
	is.True(p.HasText("Where sessions run"))                        // the panel
	is.True(p.HasText("On Fly.io Sprites: each session gets a VM")) // naming the backend

	local := newSiteWith(t, siteOptions{run: true, sandbox: runner.SandboxNone})
	v = local.visitor()
	v.register("erin")
	is.True(v.get("/ui/").HasText("as plain processes without a sandbox"))     // or saying there is none
	is.True(!newSite(t).user("fay").get("/ui/").HasText("Where sessions run")) // a server that runs nothing says nothing
}
