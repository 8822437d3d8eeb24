package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/matryer/is"
)

// A user's secrets are sealed at rest, listed without values, replaced in
// place, kept to their owner, capped per user and gone with the user.
func TestUserSecrets(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	ada, err := db.EnsureUser(ctx, "ada")
	is.NoErr(err)
	bob, err := db.EnsureUser(ctx, "bob")
	is.NoErr(err)

	const value = "sk-ant-first-value-0123456789"
	s, created, err := db.PutSecret(ctx, ada.ID, "ANTHROPIC_API_KEY", value)
	is.NoErr(err)                           // put
	is.True(created)                        // a new name is created
	is.Equal(s.Name, "ANTHROPIC_API_KEY")   // named
	is.True(s.CreatedAt.Equal(s.UpdatedAt)) // set once so far
	is.True(!s.CreatedAt.IsZero())          // with a time
	var raw []byte
	is.NoErr(db.reader.QueryRowContext(ctx, `SELECT value FROM user_secrets WHERE user_id = ? AND name = ?`, ada.ID, "ANTHROPIC_API_KEY").Scan(&raw))
	is.True(len(raw) > 0)                           // a value is stored
	is.True(!bytes.Contains(raw, []byte(value)))    // but not in the clear
	is.True(!bytes.Contains(raw, []byte("sk-ant"))) // not even a part of it

	// A sealed value is bound to its user and name: copied to another
	// row, it does not open.
	_, err = db.writer.ExecContext(ctx, `INSERT INTO user_secrets(user_id, name, value, created_at, updated_at) VALUES (?, 'COPIED', ?, '', '')`, bob.ID, raw)
	is.NoErr(err)
	_, err = db.UserSecrets(ctx, bob.ID)
	is.True(err != nil) // a copied ciphertext fails to decrypt
	_, err = db.writer.ExecContext(ctx, `DELETE FROM user_secrets WHERE user_id = ?`, bob.ID)
	is.NoErr(err)

	again, created, err := db.PutSecret(ctx, ada.ID, "ANTHROPIC_API_KEY", "sk-ant-second-value")
	is.NoErr(err)                                                  // put again
	is.True(!created)                                              // replaces
	is.Equal(FormatTime(again.CreatedAt), FormatTime(s.CreatedAt)) // keeping when it was created
	is.True(!again.UpdatedAt.Before(s.UpdatedAt))                  // and saying when it changed
	_, _, err = db.PutSecret(ctx, ada.ID, "OTHER", "x")
	is.NoErr(err)

	list, err := db.ListSecrets(ctx, ada.ID)
	is.NoErr(err)                               // list
	is.Equal(len(list), 2)                      // one per name
	is.Equal(list[0].Name, "ANTHROPIC_API_KEY") // by name
	is.Equal(list[1].Name, "OTHER")             // both
	vals, err := db.UserSecrets(ctx, ada.ID)
	is.NoErr(err)                                                                               // decrypted for sessions
	is.Equal(vals, map[string]string{"ANTHROPIC_API_KEY": "sk-ant-second-value", "OTHER": "x"}) // the replaced value wins

	none, err := db.ListSecrets(ctx, bob.ID)
	is.NoErr(err)          // another user's list
	is.Equal(len(none), 0) // holds none of ada's
	err = db.DeleteSecret(ctx, bob.ID, "OTHER")
	is.Equal(ErrorCode(err), NotFound)                                   // another user's secret is not found
	is.Equal(ErrorMessage(err), "Secret not found")                      // with the API's detail
	is.NoErr(db.DeleteSecret(ctx, ada.ID, "OTHER"))                      // the owner deletes it
	is.Equal(ErrorCode(db.DeleteSecret(ctx, ada.ID, "OTHER")), NotFound) // once

	for i := range MaxSecretsPerUser {
		_, _, err := db.PutSecret(ctx, bob.ID, fmt.Sprintf("S%03d", i), "v")
		is.NoErr(err) // up to the limit
	}
	_, _, err = db.PutSecret(ctx, bob.ID, "ONE_MORE", "v")
	is.Equal(ErrorCode(err), Conflict) // one more is refused
	_, created, err = db.PutSecret(ctx, bob.ID, "S000", "new")
	is.NoErr(err)     // replacing one at the limit is fine
	is.True(!created) // it is a replace

	_, err = db.writer.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, bob.ID)
	is.NoErr(err) // a user goes
	var n int
	is.NoErr(db.reader.QueryRowContext(ctx, `SELECT count(*) FROM user_secrets WHERE user_id = ?`, bob.ID).Scan(&n))
	is.Equal(n, 0) // and their secrets with them
}

// A session's environment merges, later winning on a name: the server's
// host variables, the user's secrets (as they are now), the environment's
// env vars, the session's own secrets. The model-key check at create
// counts all of them.
func TestSessionEnvPrecedence(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newEnvFixture(t) // env vars TOKEN=first-value, KEPT=same; sessions carry OWN=session-secret
	f.db.SetHostEnv(map[string]string{"HOST_ONLY": "from-host", "USER_WINS": "from-host", "TOKEN": "from-host"})
	for name, v := range map[string]string{"USER_ONLY": "from-user", "USER_WINS": "from-user", "TOKEN": "from-user", "OWN": "from-user"} {
		_, _, err := f.db.PutSecret(ctx, f.userID, name, v)
		is.NoErr(err)
	}
	s := f.session(t, f.env.ID)
	vars, _, err := f.db.SessionSecrets(ctx, s.ID)
	is.NoErr(err)
	is.Equal(vars, map[string]string{
		"HOST_ONLY": "from-host",      // a host variable alone
		"USER_ONLY": "from-user",      // a user secret alone
		"USER_WINS": "from-user",      // a user secret over a host variable
		"TOKEN":     "first-value",    // the environment's over both
		"KEPT":      "same",           // the environment's alone
		"OWN":       "session-secret", // the session's over everything
	})

	_, _, err = f.db.PutSecret(ctx, f.userID, "USER_ONLY", "changed")
	is.NoErr(err)
	vars, _, err = f.db.SessionSecrets(ctx, s.ID)
	is.NoErr(err)
	is.Equal(vars["USER_ONLY"], "changed") // a changed secret reaches the session's next read (its next turn)

	// The model-key check: a claude agent needs an anthropic key.
	model, err := ResolveModel("claude", "", "anthropic/claude-sonnet-4-6")
	is.NoErr(err)
	claude, err := f.db.CreateAgent(ctx, f.userID, AgentInput{Name: "c", Model: model})
	is.NoErr(err)
	in := SessionInput{AgentID: claude.ID, Prompt: "hi", Timeout: 60}
	_, err = f.db.CreateSession(ctx, f.userID, in)
	is.Equal(ErrorCode(err), BadRequest)                                            // no key anywhere
	is.Equal(ErrorMessage(err), "No API key configured for runtime: claude")        // the contract's detail
	hint, _ := AsError(err).Extra["hint"].(string)                                  // with a hint
	is.True(hint != "")                                                             // of where a key can go
	is.True(bytes.Contains([]byte(hint), []byte("PUT /secrets/ANTHROPIC_API_KEY"))) // the API
	is.True(bytes.Contains([]byte(hint), []byte(SecretsPage)))                      // and the UI

	f.db.SetHostEnv(map[string]string{"ANTHROPIC_API_KEY": "host-key"})
	_, err = f.db.CreateSession(ctx, f.userID, in)
	is.NoErr(err) // a host variable counts
	f.db.SetHostEnv(nil)
	_, _, err = f.db.PutSecret(ctx, f.userID, "CLAUDE_CODE_OAUTH_TOKEN", "oauth-token")
	is.NoErr(err)
	_, err = f.db.CreateSession(ctx, f.userID, in)
	is.NoErr(err) // so does a user secret, under any of the runtime's key names
	in.SecretEnvVars = map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": ""}
	_, err = f.db.CreateSession(ctx, f.userID, in)
	is.Equal(ErrorCode(err), BadRequest) // but not one the session blanks out
}
