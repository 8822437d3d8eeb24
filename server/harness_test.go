package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/runner"
	"github.com/aod/aod/server"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// api is a real aod server on 127.0.0.1:<random port> over a fresh data dir
// in t.TempDir(), driven over HTTP.
type api struct {
	t    *testing.T
	URL  string
	DB   *store.DB
	Dir  string
	HTTP *http.Client
	Fake *fakemodel.Server // the model API every agent CLI talks to
}

// apiOptions adjust the server a test starts.
type apiOptions struct {
	maxConcurrent int           // default per-user session limit (0 = none)
	maxRunning    int           // runner concurrency (default 4)
	stale         time.Duration // SSE stale interval (default 600s)
	heartbeat     time.Duration // SSE heartbeat (default 15s)
	// keyless makes sessions of every provider start without a model key
	// (as aod serve --fake-model does).
	keyless bool
}

func newAPI(t *testing.T) *api { return newAPIWith(t, apiOptions{}) }

// newAPIWith starts the server with the real session runner: sessions run
// as real processes in sprites under the temp data dir (bubblewrap when it
// works here, else plain process groups).
func newAPIWith(t *testing.T, o apiOptions) *api {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	// Agent CLIs always talk to a fake model API here, never the network.
	fake := fakemodel.New(nil)
	fakeSrv := httptest.NewServer(fake)
	t.Cleanup(fakeSrv.Close)
	run, err := runner.New(db, runner.Config{DataDir: dir, MaxRunning: o.maxRunning, KillGrace: 200 * time.Millisecond,
		RuntimeDir: testRuntimeDir(t), ModelEndpoints: runner.ModelEndpoints{Anthropic: fakeSrv.URL, OpenAI: fakeSrv.URL, Gemini: fakeSrv.URL}})
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	if err := run.Start(context.Background()); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	policy := store.SessionPolicy{MaxConcurrent: o.maxConcurrent}
	if o.keyless {
		policy.Keyless = func(string) bool { return true }
	}
	ts := httptest.NewServer(server.New(db, sessions.New(db, run, policy), server.Config{
		Version: "test", Stream: sse.Config{Heartbeat: o.heartbeat, Stale: o.stale},
	}))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		run.Shutdown(context.Background(), 0)
		db.Close()
	})
	return &api{t: t, URL: ts.URL, DB: db, Dir: dir, HTTP: ts.Client(), Fake: fake}
}

// testRuntimeDir is where tests install the agent CLIs from npm: a cache
// shared by all tests and runs (hundreds of MB per CLI; the runner installs
// each version once, atomically, under a cross-process lock), set with
// AOD_TEST_RUNTIME_DIR or else under the system temp dir.
func testRuntimeDir(t *testing.T) string {
	if d := os.Getenv("AOD_TEST_RUNTIME_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "aod-test-runtimes")
}

// token creates (or reuses) user name and returns a fresh API token for it.
func (a *api) token(name string) string {
	a.t.Helper()
	u, err := a.DB.EnsureUser(context.Background(), name)
	if err != nil {
		a.t.Fatalf("ensure user: %v", err)
	}
	_, raw, err := a.DB.CreateAPIKey(context.Background(), u.ID, "test", nil)
	if err != nil {
		a.t.Fatalf("create key: %v", err)
	}
	return raw
}

// response is what a request returned; Body is the decoded JSON (nil when
// the body is not JSON) and Raw the bytes.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   any
}

// obj returns the body as a JSON object (empty when it is not one).
func (r response) obj() map[string]any {
	m, _ := r.Body.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// data returns the "data" list of a list response.
func (r response) data() []any {
	l, _ := r.obj()["data"].([]any)
	return l
}

// detail returns a string detail, or the JSON of a list detail.
func (r response) detail() string {
	switch d := r.obj()["detail"].(type) {
	case string:
		return d
	case nil:
		return ""
	default:
		b, _ := json.Marshal(d)
		return string(b)
	}
}

// do sends a request. body may be nil, a string (sent verbatim) or any value
// (sent as JSON). token "" sends no Authorization header.
func (a *api) do(method, path, token string, body any) response {
	a.t.Helper()
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
			a.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, a.URL+path, rd)
	if err != nil {
		a.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatalf("read body: %v", err)
	}
	r := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			r.Body = v
		}
	}
	return r
}

// mustCreate POSTs body to path and returns the created object's id,
// failing the test unless the status is 201.
func (a *api) mustCreate(path, token string, body any) map[string]any {
	a.t.Helper()
	r := a.do("POST", path, token, body)
	if r.Status != http.StatusCreated {
		a.t.Fatalf("POST %s: status %d, body %s", path, r.Status, r.Raw)
	}
	return r.obj()
}

// scenario is one row of a table-driven API test. A path may contain {id},
// replaced by the id the table's setup produced. wantDetail, when set, must
// be contained in the detail (string, or the JSON of a list detail).
type scenario struct {
	name       string
	method     string
	path       string
	token      string // "" = no auth; use the table's default by setting auth
	body       any
	wantStatus int
	wantDetail string
	check      func(is *is.I, r response)
}

// run runs the scenarios in order as subtests, replacing {id} in paths.
func (a *api) run(t *testing.T, id string, rows []scenario) {
	t.Helper()
	for _, sc := range rows {
		t.Run(sc.name, func(t *testing.T) {
			is := is.New(t)
			r := a.do(sc.method, strings.ReplaceAll(sc.path, "{id}", id), sc.token, sc.body)
			is.Equal(r.Status, sc.wantStatus) // status
			if sc.wantStatus != http.StatusNoContent && len(r.Raw) > 0 {
				is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
			}
			if sc.wantDetail != "" {
				is.True(strings.Contains(r.detail(), sc.wantDetail)) // detail contains the wanted text
			}
			if sc.check != nil {
				sc.check(is, r)
			}
		})
	}
}
