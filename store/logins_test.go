package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestUILogins(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)

	_, err := db.RegisterUser(ctx, "ada", "short")
	is.Equal(ErrorCode(err), Invalid) // passwords have a minimum length
	u, err := db.RegisterUser(ctx, "ada", "correct horse battery")
	is.NoErr(err) // register
	_, err = db.RegisterUser(ctx, "ada", "another password")
	is.Equal(ErrorCode(err), Conflict) // usernames are unique

	_, err = db.CheckPassword(ctx, "ada", "wrong password")
	is.Equal(ErrorCode(err), Unauthorized) // wrong password
	_, err = db.CheckPassword(ctx, "nobody", "correct horse battery")
	is.Equal(ErrorMessage(err), "Please enter a correct username and password.") // unknown user: the same message
	got, err := db.CheckPassword(ctx, "ada", "correct horse battery")
	is.NoErr(err)          // right password
	is.Equal(got.ID, u.ID) // the user

	s, err := db.CreateUISession(ctx, u.ID, time.Hour)
	is.NoErr(err) // log in
	back, err := db.UISessionByToken(ctx, s.Token)
	is.NoErr(err)                // the cookie token resolves
	is.Equal(back.User.ID, u.ID) // to the user
	is.Equal(back.CSRF, s.CSRF)  // with its CSRF token

	const raw = "aod_welcome_key_value_0123456789abcdefghijklmnopq"
	is.NoErr(db.StashWelcomeKey(ctx, s.Token, raw)) // stash the onboarding key
	for _, name := range []string{DBFile, DBFile + "-wal"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		is.True(!bytes.Contains(b, []byte(raw)))     // the stashed key is encrypted on disk
		is.True(!bytes.Contains(b, []byte(s.Token))) // and the cookie token is stored hashed
	}
	k, err := db.PopWelcomeKey(ctx, s.Token)
	is.NoErr(err)    // first read
	is.Equal(k, raw) // gives the key
	k, err = db.PopWelcomeKey(ctx, s.Token)
	is.NoErr(err)   // second read
	is.Equal(k, "") // gives nothing: shown once

	is.NoErr(db.DeleteUISession(ctx, s.Token)) // log out
	_, err = db.UISessionByToken(ctx, s.Token)
	is.Equal(ErrorCode(err), Unauthorized) // the token no longer works

	expired, err := db.CreateUISession(ctx, u.ID, -time.Minute)
	is.NoErr(err) // an already expired login
	_, err = db.UISessionByToken(ctx, expired.Token)
	is.Equal(ErrorCode(err), Unauthorized) // is refused
}
