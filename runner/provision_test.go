package runner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// The provisioning script's stdout and stderr are kept as the session's
// provisioning log, with the session's secret values redacted; when
// provisioning fails, the log also carries the original's stderr row
// "provision failed: <reason>" after the failed stage and before the
// session ends.
func TestProvisioningLog(t *testing.T) {
	const (
		envSecret  = "env-secret-3f9a1c"
		ownSecret  = "own-secret-77b2e0"
		shortValue = "1" // too short to redact: a flag, not a secret
	)
	// stdout and stderr are separate pipes: the scripts pause between
	// them so the log's order is certain.
	tests := []struct {
		name    string
		setup   string // "" = no environment
		failed  bool
		wantLog string
		reason  string // the session's error when failed
	}{
		{name: "no script, no log", wantLog: ""},
		{name: "stdout and stderr of a script that succeeds",
			setup:   "echo out-line\nsleep 0.05\necho err-line >&2\n",
			wantLog: "out-line\nerr-line\n"},
		{name: "secrets redacted",
			setup:   `echo "env=$API_TOKEN own=$OWN debug=$DEBUG"` + "\nsleep 0.05\necho \"$API_TOKEN$OWN\" >&2\n",
			wantLog: "env=[redacted] own=[redacted] debug=1\n[redacted][redacted]\n"},
		{name: "a script that fails",
			setup:   "echo before\nsleep 0.05\necho \"it broke, $API_TOKEN\" >&2\nexit 3\necho never\n",
			failed:  true,
			wantLog: "before\nit broke, [redacted]\n",
			reason:  "Provisioning script failed: exit 3\nstderr:\nit broke, [redacted]\n"},
	}
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			f := newFixture(t, Config{Sandbox: mode})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					is := is.New(t)
					o := sessionOpts{secrets: map[string]string{"OWN": ownSecret}}
					if tt.setup != "" {
						env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
							Name: fmt.Sprintf("%s-%s", mode, tt.name), SetupScript: tt.setup, Networking: store.Networking{Type: "unrestricted"},
							EnvVars: map[string]string{"API_TOKEN": envSecret, "DEBUG": shortValue},
						})
						is.NoErr(err) // an environment with the setup script
						o.environmentID = env.ID
					}
					s := f.run("echo ran\n", o)
					done := f.wait(s.ID)
					log, err := f.db.ProvisionLog(f.ctx, f.user.ID, s.ID)
					is.NoErr(err) // the log reads
					// stdout and stderr come through pipes of their own, so
					// lines written close together may swap: the lines, not
					// their order.
					lines := func(s string) []string { l := strings.SplitAfter(s, "\n"); slices.Sort(l); return l }
					is.Equal(lines(log), lines(tt.wantLog)) // the script's output, secrets redacted
					evs := f.events(s.ID)
					var all strings.Builder
					for _, e := range evs {
						all.WriteString(e.Data)
					}
					is.True(!strings.Contains(all.String(), envSecret)) // no secret in any stored event
					is.True(!strings.Contains(all.String(), ownSecret)) // of either kind
					if !tt.failed {
						is.Equal(done.Status, store.StatusCompleted) // the session runs
						_, stderr := f.output(s.ID, 0)
						is.True(!strings.Contains(stderr, "provision failed")) // and has no failure row
						return
					}
					is.Equal(done.Status, store.StatusFailed) // the session fails
					is.Equal(done.Error, tt.reason)           // with the reason, redacted
					last, stage := evs[len(evs)-1], evs[len(evs)-2]
					is.Equal(stage.Stage+":"+stage.State, "provision_setup:failed") // after the failed stage
					is.Equal(stage.Data, tt.reason)                                 // which says why
					is.Equal(last, store.Event{ID: last.ID, SessionID: s.ID, Turn: 1, Kind: store.KindOutput,
						Stream: "stderr", Data: "provision failed: " + tt.reason + "\n"}) // the last row is the original's stderr row, in turn 1
				})
			}
		})
	}
}

// A log past its bound keeps its first provisionLogHead and last
// provisionLogTail bytes and says how much was left out between them.
func TestProvisioningLogIsBounded(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	const filler = 3 << 20
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "loud", Networking: store.Networking{Type: "unrestricted"},
		SetupScript: fmt.Sprintf("echo FIRST\nhead -c %d /dev/zero | tr '\\0' x\necho\necho LAST\n", filler),
	})
	is.NoErr(err) // an environment whose setup writes 3 MiB
	s := f.run("true\n", sessionOpts{environmentID: env.ID})
	is.Equal(f.wait(s.ID).Status, store.StatusCompleted) // the session runs
	log, err := f.db.ProvisionLog(f.ctx, f.user.ID, s.ID)
	is.NoErr(err) // the log reads
	total := len("FIRST\n") + filler + len("\nLAST\n")
	omitted := total - provisionLogHead - provisionLogTail
	marker := fmt.Sprintf("\n[aod: %d bytes of output left out here]\n", omitted)
	is.Equal(len(log), provisionLogHead+len(marker)+provisionLogTail)    // head, marker and tail, nothing more
	is.True(strings.HasPrefix(log, "FIRST\nxxx"))                        // the head
	is.Equal(log[provisionLogHead:provisionLogHead+len(marker)], marker) // says how much is left out
	is.True(strings.HasSuffix(log, "xxx\nLAST\n"))                       // the tail
}

// A session runs the environment version it was created with: an edit
// before it is provisioned and another before its second turn change
// neither its setup script, packages, networking nor env vars, and the
// environment being archived breaks nothing.
func TestEnvironmentEditAfterStartChangesNothing(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{})
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "frozen", SetupScript: `echo "setup v1 sees $FROZEN" > "$HOME/setup.txt"`,
		EnvVars: map[string]string{"FROZEN": "v1"}, Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // version 1
	s := f.create("cat setup.txt\necho \"turn 1 sees $FROZEN\"\n", sessionOpts{environmentID: env.ID})
	// Version 2 could not even provision here: limited networking fails
	// closed without a sandbox, and the package does not exist.
	setup := `echo "setup v2" > "$HOME/setup.txt"`
	limited := store.Networking{Type: "limited", Config: json.RawMessage(`{"allowed_hosts":["example.com"]}`)}
	_, err = f.db.UpdateEnvironment(f.ctx, f.user.ID, env.ID, store.EnvironmentPatch{Version: 1, SetupScript: &setup,
		Packages: map[string][]string{"pip": {"/nonexistent/aod-frozen-check"}}, Networking: &limited,
		EnvVars: map[string]string{"FROZEN": "v2"}})
	is.NoErr(err) // version 2, after the session was created
	f.r.Enqueue(s.ID)
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // provisioned with version 1
	out, _ := f.output(s.ID, 1)
	is.Equal(out, "setup v1 sees v1\nturn 1 sees v1\n") // its setup script and env vars

	_, err = f.db.UpdateEnvironment(f.ctx, f.user.ID, env.ID, store.EnvironmentPatch{Version: 2, EnvVars: map[string]string{"FROZEN": "v3"}})
	is.NoErr(err) // version 3
	_, err = f.db.ArchiveEnvironment(f.ctx, f.user.ID, env.ID)
	is.NoErr(err) // and archived
	_, err = f.db.PromptSession(f.ctx, f.user.ID, s.ID, "echo \"turn 2 sees $FROZEN\"\n", 60)
	is.NoErr(err) // a second turn
	f.r.Enqueue(s.ID)
	is.Equal(f.wait(s.ID).Status, store.StatusCompleted) // runs
	out, _ = f.output(s.ID, 2)
	is.Equal(out, "turn 2 sees v1\n") // with version 1's env vars and networking still
}

func TestRedactorOfASession(t *testing.T) {
	is := is.New(t)
	r := redactor(map[string]string{"A": "env-value-1", "B": "", "C": "x"}, []store.Resource{{Token: "ghp_token123"}, {}})
	is.Equal(r.Redact("env-value-1 ghp_token123 x", false, false), cmdout.Redacted+" "+cmdout.Redacted+" x") // env vars and tokens; empty and short values stay
	is.True(redactor(nil, []store.Resource{{URL: "https://github.com/o/r"}}) == nil)                         // nothing to hide: no redactor
}
