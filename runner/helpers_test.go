package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/store"
)

// fixture is a store in a temp data dir with one user and a runner on it.
type fixture struct {
	t    testing.TB
	ctx  context.Context
	dir  string
	db   *store.DB
	user *store.User
	r    *Runner
}

// newStore opens a fresh data dir with a user, without a runner.
func newStore(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	user, err := db.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	return &fixture{t: t, ctx: ctx, dir: dir, db: db, user: user}
}

// newFixture opens a store and starts a runner on it with short intervals.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := newStore(t)
	f.start(cfg)
	return f
}

func (f *fixture) start(cfg Config) {
	f.t.Helper()
	f.startOn(f.db, cfg)
}

// startOn starts the runner on db, which wraps the fixture's store.
func (f *fixture) startOn(db Store, cfg Config) {
	f.t.Helper()
	cfg.DataDir = f.dir
	if cfg.Sandbox == "" {
		cfg.Sandbox = SandboxNone
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 300 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r, err := New(db, cfg)
	if err != nil {
		f.t.Fatalf("new runner: %v", err)
	}
	if err := r.Start(f.ctx); err != nil {
		f.t.Fatalf("start runner: %v", err)
	}
	f.r = r
	// Registered after the store's Close, so it runs before it.
	f.t.Cleanup(func() { r.Shutdown(context.Background(), 0) })
}

// sessionOpts shape a test session.
type sessionOpts struct {
	owner           *store.User // default: the fixture's user
	runtime, system string
	environmentID   string
	timeout         int
	secrets         map[string]string
	resources       []store.Resource
}

// agentModels are the models of test sessions of the agent runtimes.
var agentModels = map[string]store.Model{
	"claude":   {Runtime: "claude", Provider: "anthropic", Model: "anthropic/claude-sonnet-4-5"},
	"codex":    {Runtime: "codex", Provider: "openai", Model: "openai/gpt-5"},
	"opencode": {Runtime: "opencode", Provider: "openai", Model: "openai/gpt-5"},
	"gemini":   {Runtime: "gemini", Provider: "google", Model: "google/gemini-2.5-pro"},
}

// create stores a session running script, without enqueueing it.
func (f *fixture) create(script string, o sessionOpts) *store.Session {
	f.t.Helper()
	m := store.Model{Runtime: "shell", Provider: "local", Model: store.ShellModel}
	if am, ok := agentModels[o.runtime]; ok {
		m = am
	}
	owner := f.user
	if o.owner != nil {
		owner = o.owner
	}
	agent, err := f.db.CreateAgent(f.ctx, owner.ID, store.AgentInput{
		Name: fmt.Sprintf("agent-%d", time.Now().UnixNano()), System: o.system, Model: m, EnvironmentID: o.environmentID,
	})
	if err != nil {
		f.t.Fatalf("create agent: %v", err)
	}
	if o.timeout == 0 {
		o.timeout = 60
	}
	s, err := f.db.CreateSession(f.ctx, owner.ID, store.SessionInput{
		AgentID: agent.ID, Prompt: script, Timeout: o.timeout, SecretEnvVars: o.secrets, Resources: o.resources,
		// The runner's tests point every CLI at a fake endpoint: no key needed.
		Policy: store.SessionPolicy{Keyless: func(string) bool { return true }},
	})
	if err != nil {
		f.t.Fatalf("create session: %v", err)
	}
	return s
}

// run creates a session and enqueues it.
func (f *fixture) run(script string, o sessionOpts) *store.Session {
	f.t.Helper()
	s := f.create(script, o)
	f.r.Enqueue(s.ID)
	return s
}

// wait blocks until the session is no longer pending or running.
func (f *fixture) wait(id string) *store.Session {
	f.t.Helper()
	return f.waitFor(id, 30*time.Second)
}

// waitFor is wait with a patience of its own (sessions that install
// packages take longer).
func (f *fixture) waitFor(id string, patience time.Duration) *store.Session {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, patience)
	defer cancel()
	for {
		seq := f.db.ChangeSeq(id)
		s, err := f.db.GetSession(ctx, "", id)
		if err != nil {
			f.t.Fatalf("get session: %v", err)
		}
		if !s.Active() {
			return s
		}
		if err := f.db.WaitChange(ctx, id, seq); err != nil {
			f.t.Fatalf("session %s still %s after %s", id, s.Status, patience)
		}
	}
}

// waitOutput blocks until the session's stdout contains want.
func (f *fixture) waitOutput(id, want string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	for {
		seq := f.db.ChangeSeq(id)
		if out, _ := f.output(id, 0); strings.Contains(out, want) {
			return
		}
		if err := f.db.WaitChange(ctx, id, seq); err != nil {
			f.t.Fatalf("no %q in the output of %s after 30s", want, id)
		}
	}
}

func (f *fixture) events(id string) []store.Event {
	f.t.Helper()
	var all []store.Event
	var after int64
	for {
		evs, err := f.db.Events(f.ctx, id, after, 1000)
		if err != nil {
			f.t.Fatalf("read events: %v", err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].ID
	}
}

// output concatenates a turn's output rows per stream (turn 0: every turn).
func (f *fixture) output(id string, turn int) (stdout, stderr string) {
	f.t.Helper()
	var out, errs strings.Builder
	for _, e := range f.events(id) {
		if e.Kind != store.KindOutput || (turn != 0 && e.Turn != turn) {
			continue
		}
		if e.Stream == "stdout" {
			out.WriteString(e.Data)
		} else {
			errs.WriteString(e.Data)
		}
	}
	return out.String(), errs.String()
}

// stages lists the stage rows as "name:state".
func (f *fixture) stages(id string) []string {
	f.t.Helper()
	var out []string
	for _, e := range f.events(id) {
		if e.Kind == store.KindStage {
			out = append(out, e.Stage+":"+e.State)
		}
	}
	return out
}

func (f *fixture) spriteDir(id string) string { return filepath.Join(f.dir, "sprites", id) }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// eventually polls cond until it holds or 15s pass, and reports whether it
// held. It waits on the kernel or the background cleanup, never asserts.
func eventually(cond func() bool) bool { return testkit.Eventually(15*time.Second, cond) }

// The /proc scanner is the kit's: everything a session starts carries
// AOD_SESSION_ID in its environment.
var (
	sessionProcs = testkit.SessionProcs
	procState    = testkit.ProcState
	groupAlive   = testkit.GroupAlive
)

// sandboxModes are the modes a test runs under: none always, bwrap when it
// works here (CI installs it).
func sandboxModes(t *testing.T) []string {
	return []string{SandboxNone, SandboxBwrap}
}

// requireBwrap skips loudly where bubblewrap cannot run; with
// AOD_REQUIRE_BWRAP=1 (set by .ci/run) it fails instead, so CI never
// passes without running the sandbox tests.
func requireBwrap(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) { testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", format, args...) }
	if _, err := exec.LookPath("bwrap"); err != nil && local.FindBinary("bwrap") == "" {
		skip("sandbox test: bubblewrap (bwrap) is not installed; install the bubblewrap package to run it")
	}
	lb, err := local.New(local.Config{DataDir: t.TempDir(), Sandbox: local.SandboxBwrap,
		Limits: Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, Drain: time.Second})
	if err != nil {
		skip("sandbox test: bubblewrap does not work on this machine: %v", err)
	}
	lb.Close()
}

// realNPM skips loudly where npm is missing: the runtime installs need it.
func realNPM(t *testing.T) {
	t.Helper()
	if local.FindBinary("npm") == "" {
		t.Skip("!!! SKIPPING INSTALL TEST: npm is not installed !!!")
	}
}
