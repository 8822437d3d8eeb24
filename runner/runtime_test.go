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
func runnableSprite(t *testing.T) sprite.Sprite { return runnableSpriteNamed(t, "s1") }

// runnableSpriteNamed is runnableSprite for a session: sprites are named
// after their session.
func runnableSpriteNamed(t *testing.T, name string) sprite.Sprite {
	t.Helper()
	lb, err := local.New(local.Config{DataDir: t.TempDir(), Sandbox: SandboxNone, Drain: time.Second,
		Limits: Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := lb.Create(context.Background(), name, sprite.Options{})
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

// fakeTools puts scripts (name -> body, run by sh) in a directory and
// returns a sprite environment whose PATH is that directory, then the
// system's unless alone; alone also links bash there (commands aod runs
// itself need it).
func fakeTools(t *testing.T, alone bool, scripts map[string]string) (env map[string]string, dir string) {
	t.Helper()
	dir = t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := dir + ":" + sprite.DefaultPath
	if alone {
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(bash, filepath.Join(dir, "bash")); err != nil {
			t.Fatal(err)
		}
		path = dir
	}
	return map[string]string{"PATH": path, "HOME": "/nonexistent"}, dir
}

// fakeNPX puts an npx on PATH that records its arguments and exits code.
func fakeNPX(t *testing.T, code int) (env map[string]string, argsFile string) {
	t.Helper()
	env, dir := fakeTools(t, false, map[string]string{"npx": fmt.Sprintf("printf '%%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\nexit %d\n", code)})
	return env, filepath.Join(dir, "args")
}

// npmEngineWarning is how npm 11 warns that a package wants a newer Node.js
// (seen running `npx skills` on Node.js 20), and what follows.
const npmEngineWarning = `npm warn EBADENGINE Unsupported engine {
npm warn EBADENGINE   package: 'skills@1.7.4',
npm warn EBADENGINE   required: { node: '>=22.20.0' },
npm warn EBADENGINE   current: { node: 'v20.20.2', npm: '11.19.1' }
npm warn EBADENGINE }
SyntaxError: The requested module 'fs/promises' does not provide an export named 'glob'
Node.js v20.20.2
`

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

	// A failure names the skill, the command and what aod can tell of the
	// cause, then shows the command's last output; never a guess.
	const command = "skill acme/skills (lint) from GitHub: `npx -y skills@latest add acme/skills --global --agent claude-code --yes --skill lint`"
	tests := []struct {
		name    string
		alone   bool              // PATH holds only the fakes (and bash)
		scripts map[string]string // the fakes on PATH
		refuse  bool              // the egress proxy refuses registry.npmjs.org:443 while npx runs
		want    []string          // in the message
		wantNot []string          // not in it
	}{
		{name: "npx missing", alone: true, scripts: map[string]string{},
			want:    []string{"skill acme/skills (lint) from GitHub: " + npxMissing},
			wantNot: []string{"network"}},
		{name: "npx exits 127 and is there", scripts: map[string]string{"npx": "echo 'skills: git: not found' >&2\nexit 127\n"},
			want:    []string{command + " exited 127\noutput:\nskills: git: not found"},
			wantNot: []string{"not installed"}},
		{name: "Node.js too old for the skills CLI", scripts: map[string]string{"npx": "cat >&2 <<'EOF'\n" + npmEngineWarning + "EOF\nexit 1\n"},
			want:    []string{command + " exited 1: the skills CLI (skills@1.7.4) needs Node.js >=22.20.0; the sprite has v20.20.2\noutput:\n", "SyntaxError"},
			wantNot: []string{"network"}},
		{name: "refused by the egress proxy", refuse: true,
			scripts: map[string]string{"npx": `d=$(dirname "$0"); touch "$d/started"; while [ ! -e "$d/go" ]; do sleep 0.02; done
echo 'npm error 403 403 Forbidden - GET https://registry.npmjs.org/skills' >&2; exit 1
`},
			want:    []string{command + " exited 1: aod's egress proxy refused registry.npmjs.org:443, which this session's network policy does not allow", "403 Forbidden"},
			wantNot: []string{"old.example"}},
		{name: "anything else", scripts: map[string]string{"npx": "echo 'npm error code ECONNRESET' >&2\nexit 3\n"},
			want:    []string{command + " exited 3\noutput:\nnpm error code ECONNRESET"},
			wantNot: []string{"network access", "egress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			f := newStore(t)
			r := testRunner(t, Config{})
			r.db, r.egress.db = f.db, f.db
			s := f.create("true", sessionOpts{})
			sp := runnableSpriteNamed(t, s.ID)
			env, dir := fakeTools(t, tt.alone, tt.scripts)
			r.egress.record(s.ID, "old.example", 443, false) // a refusal before the install
			r.egress.flush()
			time.Sleep(time.Millisecond) // the install starts strictly later
			if tt.refuse {
				go func() {
					eventually(func() bool { return exists(filepath.Join(dir, "started")) })
					r.egress.record(s.ID, "registry.npmjs.org", 443, false)
					os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
				}()
			}
			err := r.writeSkills(ctx, sp, r.runtime("claude"), []runtimes.Skill{{Source: "acme/skills", Name: "lint"}}, env)
			is.True(err != nil) // the install fails
			msg := err.Error()
			t.Log(msg)
			for _, w := range tt.want {
				is.True(strings.Contains(msg, w)) // the message says it
			}
			for _, w := range tt.wantNot {
				is.True(!strings.Contains(msg, w)) // and not this
			}
		})
	}
}

func TestNPMEngineMismatch(t *testing.T) {
	tests := []struct {
		name, output, pkg                  string
		wantPkg, wantRequired, wantCurrent string
	}{
		{"npm 11", npmEngineWarning, "skills", "skills@1.7.4", ">=22.20.0", "v20.20.2"},
		{"older npm's upper case", strings.ReplaceAll(npmEngineWarning, "npm warn", "npm WARN"), "skills", "skills@1.7.4", ">=22.20.0", "v20.20.2"},
		{"another package's warning", strings.ReplaceAll(npmEngineWarning, "'skills@", "'left-pad@"), "skills", "", "", ""},
		{"a name that only starts the same", strings.ReplaceAll(npmEngineWarning, "'skills@", "'skills-extra@"), "skills", "", "", ""},
		{"no warning", "npm error code E404\n", "skills", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			pkg, required, current := npmEngineMismatch(tt.output, tt.pkg)
			is.Equal(pkg, tt.wantPkg)           // the package, with its version
			is.Equal(required, tt.wantRequired) // the Node.js it needs
			is.Equal(current, tt.wantCurrent)   // the one it got
		})
	}
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
