package runner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

func TestShellSessionCompletes(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode})
			is.Equal(f.r.Sandbox(), mode) // the runner uses the mode asked for
			script := "printf 'hello\\n'\nprintf 'oops\\n' >&2\nprintf 'h\\303\\251llo \\342\\234\\223\\n'\n" +
				"printf '%s|%s|%s|%s|%s\\n' \"$USER\" \"$LANG\" \"$AOD_SESSION_ID\" \"$AOD_MODEL\" \"$(printf %s \"$PATH\" | sed \"s|$HOME|HOME|g\")\"\n" +
				"test \"$HOME\" = \"$(pwd)\" && echo home-is-cwd\n"
			s := f.run(script, sessionOpts{})
			f.r.Enqueue(s.ID) // a second enqueue of the same session runs nothing twice
			done := f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // exit 0 completes the session
			is.True(done.ExitCode != nil)                // the exit code is recorded
			is.Equal(*done.ExitCode, 0)                  // and it is 0
			stdout, stderr := f.output(s.ID, 1)
			is.Equal(stdout, "hello\nhéllo ✓\nsprite|C.UTF-8|"+s.ID+"|local/shell|HOME/.local/bin:HOME/.local/share/gem/bin:"+sprite.DefaultPath+"\nhome-is-cwd\n") // exactly the bytes written to stdout
			is.Equal(stderr, "oops\n")                                                                                                                              // exactly the bytes written to stderr
			is.Equal(f.stages(s.ID), []string{
				"create_sprite:started", "create_sprite:done",
				"install_runtime:started", "install_runtime:done",
				"network_policy:started", "network_policy:done",
				"env_file:started", "env_file:done",
				"provision_setup:started", "provision_setup:done",
				"runtime_config:started", "runtime_config:done",
				"runtime_start:started",
			}) // a minimal session's stages, in order
			for _, e := range f.events(s.ID) {
				if e.Kind == store.KindStage {
					is.Equal(e.Turn, 0)                                       // stage rows belong to no turn
					is.Equal(e.DurationMS != nil, e.State == store.StageDone) // done rows carry a duration, started rows none
				}
			}
			turns, err := f.db.ListTurns(f.ctx, "", s.ID)
			is.NoErr(err)                                             // list turns
			is.Equal(len(turns), 1)                                   // one turn ran
			is.Equal(turns[0].Status, store.StatusCompleted)          // and completed
			is.True(exists(filepath.Join(f.spriteDir(s.ID), "home"))) // the sprite stays for later turns
		})
	}
}

func TestNonZeroExitFails(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	s := f.run("echo bye\nexit 7\n", sessionOpts{})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed) // a non-zero exit fails the session
	is.True(done.ExitCode != nil)             // with its exit code
	is.Equal(*done.ExitCode, 7)               // the script's code
	is.Equal(done.Error, "")                  // and no error message: the exit code says it
	stdout, _ := f.output(s.ID, 1)
	is.Equal(stdout, "bye\n") // output before the exit is kept
}

func TestSignalDeathIsExitCode(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	s := f.run("kill -9 $$\n", sessionOpts{})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed) // a killed CLI fails the session
	is.True(done.ExitCode != nil)             // with an exit code
	is.Equal(*done.ExitCode, 128+9)           // 128 + the signal
}

func TestSecondTurnSeesFirstTurnFilesAndSystemOnlyOnTurnOne(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode})
			s := f.run("echo one > note.txt\necho written\n", sessionOpts{system: "echo from-system"})
			done := f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // turn 1 completes
			out1, _ := f.output(s.ID, 1)
			is.Equal(out1, "from-system\nwritten\n") // turn 1 got system + blank line + prompt

			_, err := f.db.PromptSession(f.ctx, f.user.ID, s.ID, "cat note.txt\n", 60)
			is.NoErr(err) // queue turn 2
			f.r.Enqueue(s.ID)
			done = f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // turn 2 completes
			out2, _ := f.output(s.ID, 2)
			is.Equal(out2, "one\n")                                                                                      // turn 2 sees turn 1's file, and no system prompt
			is.Equal(f.stages(s.ID)[len(f.stages(s.ID))-2:], []string{"runtime_start:started", "runtime_start:started"}) // no provisioning again for turn 2
		})
	}
}

func TestTimeoutKillsTheWholeGroup(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode, KillGrace: 200 * time.Millisecond})
			// The group ignores SIGTERM, so only the KILL after the grace ends it.
			s := f.run("trap '' TERM\nsleep 1000 &\nsleep 1000 &\necho started\nsleep 1000\n", sessionOpts{timeout: 2})
			f.waitOutput(s.ID, "started")
			var procs []testkit.Proc
			eventually(func() bool { procs = sessionProcs(s.ID); return len(procs) >= 4 })
			is.True(len(procs) >= 4) // the shell and its three sleeps are running
			done := f.wait(s.ID)
			is.Equal(done.Status, store.StatusFailed)       // a timed-out turn fails
			is.True(done.ExitCode == nil)                   // without an exit code
			is.Equal(done.Error, "turn timed out after 2s") // with the timeout as the reason
			for _, p := range procs {
				is.True(eventually(func() bool { return !groupAlive(p.PGID) })) // no process of the group survives
			}
			is.Equal(len(sessionProcs(s.ID)), 0) // nor any process of the session
		})
	}
}

func TestTerminateKillsAtOnceAndKeepsTheFilesForTheRetention(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode, KillGrace: 30 * time.Second, SweepInterval: 50 * time.Millisecond, SpriteRetention: 2 * time.Second})
			s := f.run("trap '' TERM\necho kept > kept.txt\nsleep 1000 &\necho started\nsleep 1000\n", sessionOpts{})
			f.waitOutput(s.ID, "started") // output reaches the log while the command still runs
			var procs []testkit.Proc
			eventually(func() bool { procs = sessionProcs(s.ID); return len(procs) >= 3 })
			is.True(len(procs) >= 3) // the shell and its sleeps are running

			_, err := f.db.TerminateSession(f.ctx, f.user.ID, s.ID)
			is.NoErr(err) // the store marks it terminated
			start := time.Now()
			f.r.Terminate(s.ID)
			is.True(time.Since(start) < time.Second) // Terminate answers at once
			gone := eventually(func() bool { return len(sessionProcs(s.ID)) == 0 })
			is.True(gone)                               // every process of the session is killed
			is.True(time.Since(start) < 10*time.Second) // by SIGKILL, not after the 30s TERM grace
			for _, p := range procs {
				// A killed leader stays a zombie until the runner reaps it.
				is.True(eventually(func() bool { return !groupAlive(p.PGID) })) // nothing of the process group survives
			}
			got, err := f.db.GetSession(f.ctx, "", s.ID)
			is.NoErr(err)                                // the session is still there
			is.Equal(got.Status, store.StatusTerminated) // and stays terminated
			sp, err := f.r.SessionSprite(f.ctx, got)
			is.NoErr(err) // its sprite stays for a while
			b, err := sp.ReadFile(f.ctx, sprite.HomeDir+"/kept.txt")
			is.NoErr(err)
			is.Equal(string(b), "kept\n")                                          // with its files
			is.True(eventually(func() bool { return !exists(f.spriteDir(s.ID)) })) // the retention's sweep removes it
			_, err = f.r.SessionSprite(f.ctx, got)
			is.Equal(store.HTTPStatus(err), 410) // then it is gone
		})
	}
}

func TestTerminateDuringProvisioning(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "slow", SetupScript: "echo provisioning > $HOME/p.txt\nsleep 1000\n",
		Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // create an environment whose setup hangs
	s := f.run("echo never\n", sessionOpts{environmentID: env.ID})
	is.True(eventually(func() bool { return exists(filepath.Join(f.spriteDir(s.ID), "home", "p.txt")) })) // the setup script is running
	// and the log says so while it runs: stage rows wait at most stageFlushAfter
	is.True(eventually(func() bool {
		st := f.stages(s.ID)
		return len(st) > 0 && st[len(st)-1] == "provision_setup:started"
	}))
	_, err = f.db.TerminateSession(f.ctx, f.user.ID, s.ID)
	is.NoErr(err) // terminate while provisioning
	f.r.Terminate(s.ID)
	is.True(eventually(func() bool { return len(sessionProcs(s.ID)) == 0 })) // the setup script is killed
	got, err := f.db.GetSession(f.ctx, "", s.ID)
	is.NoErr(err)                                // read the session
	is.Equal(got.Status, store.StatusTerminated) // it stays terminated
	stdout, _ := f.output(s.ID, 0)
	is.Equal(stdout, "") // the turn never ran
}

func TestOutputCapAcrossTurns(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{OutputLimit: 1000})
	s := f.run("head -c 600 /dev/zero | tr '\\0' a\n", sessionOpts{})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // 600 bytes fit under the cap
	_, err := f.db.PromptSession(f.ctx, f.user.ID, s.ID, "head -c 600 /dev/zero | tr '\\0' b\nsleep 1000\n", 60)
	is.NoErr(err) // queue turn 2
	f.r.Enqueue(s.ID)
	done = f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed)                   // crossing the cap fails the turn
	is.True(done.ExitCode == nil)                               // without an exit code
	is.Equal(done.Error, "output limit of 1000 bytes exceeded") // saying why
	out2, _ := f.output(s.ID, 2)
	is.Equal(out2, strings.Repeat("b", 400)) // turn 2 stored exactly up to the session's cap
}

func TestInvalidAndSplitUTF8(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	// € split across two writes with a pause between them, then an invalid byte.
	s := f.run("printf '\\342\\202'; sleep 0.2; printf '\\254\\377\\n'\n", sessionOpts{})
	f.wait(s.ID)
	out, _ := f.output(s.ID, 1)
	is.Equal(out, "€\uFFFD\n") // the split character is whole, the invalid byte replaced
}

func TestStreamWriterHoldsBackSplitCharacters(t *testing.T) {
	is := is.New(t)
	o := &output{limit: 1 << 20, ch: make(chan chunk, 16), kill: make(chan struct{})}
	w := o.writer("stdout")
	euro := []byte("€")
	w.Write(append([]byte("a"), euro[0]))
	w.Write(euro[1:2])
	w.Write(append(euro[2:], 'b'))
	w.Write([]byte{0xf0, 0x9f})
	close(o.ch)
	var got []string
	for c := range o.ch {
		got = append(got, c.data)
	}
	is.Equal(got, []string{"a", "€b"})               // the split character is emitted once complete
	is.Equal(w.held, []byte{0xf0, 0x9f})             // an incomplete tail waits for more
	is.Equal(cmdout.Text(w.held), "\uFFFD\uFFFD")    // and becomes U+FFFD per byte if none comes
	is.Equal(runeCut("a€", 2), 1)                    // a cut never splits a character
	is.Equal(incompleteTail([]byte("ab\xff")), 3)    // an invalid byte is not held back
	is.Equal(incompleteTail([]byte("a\xe2\x82")), 1) // a valid prefix is
}

func TestLimitedNetworkingFailsClosedWithoutASandbox(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "limited", Networking: store.Networking{Type: "limited", Config: json.RawMessage(`{"allowed_hosts":["example.com"]}`)},
	})
	is.NoErr(err) // create a limited environment
	s := f.run("echo should-not-run\n", sessionOpts{environmentID: env.ID})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed)      // the session fails
	is.Equal(done.Error, limitedNetworkingMessage) // with the network policy's message
	is.True(done.ExitCode == nil)                  // no CLI ever ran
	is.Equal(f.stages(s.ID), []string{
		"create_sprite:started", "create_sprite:done",
		"install_runtime:started", "install_runtime:done",
		"network_policy:started", "network_policy:failed",
	}) // network_policy fails, nothing after it runs
	evs := f.events(s.ID)
	failed := evs[len(evs)-2]
	is.Equal(failed.Data, limitedNetworkingMessage) // the failed stage carries the message
	is.True(failed.DurationMS != nil)               // and a duration
	stdout, stderr := f.output(s.ID, 0)
	is.Equal(stdout, "")                                                 // the script never ran
	is.Equal(stderr, "provision failed: "+limitedNetworkingMessage+"\n") // and the failure's stderr row
	is.True(!exists(f.spriteDir(s.ID)))                                  // the failed sprite is removed
}

// Under bubblewrap a limited environment runs: the network_policy stage
// says what is allowed, and the proxy refuses the rest (recorded in the
// session's egress record).
func TestLimitedNetworkingUnderBwrap(t *testing.T) {
	requireBwrap(t)
	is := is.New(t)
	f := newFixture(t, Config{Sandbox: SandboxBwrap})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "limited", Networking: store.Networking{Type: "limited", Config: json.RawMessage(`{"allowed_hosts":["example.com","*.npmjs.org"]}`)},
	})
	is.NoErr(err)
	s := f.run("curl -s --max-time 5 http://evil.example.net/ ; echo\n", sessionOpts{environmentID: env.ID})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // the session runs
	var msg string
	for _, e := range f.events(s.ID) {
		if e.Kind == store.KindStage && e.Stage == "network_policy" && e.State == store.StageDone {
			msg = e.Data
		}
	}
	is.True(strings.HasPrefix(msg, "limited: only example.com, *.npmjs.org")) // the stage says which policy applies
	stdout, _ := f.output(s.ID, 1)
	is.True(strings.Contains(stdout, "evil.example.net:80 is not allowed by this session's network policy")) // the proxy's refusal reached the command
	is.True(testkit.Eventually(5*time.Second, func() bool {
		rows, err := f.db.ListEgress(f.ctx, f.user.ID, s.ID)
		return err == nil && len(rows) == 1 && rows[0].Host == "evil.example.net" && !rows[0].Allowed
	})) // the refusal is in the session's egress record
}

func TestRuntimeInstallFailure(t *testing.T) {
	realNPM(t)
	is := is.New(t)
	f := newFixture(t, Config{RuntimeVersions: map[string]string{"claude": "0.0.0-aod-no-such-version"}})
	s := f.run("hello", sessionOpts{runtime: "claude"})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed) // the session fails
	prefix := "Failed to install runtime: npm install @anthropic-ai/claude-code@0.0.0-aod-no-such-version failed"
	is.True(strings.HasPrefix(done.Error, prefix))     // saying which package npm could not install
	is.True(strings.Contains(done.Error, "stderr:\n")) // with the tail of npm's stderr
	is.Equal(f.stages(s.ID), []string{"create_sprite:started", "create_sprite:done",
		"install_runtime:started", "install_runtime:failed"}) // at install_runtime
	entries, err := os.ReadDir(filepath.Join(f.dir, "runtimes"))
	is.NoErr(err) // the runtime dir exists
	for _, e := range entries {
		is.True(strings.HasPrefix(e.Name(), ".lock-")) // only the lock file is left: no half-made install
	}
}

func TestSetupScriptAndEnvVars(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "setup", SetupScript: "  echo \"prepared $GREETING\" > \"$HOME/prep.txt\"\n  ",
		EnvVars: map[string]string{"GREETING": "from-env", "SHARED": "env"}, Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // create an environment with a setup script
	s := f.run("cat prep.txt\necho \"$SHARED\"\n", sessionOpts{environmentID: env.ID, secrets: map[string]string{"SHARED": "secret"}})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // the session completes
	out, _ := f.output(s.ID, 1)
	is.Equal(out, "prepared from-env\nsecret\n") // setup ran with the env vars; session secrets win
}

func TestSetupScriptFailure(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "broken", SetupScript: "echo fine\necho 'it broke' >&2\nexit 3\necho unreachable >&2\n",
		Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // create an environment whose setup fails
	s := f.run("echo never\n", sessionOpts{environmentID: env.ID})
	done := f.wait(s.ID)
	msg := "Provisioning script failed: exit 3\nstderr:\nit broke\n"
	is.Equal(done.Status, store.StatusFailed) // the session fails
	is.Equal(done.Error, msg)                 // with the exit code and stderr's tail
	st := f.stages(s.ID)
	is.Equal(st[len(st)-1], "provision_setup:failed") // at provision_setup
	is.True(!exists(f.spriteDir(s.ID)))               // its sprite is removed
}

func TestProvisionScript(t *testing.T) {
	is := is.New(t)
	data := t.TempDir()
	lb, err := local.New(local.Config{DataDir: data, Sandbox: SandboxNone, Limits: Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}})
	is.NoErr(err) // an unsandboxed backend: sprite paths are host paths
	sp, err := lb.Create(context.Background(), "s1", spriteOptions([]store.Resource{
		{URL: "https://github.com/o/r.git", MountPath: "/srv/code"},
		{URL: "https://github.com/o/other", Token: "ghp_secret"},
	}))
	is.NoErr(err) // a sprite with two repositories
	env := &store.Environment{
		Packages:    map[string][]string{"pip": {"requests", "a b"}, "apt": {"curl"}, "go": {"x/y@latest", "z@v1"}},
		SetupScript: "\n echo done \n",
	}
	script, err := provisionScript(env, []store.Resource{
		{URL: "https://github.com/o/r.git", MountPath: "/srv/code"},
		{URL: "https://github.com/o/other", Token: "ghp_secret"},
	}, sp, true)
	is.NoErr(err) // build the script
	is.Equal(script, "#!/bin/bash\nset -e\n"+
		`if [ ! -w /usr ]; then echo "apt packages cannot be installed: this sprite's system directories are read-only (a writable root needs aod to run as root); use pip, npm, gem, cargo or go packages, which install into the home directory" >&2; exit 1; fi`+"\n"+
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y curl\n"+
		"go install x/y@latest\ngo install z@v1\n"+
		"pip install requests 'a b'\n"+
		"git clone --depth=1 --quiet https://github.com/o/r.git "+data+"/sprites/s1/mounts/0\n"+
		"git -C "+data+"/sprites/s1/mounts/0 update-ref refs/aod/base HEAD\n"+
		"git clone --depth=1 --quiet https://github.com/o/other "+data+"/sprites/s1/workspace/other\n"+
		"git -C "+data+"/sprites/s1/workspace/other update-ref refs/aod/base HEAD\n"+
		"echo done\n") // packages in manager order, clones (credentials from the git config), then the setup script
	is.True(!strings.Contains(script, "ghp_secret")) // the token is never in the script
	layered, err := provisionScript(env, nil, sp, false)
	is.NoErr(err)
	is.Equal(layered, "#!/bin/bash\nset -e\necho done\n") // with a package layer, only the setup script is left
	_, err = provisionScript(&store.Environment{Packages: map[string][]string{"brew": {"x"}}}, nil, sp, true)
	is.True(err != nil) // an unknown package manager fails
	empty, err := provisionScript(nil, nil, sp, true)
	is.NoErr(err)       // nothing to do is fine
	is.Equal(empty, "") // and runs no script
}

func TestCrashReconciliation(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	running := f.create("echo a\n", sessionOpts{})
	is.NoErr(f.db.SetProvisionState(f.ctx, running.ID, store.ProvisionDone)) // its sprite was ready
	started, err := f.db.StartTurn(f.ctx, running.ID, 1)
	is.NoErr(err)    // move a session to running as a dead server would have
	is.True(started) // it is running
	provisioning := f.create("echo b\n", sessionOpts{})
	is.NoErr(f.db.SetProvisionState(f.ctx, provisioning.ID, store.ProvisionRunning)) // one was mid-provisioning
	queued := f.create("echo queued\n", sessionOpts{})
	terminated := f.create("echo c\n", sessionOpts{})
	_, err = f.db.TerminateSession(f.ctx, f.user.ID, terminated.ID)
	is.NoErr(err) // one was terminated before its sprite was removed
	for _, id := range []string{running.ID, provisioning.ID, terminated.ID, "0190a1b2-0000-7000-8000-000000000000"} {
		is.NoErr(os.MkdirAll(filepath.Join(f.spriteDir(id), "home"), 0o700)) // leftover sprite directories
	}

	f.start(Config{})
	for _, id := range []string{running.ID, provisioning.ID} {
		got, err := f.db.GetSession(f.ctx, "", id)
		is.NoErr(err)                                           // read the session
		is.Equal(got.Status, store.StatusFailed)                // a session cut short by the crash ends failed
		is.Equal(got.Error, "server restarted during the turn") // with the restart as the reason
	}
	done := f.wait(queued.ID)
	is.Equal(done.Status, store.StatusCompleted) // a queued session runs after the restart
	out, _ := f.output(queued.ID, 1)
	is.Equal(out, "queued\n")                                             // its own output
	is.True(exists(f.spriteDir(terminated.ID)))                           // a terminated session's files stay for the retention
	is.True(!exists(f.spriteDir("0190a1b2-0000-7000-8000-000000000000"))) // so is a deleted session's
	is.True(!exists(f.spriteDir(provisioning.ID)))                        // and a half-provisioned one
	is.True(exists(f.spriteDir(running.ID)))                              // a failed turn's files stay
}

func TestShutdownFailsRunningTurnsAndKeepsQueuedOnes(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{MaxRunning: 1})
	s := f.run("echo started\nsleep 1000\n", sessionOpts{})
	f.waitOutput(s.ID, "started")
	queued := f.run("echo later\n", sessionOpts{})
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	is.NoErr(f.r.Shutdown(ctx, 100*time.Millisecond)) // shutdown returns once the turn is killed
	got, err := f.db.GetSession(f.ctx, "", s.ID)
	is.NoErr(err)                                           // read the session
	is.Equal(got.Status, store.StatusFailed)                // the running turn is recorded failed
	is.Equal(got.Error, "server shut down during the turn") // with the reason
	is.Equal(len(sessionProcs(s.ID)), 0)                    // and its processes are gone
	q, err := f.db.GetSession(f.ctx, "", queued.ID)
	is.NoErr(err)                           // read the queued session
	is.Equal(q.Status, store.StatusPending) // it stays queued for the next start
}

func TestShutdownLetsShortTurnsFinish(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	s := f.run("echo started\nsleep 0.3\necho finished\n", sessionOpts{})
	f.waitOutput(s.ID, "started")
	is.NoErr(f.r.Shutdown(f.ctx, 20*time.Second)) // a generous grace
	got, err := f.db.GetSession(f.ctx, "", s.ID)
	is.NoErr(err)                               // read the session
	is.Equal(got.Status, store.StatusCompleted) // the turn finished within the grace
}

func TestDeleteRemovesTheSprite(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	s := f.run("echo x > file\n", sessionOpts{})
	f.wait(s.ID)
	is.True(exists(f.spriteDir(s.ID)))                   // the sprite exists after the turn
	is.NoErr(f.db.DeleteSession(f.ctx, f.user.ID, s.ID)) // the store deletes the session
	f.r.Delete(s.ID)
	is.True(eventually(func() bool { return !exists(f.spriteDir(s.ID)) })) // and the runner its sprite
}

func TestMissingSpriteFailsTheTurn(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	s := f.run("echo one\n", sessionOpts{})
	f.wait(s.ID)
	is.NoErr(os.RemoveAll(f.spriteDir(s.ID))) // the sprite vanishes between turns
	_, err := f.db.PromptSession(f.ctx, f.user.ID, s.ID, "echo two\n", 60)
	is.NoErr(err) // queue turn 2
	f.r.Enqueue(s.ID)
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusFailed)       // the turn fails
	is.Equal(done.Error, "Sprite not found: "+s.ID) // with a backend error
}

func TestConfigValidation(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err := New(f.db, Config{DataDir: f.dir, Sandbox: "docker", Logger: quiet})
	is.True(err != nil) // an unknown sandbox mode is refused
	_, err = New(f.db, Config{})
	is.True(err != nil) // a data dir is required
	r, err := New(f.db, Config{DataDir: f.dir, Sandbox: SandboxNone, Logger: quiet})
	is.NoErr(err)                                                                                                                        // none always works
	is.Equal(r.Sandbox(), SandboxNone)                                                                                                   // and says so
	is.Equal(r.cfg.MaxRunning, 4)                                                                                                        // defaults apply
	is.Equal(r.cfg.OutputLimit, int64(512<<20))                                                                                          // 512 MiB output per session
	is.Equal(r.cfg.KillGrace, 3*time.Second)                                                                                             // 3s between TERM and KILL
	is.Equal(r.cfg.ProvisionTimeout, 15*time.Minute)                                                                                     // 15 minutes to provision
	is.Equal(r.cfg.Limits, Limits{Processes: 1024, FileSizeBytes: 8 << 30, CPUSeconds: 7200, MemoryBytes: 4 << 30, DiskBytes: 10 << 30}) // and the limit defaults
}

// A session terminated while still queued is dropped from the queue at
// once; Shutdown afterwards does not wait for a job that can never run.
func TestTerminateQueuedSessionThenShutdown(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{MaxRunning: 1})
	busy := f.run("echo started\nsleep 1000\n", sessionOpts{})
	f.waitOutput(busy.ID, "started")
	queued := f.run("echo never\n", sessionOpts{})
	_, err := f.db.TerminateSession(f.ctx, f.user.ID, queued.ID)
	is.NoErr(err) // the store marks the queued session terminated
	f.r.Terminate(queued.ID)
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	is.NoErr(f.r.Shutdown(ctx, 100*time.Millisecond)) // shutdown returns instead of waiting forever
	out, _ := f.output(queued.ID, 1)
	is.Equal(out, "") // the terminated session never ran
}

// Sprites left behind while the server runs (a removal that failed) are
// swept periodically, not only at start.
func TestPeriodicSweep(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{SweepInterval: 50 * time.Millisecond})
	orphan := f.spriteDir("0190a1b2-0000-7000-8000-0000000000aa")
	is.NoErr(os.MkdirAll(filepath.Join(orphan, "home"), 0o700)) // a sprite of no session appears after start
	is.True(eventually(func() bool { return !exists(orphan) })) // and is removed by the periodic sweep
	live := f.run("echo started\nsleep 1000\n", sessionOpts{})
	f.waitOutput(live.ID, "started")
	time.Sleep(200 * time.Millisecond)    // several sweeps pass
	is.True(exists(f.spriteDir(live.ID))) // a running session's sprite is left alone
}

// Environment packages install into the environment's package layer
// (/usr/local) where sprites have a writable root, else into the sprite's
// home, so they work under a read-only root too; their commands are on
// PATH in every turn. (npm is the manager this machine's registry serves.)
func TestEnvironmentPackagesOnPath(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm is required (the runtime tests need it too): %v", err)
	}
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode})
			env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
				Name: "npm", Packages: map[string][]string{"npm": {"semver@7.6.3"}}, Networking: store.Networking{Type: "unrestricted"},
			})
			is.NoErr(err) // an environment with an npm package that has a command
			s := f.run("semver 1.2.3 -i minor\ncommand -v semver | sed \"s|$HOME|HOME|\"\n", sessionOpts{environmentID: env.ID})
			done := f.waitLong(s.ID)                     // an install may take a while on a loaded machine
			is.Equal(done.Status, store.StatusCompleted) // provisioning installed it and the turn ran
			out, _ := f.output(s.ID, 1)
			where := "HOME/.local/bin/semver"
			if f.r.local.Layers() {
				where = "/usr/local/bin/semver"
			}
			is.Equal(out, "1.3.0\n"+where+"\n") // the package's command works, from the layer or the home dir
		})
	}
}

// countingStore counts the store reads of a session's secrets and of its
// environment.
type countingStore struct {
	Store
	mu                    sync.Mutex
	secrets, environments int
}

func (c *countingStore) SessionSecrets(ctx context.Context, id string) (map[string]string, []store.Resource, error) {
	c.mu.Lock()
	c.secrets++
	c.mu.Unlock()
	return c.Store.SessionSecrets(ctx, id)
}

func (c *countingStore) SessionEnvironment(ctx context.Context, id string) (*store.Environment, error) {
	c.mu.Lock()
	c.environments++
	c.mu.Unlock()
	return c.Store.SessionEnvironment(ctx, id)
}

func (c *countingStore) counts() (secrets, environments int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.secrets, c.environments
}

// The job that provisions a session runs its first turn with the
// environment provisioning assembled: the secrets are decrypted once, not
// again for the turn. A later turn is a later job and reads them afresh.
func TestSecretsReadOncePerJob(t *testing.T) {
	is := is.New(t)
	f := newStore(t)
	cs := &countingStore{Store: f.db}
	f.startOn(cs, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "vars", EnvVars: map[string]string{"FROM_ENV": "e1"}, Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // an environment with an env var
	s := f.run("echo \"$FROM_ENV $SECRET\"\n", sessionOpts{environmentID: env.ID, secrets: map[string]string{"SECRET": "s1"}})
	is.Equal(f.wait(s.ID).Status, store.StatusCompleted) // provisioning and turn 1 ran in one job
	out, _ := f.output(s.ID, 1)
	is.Equal(out, "e1 s1\n") // the turn had the env var and the secret
	secrets, environments := cs.counts()
	is.Equal(secrets, 1)      // read and decrypted once for provisioning and the first turn
	is.Equal(environments, 1) // and the environment looked up once

	_, err = f.db.PromptSession(f.ctx, f.user.ID, s.ID, "echo \"again $SECRET\"\n", 60)
	is.NoErr(err) // queue turn 2
	f.r.Enqueue(s.ID)
	is.Equal(f.wait(s.ID).Status, store.StatusCompleted) // turn 2 ran in a job of its own
	out, _ = f.output(s.ID, 2)
	is.Equal(out, "again s1\n") // with the secret
	secrets, environments = cs.counts()
	is.Equal(secrets, 2)      // read again for that job
	is.Equal(environments, 2) // and the environment once more, for its network policy
}
