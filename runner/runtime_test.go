package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/runner/sprite/spritetest"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

var testEndpoints = ModelEndpoints{Anthropic: "http://127.0.0.1:8778", OpenAI: "http://127.0.0.1:8778/v1/", Gemini: "http://127.0.0.1:8778"}

// testSprite is a sprite that runs nothing, with paths as a sandboxed
// (bwrap) or unsandboxed (none) backend's processes see them: enough for
// files and paths.
func testSprite(t *testing.T, mode string, opts sprite.Options) *spritetest.Sprite {
	t.Helper()
	return spritetest.New(t, mode == SandboxBwrap, opts)
}

// runnableSprite is a sprite of an unsandboxed local backend, for tests
// that run commands in it.
func runnableSprite(t *testing.T) sprite.Sprite {
	t.Helper()
	lb, err := local.New(local.Config{DataDir: t.TempDir(), Sandbox: SandboxNone, Drain: time.Second,
		Limits: Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// testRunner is a runner that is never started, for the parts that need
// one (skills, env); its backend is unsandboxed.
func testRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.Sandbox = SandboxNone
	cfg.KillGrace = 200 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := New(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fakeNPX puts an npx on PATH that records its arguments and exits code.
func fakeNPX(t *testing.T, code int) (env map[string]string, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\necho 'npm error network request to https://registry.npmjs.org/skills failed' >&2\nexit %d\n", argsFile, code)
	if err := os.WriteFile(filepath.Join(dir, "npx"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"PATH": dir + ":" + sprite.DefaultPath, "HOME": "/nonexistent"}, argsFile
}

func TestGitHubSkills(t *testing.T) {
	ctx := context.Background()
	t.Run("installed with the skills CLI in the sprite", func(t *testing.T) {
		is := is.New(t)
		r := testRunner(t, Config{})
		sp := runnableSprite(t)
		env, argsFile := fakeNPX(t, 0)
		skills := []runtimes.Skill{{Type: "github", Source: "acme/skills", Name: "lint"}, {Source: "acme/more"}}
		is.NoErr(r.writeSkills(ctx, sp, r.runtime("codex"), skills, env)) // both GitHub skills install
		args, err := os.ReadFile(argsFile)
		is.NoErr(err)                                                                                  // npx ran
		is.Equal(string(args), "-y\nskills@latest\nadd\nacme/more\n--global\n--agent\ncodex\n--yes\n") // the last one: no --skill without a name
	})
	t.Run("argv", func(t *testing.T) {
		is := is.New(t)
		is.Equal(runtimes.GitHubSkillArgv(runtimes.Skill{Source: "acme/skills", Name: "lint"}, "claude-code"),
			[]string{"npx", "-y", "skills@latest", "add", "acme/skills", "--global", "--agent", "claude-code", "--yes", "--skill", "lint"}) // the original's command line
	})
	t.Run("failure names the skill and the cause", func(t *testing.T) {
		is := is.New(t)
		r := testRunner(t, Config{})
		sp := runnableSprite(t)
		env, _ := fakeNPX(t, 1)
		err := r.writeSkills(ctx, sp, r.runtime("claude"), []runtimes.Skill{{Source: "acme/skills", Name: "lint"}}, env)
		is.True(err != nil) // the install fails
		msg := err.Error()
		is.True(strings.HasPrefix(msg, "skill acme/skills (lint) from GitHub: `npx -y skills@latest add acme/skills --global --agent claude-code --yes --skill lint` exited 1")) // naming the skill and the command
		is.True(strings.Contains(msg, "it needs network access to npm and GitHub"))                                                                                              // why it may fail
		is.True(strings.Contains(msg, "npm error network request"))                                                                                                              // with the command's own output
	})
}

func TestCumulativeUsageIsPerTurn(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	r := testRunner(t, Config{})
	r.db = f.db
	s := f.create("x", sessionOpts{})
	turn1 := r.recordReport(f.ctx, s, 1, runtimes.Report{SessionID: "thread-1", Cumulative: true,
		Usage: &runtimes.Usage{InputTokens: ptr(int64(13)), OutputTokens: ptr(int64(5))}})
	is.Equal(string(turn1), `{"input_tokens":13,"output_tokens":5,"thread":{"input_tokens":13,"output_tokens":5}}`) // turn 1's share is the whole total
	got, err := f.db.GetSession(f.ctx, "", s.ID)
	is.NoErr(err)                                                      // read the session
	is.Equal(got.RuntimeSessionID, "thread-1")                         // the CLI's id is recorded for resuming
	is.Equal(s.RuntimeSessionID, "thread-1")                           // and in the session in hand
	is.NoErr(f.db.SetProvisionState(f.ctx, s.ID, store.ProvisionDone)) // as if provisioned
	ok, err := f.db.StartTurn(f.ctx, s.ID, 1)
	is.NoErr(err) // start turn 1
	is.True(ok)   // it was pending
	code := 0
	is.NoErr(f.db.FinishTurn(f.ctx, s.ID, 1, store.TurnResult{ExitCode: &code, Usage: turn1})) // turn 1 ends with its usage
	_, err = f.db.PromptSession(f.ctx, f.user.ID, s.ID, "more", 60)
	is.NoErr(err) // a second prompt
	turn2 := r.recordReport(f.ctx, s, 2, runtimes.Report{SessionID: "thread-1", Cumulative: true,
		Usage: &runtimes.Usage{InputTokens: ptr(int64(26)), OutputTokens: ptr(int64(12))}})
	is.Equal(string(turn2), `{"input_tokens":13,"output_tokens":7,"thread":{"input_tokens":26,"output_tokens":12}}`) // turn 2's own share of the running total
	is.Equal(string(r.recordReport(f.ctx, s, 2, runtimes.Report{})), "")                                             // nothing reported, nothing stored
}

func ptr[T any](v T) *T { return &v }

func TestSessionEnvPutsTheCLIOnPath(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	r := testRunner(t, Config{ModelEndpoints: testEndpoints, RuntimeVersions: map[string]string{"claude": "2.1.100"}})
	r.db = f.db
	s := f.create("hi", sessionOpts{runtime: "claude", secrets: map[string]string{"PATH": "/custom/bin", "IS_SANDBOX": "0"}})
	rt := r.runtime("claude")
	for _, mode := range []string{SandboxBwrap, SandboxNone} {
		sp := testSprite(t, mode, r.spriteOpts(s, rt, nil))
		env, _, err := r.sessionEnv(f.ctx, s, sp, rt)
		is.NoErr(err) // assemble the environment
		bin := "/aod/runtimes/anthropic-ai-claude-code@2.1.100/node_modules/.bin"
		if mode == SandboxNone {
			bin = filepath.Join(r.cfg.RuntimeDir, "anthropic-ai-claude-code@2.1.100", "node_modules", ".bin")
		}
		is.Equal(env["PATH"], bin+":/custom/bin")                    // the pinned CLI first, even before a PATH the user set
		is.Equal(env["IS_SANDBOX"], "0")                             // the user's settings win over the runtime's defaults
		is.Equal(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:8778") // the endpoint is set
		is.Equal(env["ANTHROPIC_API_KEY"], "aod-fake-key")           // with a placeholder key, as the session brought none
		is.Equal(env["AOD_MODEL"], "anthropic/claude-sonnet-4-5")    // the basics are still there
	}
	opts := r.spriteOpts(s, rt, nil)
	is.Equal(opts.ReadOnlyBinds, []sprite.Bind{{Host: filepath.Join(r.cfg.RuntimeDir, "anthropic-ai-claude-code@2.1.100"),
		At: "/aod/runtimes/anthropic-ai-claude-code@2.1.100"}}) // the installed CLI is bound read-only into the sprite
}

// A session that brings only ANTHROPIC_AUTH_TOKEN (which the store's
// credential check accepts, from the same catalogue) gets it in the CLI's
// environment and no placeholder key beside it.
func TestClaudeGetsTheAuthToken(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	r := testRunner(t, Config{ModelEndpoints: testEndpoints})
	r.db = f.db
	s := f.create("hi", sessionOpts{runtime: "claude", secrets: map[string]string{"ANTHROPIC_AUTH_TOKEN": "gw-token"}})
	rt := r.runtime("claude")
	sp := testSprite(t, SandboxNone, r.spriteOpts(s, rt, nil))
	env, _, err := r.sessionEnv(f.ctx, s, sp, rt)
	is.NoErr(err)                                     // assemble the environment
	is.Equal(env["ANTHROPIC_AUTH_TOKEN"], "gw-token") // the CLI gets the token
	_, placeholder := env["ANTHROPIC_API_KEY"]
	is.True(!placeholder) // and no placeholder key that would shadow it
}

func TestRuntimeConfigValidation(t *testing.T) {
	is := is.New(t)
	_, err := New(nil, Config{DataDir: t.TempDir(), Sandbox: SandboxNone, RuntimeVersions: map[string]string{"shell": "1"}})
	is.True(err != nil) // only agent runtimes have versions
	_, err = New(nil, Config{DataDir: t.TempDir(), Sandbox: SandboxNone, RuntimeVersions: map[string]string{"claude": "../x"}})
	is.True(err != nil) // a version never escapes the runtime dir
	t.Chdir(t.TempDir())
	r, err := New(nil, Config{DataDir: "rel-data", Sandbox: SandboxNone})
	is.NoErr(err)                                           // defaults, with a relative data dir
	is.True(filepath.IsAbs(r.cfg.RuntimeDir))               // the runtime dir is absolute (it is bound into sprites)
	is.Equal(filepath.Base(r.cfg.RuntimeDir), "runtimes")   // <DataDir>/runtimes by default
	is.Equal(r.pin(r.runtime("claude")).Version, "2.1.197") // the pinned claude-code
}
