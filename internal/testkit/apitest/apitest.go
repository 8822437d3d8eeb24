// Package apitest starts the real aod server for a test: store, session
// use cases, API and (optionally) web UI over a fresh data dir in
// t.TempDir(), on 127.0.0.1:<random port>, with either the real session
// runner (real processes in real sprites) or a Recorder that runs nothing.
// Its Client drives any aod server over HTTP, this one or `aod serve`.
package apitest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/runner"
	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/remote"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/runner/sprites"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/aod/aod/server"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
	"golang.org/x/crypto/bcrypt"
)

// RunnerKind says what runs the sessions a test creates.
type RunnerKind int

const (
	// Recording runs nothing: sessions stay as the store has them and the
	// Recorder keeps what the use cases told it. For tests of validation,
	// ownership and the like, which never need a session to run.
	Recording RunnerKind = iota
	// RealRunner runs sessions as real processes in sprites under the data
	// dir (bubblewrap when it works here, else plain process groups), with
	// every agent CLI pointed at an in-process fake model API.
	RealRunner
)

// Options adjust the server a test starts; the zero value is a recording
// API server without UI.
type Options struct {
	Runner        RunnerKind
	MaxConcurrent int           // default per-user session limit (0: none)
	MaxRunning    int           // real runner concurrency (0: the runner's default)
	Sandbox       string        // real runner sandbox ("": auto)
	Heartbeat     time.Duration // SSE heartbeat (0: sse's default)
	// StreamWriteTimeout, MaxStreamsPerUser and MaxStreams are the
	// streams' (see sse.Config; 0: its defaults).
	StreamWriteTimeout time.Duration
	// FakeScript is what the fake model API answers (nil: "fake reply
	// to: …" for everything).
	FakeScript        *fakemodel.Script
	MaxStreamsPerUser int
	MaxStreams        int
	Stale             time.Duration // SSE stale interval (0: sse's default)
	// Keyless, when set, is the policy's providers that need no model key
	// (as aod serve --fake-model has it).
	Keyless func(provider string) bool
	// WarmSprites is the real runner's warm pool (0: none, so tests that
	// start many servers do not each keep sandboxes started; the P1
	// benchmark asks for the server's default).
	WarmSprites int
	// UI, when set, mounts the web UI with this configuration (its Stream
	// and Logger are the server's).
	UI *ui.Config
	// EgressAllow, EgressResolver and EgressDial are the real runner's
	// (see runner.Config): a test points sprites' egress at its own servers.
	EgressAllow    []string
	EgressResolver egress.Resolver
	EgressDial     func(ctx context.Context, network, address string) (net.Conn, error)
	// SweepInterval is the real runner's (0: its default).
	SweepInterval time.Duration
	// SpritesOptions configure the fake Sprites service when the sandbox
	// is "sprites" (rate limits, say).
	SpritesOptions spritesfake.Options
	// Log receives every log line of the runner, the server and the UI,
	// debug included; nil discards them.
	Log io.Writer
}

// Server is a running aod server and a client for it.
type Server struct {
	*Client
	DB       *store.DB
	Dir      string            // the data dir
	Fake     *fakemodel.Server // the model API agent CLIs talk to (real runner only)
	Runner   *runner.Runner    // the real runner, nil when recording
	Streams  *sse.Hub          // the API's and the UI's streams
	Recorder *Recorder         // what the use cases told the runner, nil with the real one
	// Sprites is the fake Sprites service sessions run on when the
	// sandbox is "sprites" (Options.Sandbox, or SandboxEnv), else nil.
	Sprites *spritesfake.Fake
}

// SandboxEnv names the variable that sets the real runner's sandbox when
// Options.Sandbox is empty: `AOD_TEST_SANDBOX=sprites go test ./server/`
// runs the session scenario tests on the Sprites backend (against its fake).
const SandboxEnv = "AOD_TEST_SANDBOX"

// SpritesPrefix starts the names of the sprites the Sprites backend makes
// in tests.
const SpritesPrefix = "aod-"

// New starts a server for t as o says and stops it when t ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Start(t, o)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	return s
}

// Start is New that returns the error of a real runner that cannot run
// here (a sandbox mode this machine lacks), for a caller that says so.
func Start(t testing.TB, o Options) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	// The lowest bcrypt cost: tests sign many users up and log them in,
	// each hash about a second under the race detector at the default.
	db, err := store.Open(ctx, dir, store.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	s := &Server{DB: db, Dir: dir}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.Log != nil {
		logger = slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var run sessions.Runner
	if o.Runner == RealRunner {
		// Agent CLIs always talk to a fake model API here, never the network.
		s.Fake = fakemodel.New(o.FakeScript)
		fakeSrv := httptest.NewServer(s.Fake)
		t.Cleanup(fakeSrv.Close)
		sandbox := o.Sandbox
		if sandbox == "" {
			sandbox = os.Getenv(SandboxEnv)
		}
		var backend sprite.Backend
		if sandbox == runner.SandboxSprites {
			// Sessions run on the Sprites backend, against the fake of the
			// service (sprites as directories, commands as real processes).
			s.Sprites = spritesfake.New(t, o.SpritesOptions)
			c := sprites.New(sprites.Config{URL: s.Sprites.URL(), Token: s.Sprites.Token(), Log: logger})
			backend = remote.New(remote.Config{Client: c, Prefix: SpritesPrefix, Log: logger, MaxRunAfterDisconnect: time.Minute})
		}
		r, err := runner.New(db, runner.Config{DataDir: dir, Sandbox: sandbox, Backend: backend, MaxRunning: o.MaxRunning, SweepInterval: o.SweepInterval,
			KillGrace: 200 * time.Millisecond, RuntimeDir: RuntimeDir(), Logger: logger, WarmSprites: cmp.Or(o.WarmSprites, -1),
			EgressAllow: o.EgressAllow, EgressResolver: o.EgressResolver, EgressDial: o.EgressDial,
			ModelEndpoints: runner.ModelEndpoints{Anthropic: fakeSrv.URL, OpenAI: fakeSrv.URL, Gemini: fakeSrv.URL}})
		if err != nil {
			db.Close()
			return nil, err
		}
		if err := r.Start(ctx); err != nil {
			t.Fatalf("start runner: %v", err)
		}
		s.Runner, run = r, r
	} else {
		s.Recorder = &Recorder{}
		run = s.Recorder
	}
	policy := store.SessionPolicy{MaxConcurrent: o.MaxConcurrent, Keyless: o.Keyless}
	sess := sessions.New(db, run, policy)
	streams := sse.NewHub(db, sse.Config{Heartbeat: o.Heartbeat, Stale: o.Stale, WriteTimeout: o.StreamWriteTimeout,
		MaxPerUser: o.MaxStreamsPerUser, MaxTotal: o.MaxStreams})
	s.Streams = streams
	var allow []egress.Rule
	for _, a := range o.EgressAllow {
		r, err := egress.ParseRule(a)
		if err != nil {
			t.Fatalf("egress rule %q: %v", a, err)
		}
		allow = append(allow, r)
	}
	cfg := server.Config{Version: "test", Streams: streams, Logger: logger, EgressAllow: allow}

	if o.UI != nil {
		uc := *o.UI
		uc.Streams, uc.Logger, uc.EgressAllow = streams, logger, allow
		if s.Runner != nil {
			uc.Sandbox = s.Runner.Sandbox()
		}
		h, err := ui.New(db, sess, uc)
		if err != nil {
			t.Fatalf("ui: %v", err)
		}
		cfg.UI = h
	}
	ts := httptest.NewServer(server.New(db, sess, cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		streams.Shutdown(ctx) // streams that took their connections over end too
		ts.CloseClientConnections()
		ts.Close()
		if s.Runner != nil {
			s.Runner.Shutdown(context.Background(), 0)
		}
		db.Close()
	})
	// Webhook deliveries go out while the server runs (stopped before the
	// store closes: cleanups run last first).
	hooksCtx, stopHooks := context.WithCancel(context.Background())
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		(&server.Dispatcher{DB: db, Allow: allow, Log: logger, Every: 50 * time.Millisecond}).Run(hooksCtx)
	}()
	t.Cleanup(func() { stopHooks(); <-hooksDone })
	s.Client = &Client{t: t, URL: ts.URL, HTTP: ts.Client(), checks: newResponseChecks(t)}
	return s, nil
}

// RuntimeDir is where tests install the agent CLIs from npm: a cache
// shared by all tests and runs (hundreds of MB per CLI; the runner installs
// each version once, atomically, under a cross-process lock), set with
// AOD_TEST_RUNTIME_DIR or else under the system temp dir.
func RuntimeDir() string {
	if d := os.Getenv("AOD_TEST_RUNTIME_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "aod-test-runtimes")
}

// Token creates (or reuses) user name and returns a fresh API token for it.
func (s *Server) Token(name string) string {
	s.t.Helper()
	u, err := s.DB.EnsureUser(context.Background(), name)
	if err != nil {
		s.t.Fatalf("ensure user: %v", err)
	}
	_, raw, err := s.DB.CreateAPIKey(context.Background(), u.ID, "test", nil)
	if err != nil {
		s.t.Fatalf("create key: %v", err)
	}
	return raw
}

// Call is one thing the session use cases told the runner.
type Call struct {
	Op        string // "enqueue", "terminate" or "delete"
	SessionID string
}

// Recorder is a sessions.Runner that runs nothing and records what it was
// told, in order.
type Recorder struct {
	mu    sync.Mutex
	calls []Call
}

func (r *Recorder) record(op, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Call{op, id})
}

// Enqueue records that sessionID has new work.
func (r *Recorder) Enqueue(sessionID string) { r.record("enqueue", sessionID) }

// Terminate records that sessionID must stop.
func (r *Recorder) Terminate(sessionID string) { r.record("terminate", sessionID) }

// Interrupt records that sessionID's turn must stop.
func (r *Recorder) Interrupt(sessionID string) { r.record("interrupt", sessionID) }

// Delete records that sessionID's sprite must go.
func (r *Recorder) Delete(sessionID string) { r.record("delete", sessionID) }

// Calls returns what the recorder was told so far, in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// SpriteFile reads file p (a sprite path under /home/sprite, /workspace
// or /tmp) of session id's sprite from where the backend keeps it: the
// local backend's directory under the data dir, or the fake Sprites
// service's.
func (s *Server) SpriteFile(id, p string) ([]byte, error) {
	p = path.Clean("/" + p)
	if s.Sprites != nil {
		return os.ReadFile(filepath.Join(s.Sprites.SpriteDir(SpritesPrefix+id), p))
	}
	for _, m := range []struct{ at, dir string }{{sprite.HomeDir, "home"}, {sprite.WorkspaceDir, "workspace"}, {sprite.TmpDir, "tmp"}} {
		if rest, ok := strings.CutPrefix(p, m.at); ok && (rest == "" || rest[0] == '/') {
			return os.ReadFile(filepath.Join(s.Dir, "sprites", id, m.dir, rest))
		}
	}
	return nil, fmt.Errorf("%s is not in a sprite's trees", p)
}
