package ui_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
	"github.com/matryer/is"
)

// newHookSite starts a site whose operator allows webhooks to 127.0.0.1
// (--egress-allow, for the UI's check and for the sending), so a test's
// own endpoint can receive deliveries. Sessions never run.
func newHookSite(t *testing.T) *site {
	t.Helper()
	rule, err := egress.ParseRule("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return &site{apitest.New(t, apitest.Options{Heartbeat: time.Second, EgressAllow: []string{"127.0.0.1"},
		UI: &ui.Config{EgressAllow: []egress.Rule{rule}}})}
}

var (
	secretRE    = regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`)
	hookLinkRE  = regexp.MustCompile(`href="/ui/webhooks/([0-9a-f-]{36})"`)
	redeliverRE = regexp.MustCompile(`action="/ui/webhooks/[0-9a-f-]{36}/deliveries/([0-9a-f-]{36})/redeliver"`)
)

// secret is the webhook secret shown on the page, "" when none is.
func (p page) secret() string { return secretRE.FindString(html.UnescapeString(p.Body)) }

// addWebhook submits the create form and returns the secret it shows and
// the new webhook's id (the last one listed: ids grow with time). No
// events: every event.
func (v *visitor) addWebhook(rawURL string, events ...string) (secret, id string) {
	v.s.T().Helper()
	if len(events) == 0 {
		events = store.WebhookEvents
	}
	v.get("/ui/webhooks")
	p := v.post("/ui/webhooks", url.Values{"url": {rawURL}, "events": events})
	secret = p.secret()
	links := hookLinkRE.FindAllStringSubmatch(p.Body, -1)
	if p.Status != http.StatusOK || secret == "" || len(links) == 0 {
		v.s.T().Fatalf("create webhook %s: %d %.500s", rawURL, p.Status, p.Body)
	}
	return secret, links[len(links)-1][1]
}

// TestWebhooksPage: the list and its create form. A refused form is shown
// again with the API's reason (never a 500) and makes nothing; a created
// webhook's secret is shown once, with how to verify signatures, and never
// again on any page.
func TestWebhooksPage(t *testing.T) {
	t.Parallel()
	s := newHookSite(t)
	v := s.user("hooks")
	is := is.New(t)

	p := v.get("/ui/webhooks")
	is.Equal(p.Status, http.StatusOK)                                         // the webhooks page
	is.True(p.Has(`<a href="/ui/webhooks" aria-current="page">Webhooks</a>`)) // in the nav, marked current
	is.True(p.Has("No webhooks yet."))                                        // empty state
	is.True(p.Has(`<label for="id_url">Endpoint URL</label>`))                // the URL field is labelled
	is.True(p.Has(`<label for="id_description">`))                            // and the description
	is.True(p.Has("<legend>Events</legend>"))                                 // the checkboxes are one named group
	for _, e := range store.WebhookEvents {
		is.True(p.Has(`value="` + e + `" checked>`)) // every event ticked by default
	}
	is.True(!p.Has("whsec_"))                                                 // no secret before one is created
	is.True(v.get("/ui/api-keys").Has(`<a href="/ui/webhooks">Webhooks</a>`)) // the nav links here from the API keys page

	all := store.WebhookEvents
	for _, c := range []struct {
		name   string
		form   url.Values
		reason string
	}{
		{"no URL", url.Values{"url": {" "}, "events": all}, "This field is required."},
		{"not http", url.Values{"url": {"ftp://example.com/"}, "events": all}, "url must be an http or https URL with a host and no credentials"},
		{"not a URL", url.Values{"url": {"not a url"}, "events": all}, "url must be an http or https URL"},
		{"credentials", url.Values{"url": {"https://user:pw@example.com/"}, "events": all}, "url must be an http or https URL"},
		{"a private address", url.Values{"url": {"http://10.1.2.3/x"}, "events": all}, "Webhook url is not allowed: private address"},
		{"a link-local address", url.Values{"url": {"http://169.254.169.254/latest"}, "events": all}, "Webhook url is not allowed: link-local address"},
		{"a loopback address the operator did not allow", url.Values{"url": {"http://[::1]:8080/"}, "events": all}, "Webhook url is not allowed: loopback address"},
		{"no event", url.Values{"url": {"https://hooks.example/aod"}}, "Choose at least one event."},
		{"an unknown event", url.Values{"url": {"https://hooks.example/aod"}, "events": {"session.exploded"}}, "event must be one of"},
		{"a long description", url.Values{"url": {"https://hooks.example/aod"}, "events": all, "description": {strings.Repeat("d", 501)}},
			"Ensure this value has at most 500 characters (it has 501)."},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			p := v.post("/ui/webhooks", c.form)
			is.Equal(p.Status, http.StatusOK)            // re-rendered, never a 500
			is.True(p.Has(`<ul class="errorlist"><li>`)) // with an error under its field
			is.True(p.Has(c.reason))                     // saying why
			is.True(!p.Has("whsec_"))                    // and no secret
			if u := strings.TrimSpace(c.form.Get("url")); u != "" {
				is.True(p.Has(`value="` + u + `"`)) // keeping what was typed
			}
		})
	}
	p = v.post("/ui/webhooks", url.Values{"url": {"ftp://hooks.example/"}, "events": {"session.failed"}})
	is.True(p.Has(`value="session.failed" checked>`)) // a re-rendered form keeps the ticked boxes
	is.True(p.Has(`value="session.running">`))        // and the cleared ones
	hooks, err := s.DB.ListWebhooks(context.Background(), userID(t, s, "hooks"))
	is.NoErr(err)           // list
	is.Equal(len(hooks), 0) // no refused form made a webhook

	p = v.post("/ui/webhooks", url.Values{"url": {" https://hooks.example/aod "}, "description": {"ci"},
		"events": {"session.completed", "session.failed"}})
	is.Equal(p.Status, http.StatusOK) // create re-renders 200
	is.Equal(p.Flashes(), []string{"success: Webhook created — copy its secret now, it won't be shown again."})
	secret := p.secret()
	is.True(secret != "")                                                                // the secret is on the page
	is.True(p.Has(`<code class="secret" id="new-webhook-secret">` + secret + `</code>`)) // in the reveal box
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	is.NoErr(err)                                                                                        // base64 after whsec_
	is.True(len(key) >= 16)                                                                              // a real key
	is.True(p.HasText("Verifying a delivery"))                                                           // how to verify
	is.True(p.HasText("webhook-id") && p.HasText("webhook-timestamp") && p.HasText("webhook-signature")) // names the headers
	is.True(p.HasText("{webhook-id}.{webhook-timestamp}.{body}"))                                        // what is signed
	is.True(p.HasText("HMAC-SHA256"))                                                                    // and how
	is.Equal(p.Header.Get("Cache-Control"), "no-store")                                                  // never cached
	is.True(p.Has(`value="session.running" checked>`))                                                   // the form is fresh again
	is.True(p.Has(`name="url" id="id_url" maxlength="2048" value=""`))                                   // and empty
	is.True(p.Has(">https://hooks.example/aod</a>"))                                                     // the table lists the URL, trimmed
	is.True(p.Has("<code>session.completed</code>, <code>session.failed</code>"))                        // its events
	is.True(p.Has(">ci<"))                                                                               // and description

	p = v.get("/ui/webhooks")
	is.True(!p.Has(secret))                          // never shown again
	is.True(!p.Has("whsec_"))                        // nor any secret
	is.True(!p.HasText("Verifying a delivery"))      // the explanation goes with it
	is.True(p.Has(">https://hooks.example/aod</a>")) // the webhook is listed
	id := hookLinkRE.FindStringSubmatch(p.Body)[1]
	p = v.get("/ui/webhooks/" + id)
	is.Equal(p.Status, http.StatusOK)    // its page
	is.True(!p.Has("whsec_"))            // holds no secret either
	is.True(p.Has("No deliveries yet.")) // nothing sent yet

	_, id2 := v.addWebhook("http://127.0.0.1:9/aod") // the operator allows 127.0.0.1
	p = v.get("/ui/webhooks")
	is.True(p.Has(">http://127.0.0.1:9/aod</a>")) // so the UI takes it, as the API does
	is.True(p.Has("<td>all</td>"))                // subscribed to every event

	p = v.post("/ui/webhooks/"+id2+"/delete", nil)
	is.Equal(p.Status, http.StatusFound)   // delete redirects
	is.Equal(p.Location(), "/ui/webhooks") // to the list
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Webhook deleted."}) // says so
	is.True(!p.Has("127.0.0.1:9"))                               // and it is gone
	is.Equal(v.get("/ui/webhooks/"+id2).Status, http.StatusNotFound)
	is.Equal(v.post("/ui/webhooks/"+id2+"/delete", nil).Status, http.StatusNotFound) // deleting it again is a 404

	is.True(v.get("/ui/docs").Has(`<h2 id="webhooks">Webhooks</h2>`)) // the page's reference link has a target

	busy := s.user("busy")
	for i := range store.MaxWebhooksPerUser {
		_, err := s.DB.CreateWebhook(context.Background(), userID(t, s, "busy"), fmt.Sprintf("https://h%d.example/", i), nil, "")
		is.NoErr(err) // webhooks up to the limit
	}
	busy.get("/ui/webhooks")
	p = busy.post("/ui/webhooks", url.Values{"url": {"https://one-more.example/"}, "events": all})
	is.Equal(p.Status, http.StatusOK)                                                           // one more re-renders
	is.True(p.Has("A user may have at most 20 webhooks"))                                       // with the limit, for the whole form
	is.True(p.Has(`name="url" id="id_url" maxlength="2048" value="https://one-more.example/"`)) // keeping the URL
	is.True(!p.Has("whsec_"))                                                                   // and no secret
}

// TestWebhooksAreTheOwners: another user's webhook is a 404 on every
// page and action; anonymous visitors are sent to log in; a malformed id
// is a 404 and delete is POST only.
func TestWebhooksAreTheOwners(t *testing.T) {
	t.Parallel()
	s := newHookSite(t)
	v := s.user("owner")
	_, id := v.addWebhook("https://owner.example/hook", store.EventSessionCompleted)
	is := is.New(t)
	const someDelivery = "0195a0c0-0000-7000-8000-000000000001"

	other := s.user("intruder")
	p := other.get("/ui/webhooks/" + id)
	is.Equal(p.Status, http.StatusNotFound)                                                                            // someone else's webhook page is a 404
	is.True(p.Has("Page not found"))                                                                                   // the HTML 404 page
	is.True(!p.Has("owner.example"))                                                                                   // saying nothing of it
	is.True(!other.get("/ui/webhooks").Has("owner.example"))                                                           // nor is it listed
	is.Equal(other.post("/ui/webhooks/"+id+"/delete", nil).Status, http.StatusNotFound)                                // nor deleted
	is.Equal(other.post("/ui/webhooks/"+id+"/deliveries/"+someDelivery+"/redeliver", nil).Status, http.StatusNotFound) // nor redelivered
	_, err := s.DB.GetWebhook(context.Background(), userID(t, s, "owner"), id)
	is.NoErr(err) // it is still there

	is.Equal(v.get("/ui/webhooks/nope").Status, http.StatusNotFound)                                               // a malformed id
	is.Equal(v.post("/ui/webhooks/"+id+"/deliveries/nope/redeliver", nil).Status, http.StatusNotFound)             // a malformed delivery id
	is.Equal(v.post("/ui/webhooks/"+id+"/deliveries/"+someDelivery+"/redeliver", nil).Status, http.StatusNotFound) // an unknown delivery
	is.Equal(v.get("/ui/webhooks/"+id+"/delete").Status, http.StatusMethodNotAllowed)                              // delete is POST only

	anon := s.visitor()
	for _, path := range []string{"/ui/webhooks", "/ui/webhooks/" + id} {
		p := anon.get(path)
		is.Equal(p.Status, http.StatusFound)                            // anonymous
		is.Equal(p.Location(), "/ui/login?next="+url.QueryEscape(path)) // sent to log in
	}
	for _, path := range []string{"/ui/webhooks", "/ui/webhooks/" + id + "/delete", "/ui/webhooks/" + id + "/deliveries/" + someDelivery + "/redeliver"} {
		p := anon.post(path, url.Values{"csrf_token": {"x"}})
		is.Equal(p.Status, http.StatusFound) // an anonymous POST
		is.Equal(p.Location(), "/ui/login")  // too
	}
}

// endpoint is a webhook receiver on 127.0.0.1 that can be told to hold
// its next request until released.
type endpoint struct {
	*httptest.Server
	mu     sync.Mutex
	secret string        // the webhook's, set once it is created
	got    []http.Header // each request's headers, signature checked
	bad    int           // requests whose signature did not verify
	hold   chan struct{} // when set, the next request waits on it
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		hold := e.hold
		e.hold = nil
		e.mu.Unlock()
		if hold != nil {
			<-hold
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.got = append(e.got, r.Header.Clone())
		if !signedBy(e.secret, r.Header, body) {
			e.bad++
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) count() (got, bad int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got), e.bad
}

// holdNext makes the next request wait until the returned func is called
// (at the latest when the test ends).
func (e *endpoint) holdNext(t *testing.T) func() {
	ch := make(chan struct{})
	e.mu.Lock()
	e.hold = ch
	e.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return release
}

// signedBy checks a delivery the way the page tells readers to: the key is
// the secret's base64 after "whsec_", the signature "v1," and the base64
// HMAC-SHA256 of "id.timestamp.body".
func signedBy(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	io.WriteString(m, h.Get("webhook-id")+"."+h.Get("webhook-timestamp")+".")
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// TestWebhookDeliveries: terminating a session sends its webhook a
// delivery signed with the secret the page showed; the webhook's page
// lists it (event, session link, status, attempts, response, times), and
// Redeliver (POST with the CSRF token) puts it back to pending until the
// endpoint answers again.
func TestWebhookDeliveries(t *testing.T) {
	t.Parallel()
	s := newHookSite(t)
	v := s.user("deliver")
	is := is.New(t)
	ep := newEndpoint(t)
	secret, id := v.addWebhook(ep.URL+"/aod", store.EventSessionTerminated)
	ep.mu.Lock()
	ep.secret = secret // the one the page showed
	ep.mu.Unlock()

	agent := v.shellAgent("a")
	sess := v.startSession(agent, "echo hi") // never runs on this site
	v.get("/ui/sessions/" + sess)
	is.Equal(v.post("/ui/sessions/"+sess+"/terminate", nil).Status, http.StatusFound) // terminated from its page

	hookPage := "/ui/webhooks/" + id
	var p page
	settled := testkit.Eventually(30*time.Second, func() bool {
		p = v.get(hookPage)
		return p.Has(`<span class="status-pill status-succeeded">succeeded</span>`)
	})
	is.True(settled) // the delivery arrived and is recorded as succeeded
	got, bad := ep.count()
	is.Equal(got, 1)                                                                         // one request
	is.Equal(bad, 0)                                                                         // signed with the secret the page showed
	is.True(p.Has("<td><code>session.terminated</code></td>"))                               // the event
	is.True(p.Has(`<a href="/ui/sessions/` + sess + `"><code>` + sess[:8] + "…</code></a>")) // a link to the session
	is.True(p.Has("<td>1</td>"))                                                             // one attempt
	is.True(p.Has("<td>200</td>"))                                                           // the endpoint's answer
	is.True(strings.Count(p.Body, " UTC</td>") >= 2)                                         // when it was made and last tried
	m := redeliverRE.FindStringSubmatch(p.Body)
	is.True(m != nil) // a Redeliver button
	delivery := m[1]
	redeliver := hookPage + "/deliveries/" + delivery + "/redeliver"

	for name, tok := range map[string]string{"missing": "", "wrong": "not-the-token"} {
		for action, path := range map[string]string{"create": "/ui/webhooks", "delete": hookPage + "/delete", "redeliver": redeliver} {
			t.Run(action+" with a "+name+" token", func(t *testing.T) {
				is := is.New(t)
				form := url.Values{"csrf_token": {tok}, "url": {"https://csrf.example/"}, "events": store.WebhookEvents}
				if tok == "" {
					form["csrf_token"] = nil // present, so post adds none, but sent empty-handed
				}
				p := v.post(path, form)
				is.Equal(p.Status, http.StatusForbidden) // refused
				is.True(p.Has("security token"))         // with an explanation
			})
		}
	}
	v.get(hookPage) // the page's token again
	list, err := s.DB.ListDeliveries(context.Background(), userID(t, s, "deliver"), id)
	is.NoErr(err)                                     // the webhook is still there
	is.Equal(len(list), 1)                            // with its delivery
	is.Equal(list[0].Status, store.DeliverySucceeded) // not queued again by a refused POST
	hooks, err := s.DB.ListWebhooks(context.Background(), userID(t, s, "deliver"))
	is.NoErr(err)           // list
	is.Equal(len(hooks), 1) // and no webhook was made

	release := ep.holdNext(t) // the endpoint keeps the next delivery waiting
	p = v.post(redeliver, nil)
	is.Equal(p.Status, http.StatusFound) // redeliver redirects
	is.Equal(p.Location(), hookPage)     // back to the webhook's page
	p = v.follow(p)
	is.Equal(p.Flashes(), []string{"success: Delivery queued: it is sent again now."}) // says so
	is.True(p.Has(`<span class="status-pill status-pending">pending</span>`))          // pending again
	list, err = s.DB.ListDeliveries(context.Background(), userID(t, s, "deliver"), id)
	is.NoErr(err)
	is.Equal(list[0].Status, store.DeliveryPending) // in the store too

	release()
	settled = testkit.Eventually(30*time.Second, func() bool {
		p = v.get(hookPage)
		return p.Has(`<span class="status-pill status-succeeded">succeeded</span>`)
	})
	is.True(settled) // sent again, and succeeded
	got, bad = ep.count()
	is.Equal(got, 2)             // a second request
	is.Equal(bad, 0)             // signed as well
	is.True(p.Has("<td>2</td>")) // two attempts now
}

// The API keys and Webhooks forms show their request as curl: the method,
// this server's path and the form's values, never a secret.
func TestKeyAndWebhookFormsShowCurl(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSite(t)
	v := s.user("ivy")
	p := v.get("/ui/api-keys")
	is.True(p.Has("curl -X POST " + s.URL + "/api-keys")) // the route
	is.True(p.Has(`"name": "<label>"`))                   // a placeholder for the empty label
	p = v.post("/ui/api-keys", url.Values{"name": {"laptop"}})
	is.True(p.Has(`"name": "<label>"`)) // the fresh form after a create
	p = v.get("/ui/webhooks")
	is.True(p.Has("curl -X POST " + s.URL + "/webhooks")) // the route
	is.True(!p.Has(`"events": [`))                        // every event: the default, left out
	p = v.post("/ui/webhooks", url.Values{"url": {"http://10.0.0.1/hook"}, "events": {"session.failed"}, "description": {"CI"}})
	is.True(p.Has(`"url": "http://10.0.0.1/hook"`)) // a refused form's values
	is.True(p.Has(`"session.failed"`))              // the ticked event
	is.True(p.Has(`"description": "CI"`))
	is.True(!p.Has("whsec_")) // no secret anywhere
}
