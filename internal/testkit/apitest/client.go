package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/matryer/is"
)

// Patience bounds every wait for a session or a stream. It is a guard
// against hangs, not a latency assertion.
const Patience = 60 * time.Second

// Client drives an aod server's API over HTTP for a test; its helpers fail
// the test on transport errors and unexpected statuses.
type Client struct {
	t    testing.TB
	URL  string // the server's base URL
	HTTP *http.Client
	// checks holds every response to the OpenAPI document (see openapi.go).
	checks *responseChecks
}

// NewClient drives the server at base (e.g. a child `aod serve`).
func NewClient(t testing.TB, base string) *Client {
	return &Client{t: t, URL: base, HTTP: &http.Client{}, checks: newResponseChecks(t)}
}

// T is the test the client fails.
func (c *Client) T() testing.TB { return c.t }

// Response is what a request returned; Body is the decoded JSON (nil when
// the body is not JSON) and Raw the bytes.
type Response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   any
}

// Obj returns the body as a JSON object (empty when it is not one).
func (r Response) Obj() map[string]any {
	m, _ := r.Body.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// Data returns the "data" list of a list response.
func (r Response) Data() []any {
	l, _ := r.Obj()["data"].([]any)
	return l
}

// Detail returns a string detail, or the JSON of a list detail.
func (r Response) Detail() string {
	switch d := r.Obj()["detail"].(type) {
	case string:
		return d
	case nil:
		return ""
	default:
		b, _ := json.Marshal(d)
		return string(b)
	}
}

// Do sends a request. body may be nil, a string or []byte (sent verbatim)
// or any value (sent as JSON). token "" sends no Authorization header.
func (c *Client) Do(method, path, token string, body any) Response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(enc)
	}
	headers := map[string]string{}
	if body != nil {
		headers["Content-Type"] = "application/json"
	}
	if token != "" {
		headers["Authorization"] = "Bearer " + token
	}
	return c.Send(method, path, headers, rd)
}

// Send sends a request with exactly the given headers (no Authorization
// unless given), for what Do cannot express.
func (c *Client) Send(method, path string, headers map[string]string, body io.Reader) Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.URL+path, body)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	c.checks.response(method, path, res.StatusCode, res.Header.Get("Content-Type"), raw)
	r := Response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			r.Body = v
		}
	}
	return r
}

// MustCreate POSTs body to path and returns the created object, failing
// the test unless the status is 201.
func (c *Client) MustCreate(path, token string, body any) map[string]any {
	c.t.Helper()
	r := c.Do("POST", path, token, body)
	if r.Status != http.StatusCreated {
		c.t.Fatalf("POST %s: status %d, body %s", path, r.Status, r.Raw)
	}
	return r.Obj()
}

// Scenario is one row of a table-driven API test. A path may contain {id},
// replaced by the id the table's setup produced. WantDetail, when set, must
// be contained in the detail (string, or the JSON of a list detail).
type Scenario struct {
	Name       string
	Method     string
	Path       string
	Token      string // "" = no auth
	Body       any
	WantStatus int
	WantDetail string
	Check      func(is *is.I, r Response)
}

// Run runs the scenarios in order as subtests, replacing {id} in paths.
func (c *Client) Run(t *testing.T, id string, rows []Scenario) {
	t.Helper()
	for _, sc := range rows {
		t.Run(sc.Name, func(t *testing.T) {
			is := is.New(t)
			r := c.Do(sc.Method, strings.ReplaceAll(sc.Path, "{id}", id), sc.Token, sc.Body)
			is.Equal(r.Status, sc.WantStatus) // status
			if sc.WantStatus != http.StatusNoContent && len(r.Raw) > 0 {
				is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
			}
			if sc.WantDetail != "" {
				is.True(strings.Contains(r.Detail(), sc.WantDetail)) // detail contains the wanted text
			}
			if sc.Check != nil {
				sc.Check(is, r)
			}
		})
	}
}

// StreamOptions say how to read a session's stream.
type StreamOptions struct {
	Query  string            // e.g. "?since=3"
	Header map[string]string // extra request headers, e.g. Last-Event-ID
	// Stop, when set, hangs up once it returns true for an event.
	Stop func(testkit.Frame) bool
	// Patience bounds the whole read (default Patience); a stream that
	// does not end within it fails the test.
	Patience time.Duration
}

// Stream reads session id's stream with token as o says. A stream that
// breaks off or does not end in time fails the test.
func (c *Client) Stream(token, id string, o StreamOptions) testkit.Transcript {
	c.t.Helper()
	target := "/sessions/" + id + "/stream" + o.Query
	s := ReadStream(c.t, c.HTTP, c.URL+target, token, o)
	c.checks.response(http.MethodGet, target, s.Status, s.Header.Get("Content-Type"), streamBody(s))
	if s.Status == http.StatusOK {
		events := make([][]byte, len(s.Events))
		for i, f := range s.Events {
			events[i] = []byte(f.Text)
		}
		c.checks.streamEvents(target, events)
	}
	return s
}

// streamBody is what the OpenAPI check sees of a stream's body: a JSON
// answer whole; of an event stream nothing, its events being checked one
// by one.
func streamBody(s testkit.Transcript) []byte {
	if s.Status == http.StatusOK {
		return nil
	}
	return s.Raw
}

// ReadStream reads the event stream at url with client, sending token
// when it is not "" and o's headers; o.Query is already part of url. A
// stream that breaks off or does not end in time fails t.
func ReadStream(t testing.TB, client *http.Client, url, token string, o StreamOptions) testkit.Transcript {
	t.Helper()
	patience := o.Patience
	if patience == 0 {
		patience = Patience
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	for k, v := range o.Header {
		header[k] = v
	}
	req, err := testkit.Get(ctx, url, header)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	s, err := testkit.Read(client, req, o.Stop)
	if err != nil {
		if s.Status == 0 {
			t.Fatalf("GET %s: %v", url, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s did not end within %s; events so far: %v", url, patience, s.Types())
		}
		t.Fatalf("stream %s broke off: %v; events so far: %v", url, err, s.Types())
	}
	return s
}

// Finish reads session id's stream to its terminal event and returns the
// whole stream, failing the test unless it got one.
func (c *Client) Finish(token, id string) testkit.Transcript {
	c.t.Helper()
	s := c.Stream(token, id, StreamOptions{})
	if s.Status != http.StatusOK || !s.Last().Terminal() {
		c.t.Fatalf("stream of session %s: status %d, events %v, body %s", id, s.Status, s.Types(), s.Raw)
	}
	return s
}

// ShellAgent creates token's shell agent (a session's prompt runs as a
// bash script) with extra fields kv and returns its id.
func (c *Client) ShellAgent(token string, kv ...any) string {
	c.t.Helper()
	body := map[string]any{"name": "sh", "runtime": "shell", "model": "local/shell"}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	id, _ := c.MustCreate("/agents", token, body)["id"].(string)
	return id
}

// SessionBody is a create body for agent with prompt and extra fields kv.
func SessionBody(agent, prompt string, kv ...any) map[string]any {
	body := map[string]any{"agent_id": agent, "prompt": prompt}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	return body
}

// StartSession creates a session and returns its id, failing the test
// unless the answer is 202.
func (c *Client) StartSession(token string, body map[string]any) string {
	c.t.Helper()
	r := c.Do("POST", "/sessions", token, body)
	if r.Status != http.StatusAccepted {
		c.t.Fatalf("POST /sessions: status %d, body %s", r.Status, r.Raw)
	}
	id, _ := r.Obj()["id"].(string)
	return id
}

// Session returns the session as the API shows it, failing unless 200.
func (c *Client) Session(token, id string) map[string]any {
	c.t.Helper()
	r := c.Do("GET", "/sessions/"+id, token, nil)
	if r.Status != http.StatusOK {
		c.t.Fatalf("GET /sessions/%s: status %d, body %s", id, r.Status, r.Raw)
	}
	return r.Obj()
}

// SessionCount is the number of sessions token's user has.
func (c *Client) SessionCount(token string) int {
	c.t.Helper()
	r := c.Do("GET", "/sessions", token, nil)
	if r.Status != http.StatusOK {
		c.t.Fatalf("GET /sessions: status %d, body %s", r.Status, r.Raw)
	}
	return len(r.Data())
}

// WaitStatus polls the session until its status is one of want and
// returns it; Patience is a hang guard.
func (c *Client) WaitStatus(token, id string, want ...string) map[string]any {
	c.t.Helper()
	var s map[string]any
	if !testkit.Eventually(Patience, func() bool {
		s = c.Session(token, id)
		return slices.Contains(want, fmt.Sprint(s["status"]))
	}) {
		c.t.Fatalf("session %s still %v after %s, want one of %v", id, s["status"], Patience, want)
	}
	return s
}
