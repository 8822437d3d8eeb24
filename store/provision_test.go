package store

import (
	"context"
	"testing"

	"github.com/matryer/is"
)

// envFixture is a real database with one user, a shell agent and an
// environment at version 1.
type envFixture struct {
	db      *DB
	userID  string
	agentID string
	env     *Environment
}

func newEnvFixture(t *testing.T) *envFixture {
	t.Helper()
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	u, err := db.EnsureUser(ctx, "ada")
	if err != nil {
		t.Fatalf("user: %v", err)
	}
	model, err := ResolveModel("shell", "", ShellModel)
	if err != nil {
		t.Fatalf("model: %v", err)
	}
	a, err := db.CreateAgent(ctx, u.ID, AgentInput{Name: "sh", Model: model})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	env, err := db.CreateEnvironment(ctx, u.ID, EnvironmentInput{
		Name: "py", Packages: map[string][]string{"pip": {"pytest"}}, SetupScript: "echo one",
		EnvVars: map[string]string{"TOKEN": "first-value", "KEPT": "same"}, Networking: Networking{Type: "unrestricted"},
	})
	if err != nil {
		t.Fatalf("environment: %v", err)
	}
	return &envFixture{db: db, userID: u.ID, agentID: a.ID, env: env}
}

func (f *envFixture) session(t *testing.T, envID string) *Session {
	t.Helper()
	s, err := f.db.CreateSession(context.Background(), f.userID, SessionInput{AgentID: f.agentID, EnvironmentID: envID,
		Prompt: "true", Timeout: 60, SecretEnvVars: map[string]string{"OWN": "session-secret"}})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return s
}

// A session runs the environment version it was created with: an edit
// (packages, setup script, networking, env vars) or an archive afterwards
// changes nothing for it; a later session gets the edit. Sessions from
// before versions were recorded (0) run the environment as it is now.
func TestSessionRunsItsEnvironmentVersion(t *testing.T) {
	ctx := context.Background()
	f := newEnvFixture(t)
	first := f.session(t, f.env.ID)
	legacy := f.session(t, f.env.ID)
	_, err := f.db.writer.ExecContext(ctx, `UPDATE sessions SET environment_version = 0 WHERE id = ?`, legacy.ID)
	if err != nil {
		t.Fatal(err)
	}
	setup := "echo two"
	limited := Networking{Type: "limited", Config: []byte(`{"allowed_hosts":["example.com"]}`)}
	_, err = f.db.UpdateEnvironment(ctx, f.userID, f.env.ID, EnvironmentPatch{Version: 1,
		Packages: map[string][]string{"npm": {"cowsay"}}, SetupScript: &setup, Networking: &limited,
		EnvVars: map[string]string{"TOKEN": "second-value"}})
	if err != nil {
		t.Fatal(err)
	}
	second := f.session(t, f.env.ID)
	if _, err := f.db.ArchiveEnvironment(ctx, f.userID, f.env.ID); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		id         string
		version    int
		setup      string
		pkgs       map[string][]string
		networking string
		vars       map[string]string
	}{
		{"created before the edit", first.ID, 1, "echo one", map[string][]string{"pip": {"pytest"}}, "unrestricted",
			map[string]string{"TOKEN": "first-value", "KEPT": "same", "OWN": "session-secret"}},
		{"created after the edit", second.ID, 2, "echo two", map[string][]string{"npm": {"cowsay"}}, "limited",
			map[string]string{"TOKEN": "second-value", "OWN": "session-secret"}},
		{"created before versions were recorded", legacy.ID, 2, "echo two", map[string][]string{"npm": {"cowsay"}}, "limited",
			map[string]string{"TOKEN": "second-value", "OWN": "session-secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			e, err := f.db.SessionEnvironment(ctx, tt.id)
			is.NoErr(err)                              // the archived environment still reads
			is.Equal(e.ID, f.env.ID)                   // the session's environment
			is.Equal(e.UserID, f.userID)               // its owner
			is.Equal(e.Version, tt.version)            // at the version the session runs
			is.Equal(e.SetupScript, tt.setup)          // that version's setup script
			is.Equal(e.Packages, tt.pkgs)              // its packages
			is.Equal(e.Networking.Type, tt.networking) // its networking
			is.True(e.ArchivedAt != nil)               // and it says the environment is archived now
			vars, _, err := f.db.SessionSecrets(ctx, tt.id)
			is.NoErr(err)           // the secrets decrypt
			is.Equal(vars, tt.vars) // that version's env vars, with the session's own secrets
		})
	}

	t.Run("no environment", func(t *testing.T) {
		is := is.New(t)
		none := f.session(t, "")
		e, err := f.db.SessionEnvironment(ctx, none.ID)
		is.NoErr(err)     // a session without an environment is fine
		is.True(e == nil) // and has none
		_, err = f.db.SessionEnvironment(ctx, "00000000-0000-4000-8000-000000000000")
		is.Equal(ErrorCode(err), NotFound) // an unknown session is not found
	})
}

// The provisioning log is the owner's only, replaced by a later write,
// empty before any, dropped for a gone session and deleted with it.
func TestProvisionLog(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newEnvFixture(t)
	s := f.session(t, "")
	log, err := f.db.ProvisionLog(ctx, f.userID, s.ID)
	is.NoErr(err)     // a session without a log reads
	is.Equal(log, "") // as empty

	is.NoErr(f.db.SetProvisionLog(ctx, s.ID, "first\n"))       // stored
	is.NoErr(f.db.SetProvisionLog(ctx, s.ID, "second\nlog\n")) // and replaced
	log, err = f.db.ProvisionLog(ctx, f.userID, s.ID)
	is.NoErr(err)                  // read back
	is.Equal(log, "second\nlog\n") // the latest

	bob, err := f.db.EnsureUser(ctx, "bob")
	is.NoErr(err) // another user
	_, err = f.db.ProvisionLog(ctx, bob.ID, s.ID)
	is.Equal(ErrorCode(err), NotFound) // cannot read it
	_, err = f.db.ProvisionLog(ctx, f.userID, "00000000-0000-4000-8000-000000000000")
	is.Equal(ErrorCode(err), NotFound) // nor anyone an unknown session's

	is.NoErr(f.db.FailSession(ctx, s.ID, "x"))        // end it
	is.NoErr(f.db.DeleteSession(ctx, f.userID, s.ID)) // and delete it
	is.NoErr(f.db.SetProvisionLog(ctx, s.ID, "late")) // a gone session's late log is dropped, not an error
	var rows int
	is.NoErr(f.db.reader.QueryRowContext(ctx, `SELECT count(*) FROM session_provision_logs`).Scan(&rows)) // count the logs left
	is.Equal(rows, 0)                                                                                     // the log went with the session
}
