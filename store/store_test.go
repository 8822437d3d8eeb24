package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrationsApplyTwiceIdempotently(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)
	first, err := db.Migrations(ctx)
	is.NoErr(err)                   // list migrations
	is.True(len(first) >= 1)        // at least the initial migration applied
	is.Equal(first[0], "0001_init") // the initial migration is recorded by name
	u, err := db.EnsureUser(ctx, "alice")
	is.NoErr(err) // write a row before reopening
	is.NoErr(db.Close())

	again := openTest(t, dir)
	second, err := again.Migrations(ctx)
	is.NoErr(err)                // list migrations after reopening
	is.Equal(first, second)      // reopening applies nothing twice
	is.NoErr(again.migrate(ctx)) // running the migrations yet again is a no-op
	third, _ := again.Migrations(ctx)
	is.Equal(first, third) // still the same list
	got, err := again.UserByName(ctx, "alice")
	is.NoErr(err)          // data survives reopening
	is.Equal(got.ID, u.ID) // same user
}

func TestForeignKeysOnEveryConnection(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	// Hold several reader connections at once so the pool has to open new
	// ones; each must have foreign keys on (a DSN pragma, not a one-off Exec).
	var conns []*sql.Conn
	for range 5 {
		c, err := db.reader.Conn(ctx)
		is.NoErr(err) // reader connection
		conns = append(conns, c)
	}
	w, err := db.writer.Conn(ctx)
	is.NoErr(err) // writer connection
	conns = append(conns, w)
	for i, c := range conns {
		var fk int
		is.NoErr(c.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk)) // read pragma
		is.Equal(fk, 1)                                                   // foreign keys on for this connection
		var mode string
		is.NoErr(c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)) // read journal mode
		is.Equal(mode, "wal")                                               // WAL on every connection
		if i < 5 {
			_, err := c.ExecContext(ctx, `INSERT INTO users(id, username, created_at) VALUES ('x', 'x', 'x')`)
			is.True(err != nil) // reader connections are query-only
		}
		c.Close()
	}
	// And the constraint is enforced through the store's writer.
	err = db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys(user_id, key_hash, key_prefix, created_at) VALUES ('no-such-user', 'h', 'p', 'now')`)
		return err
	})
	is.True(err != nil)                                   // a dangling user_id is refused
	is.True(strings.Contains(err.Error(), "FOREIGN KEY")) // by the foreign key
}

func TestFilesArePrivate(t *testing.T) {
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "data")
	openTest(t, dir)
	for _, name := range []string{"", DBFile, KeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		is.NoErr(err)                                    // file exists
		is.Equal(st.Mode().Perm()&0o077, os.FileMode(0)) // no group or other access
	}
}

func TestEncryptionKeyPersistsAndBindsRows(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir)
	u, _ := db.EnsureUser(ctx, "alice")
	e, err := db.CreateEnvironment(ctx, u.ID, EnvironmentInput{Name: "e", EnvVars: map[string]string{"K": "v1"},
		Networking: Networking{Type: "unrestricted"}})
	is.NoErr(err) // create env with a secret
	db.Close()

	db = openTest(t, dir)
	vars, err := db.EnvironmentSecrets(ctx, u.ID, e.ID)
	is.NoErr(err)             // the key file is reused on reopen
	is.Equal(vars["K"], "v1") // and decrypts the secret

	sealed, err := db.crypt.seal([]byte("x"), "environment:a:env_vars")
	is.NoErr(err) // seal
	_, err = db.crypt.open(sealed, "environment:b:env_vars")
	is.True(err != nil) // a ciphertext moved to another row does not open

	other := t.TempDir()
	db2, err := Open(ctx, other, Options{EncryptionKey: strings.Repeat("ab", 32)})
	is.NoErr(err) // a configured hex key works
	defer db2.Close()
	_, err = os.Stat(filepath.Join(other, KeyFile))
	is.True(os.IsNotExist(err)) // and no key file is written then
	_, err = Open(ctx, t.TempDir(), Options{EncryptionKey: "short"})
	is.True(err != nil) // a malformed key is refused
}

func TestConcurrentKeyCreationAgrees(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([]string, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			box, err := loadKey(dir, "")
			if err == nil {
				keys[i] = string(box.encodedKey())
			}
		}()
	}
	wg.Wait()
	for _, k := range keys {
		is.Equal(k, keys[0]) // every opener sees the same key
	}
	is.True(keys[0] != "") // and a key was made
}

func TestBackupIsUsable(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	u, _ := db.EnsureUser(ctx, "alice")
	e, err := db.CreateEnvironment(ctx, u.ID, EnvironmentInput{Name: "e", EnvVars: map[string]string{"K": "secret"},
		Networking: Networking{Type: "unrestricted"}})
	is.NoErr(err) // create env
	dest := filepath.Join(t.TempDir(), "backup")
	is.NoErr(db.Backup(ctx, dest))       // backup while open
	is.True(db.Backup(ctx, dest) != nil) // refuses to overwrite a backup

	restored := openTest(t, dest)
	vars, err := restored.EnvironmentSecrets(ctx, u.ID, e.ID)
	is.NoErr(err)                 // the backup's key decrypts the backup's secrets
	is.Equal(vars["K"], "secret") // same value
}

func TestIDsSortByCreation(t *testing.T) {
	is := is.New(t)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = NewID()
	}
	is.True(sort.StringsAreSorted(ids)) // monotonic within one millisecond too
	for _, id := range ids[:10] {
		c, ok := CanonicalID(strings.ToUpper(id))
		is.True(ok)     // upper case is accepted
		is.Equal(c, id) // and canonicalised to lower case
	}
	for _, bad := range []string{"", "nope", "01234567-89ab-cdef-0123-456789abcdeg", "0123456789abcdef0123456789abcdef", "01234567-89ab-cdef-0123-456789abcdef0"} {
		_, ok := CanonicalID(bad)
		is.True(!ok) // not a UUID
	}
}

func TestTimeFormat(t *testing.T) {
	is := is.New(t)
	ts := time.Date(2026, 4, 17, 14, 0, 0, 0, time.FixedZone("x", 3600))
	is.Equal(FormatTime(ts), "2026-04-17T13:00:00.000000+00:00") // UTC, microseconds, explicit offset
	back, err := ParseTime("2026-04-17T13:00:00.000000+00:00")
	is.NoErr(err)           // parses its own format
	is.True(back.Equal(ts)) // round trip
}

func TestPyRepr(t *testing.T) {
	is := is.New(t)
	is.Equal(PyRepr("x"), "'x'")           // single quotes
	is.Equal(PyRepr("it's"), `"it's"`)     // double quotes around a single quote
	is.Equal(PyRepr(`a'b"c`), `'a\'b"c'`)  // both: escape the single quote
	is.Equal(PyRepr("a\\b\n"), `'a\\b\n'`) // backslash and newline escaped
}

func TestResolveModel(t *testing.T) {
	cases := []struct {
		runtime, provider, model string
		want                     Model
		code                     Code
		msg                      string
	}{
		{"claude", "", "anthropic/claude-sonnet-4-6", Model{"claude", "anthropic", "anthropic/claude-sonnet-4-6"}, "", ""},
		{"shell", "", "local/shell", Model{"shell", "local", "local/shell"}, "", ""},
		{"opencode", "", "google/gemini-2.5-pro", Model{"opencode", "google", "google/gemini-2.5-pro"}, "", ""},
		{"nope", "", "anthropic/x", Model{}, BadRequest, "Unknown runtime: nope. Must be one of: ['claude', 'codex', 'gemini', 'opencode', 'shell']"},
		{"claude", "", "claude-sonnet", Model{}, Invalid, "Unknown model: claude-sonnet"},
		{"claude", "", "acme/x", Model{}, Invalid, "Unknown model: acme/x"},
		{"shell", "", "local/other", Model{}, Invalid, "Unknown model: local/other"},
		{"claude", "", "openai/gpt-4.1", Model{}, Invalid, "Runtime claude cannot serve model openai/gpt-4.1: provider openai not in ['anthropic']"},
		{"", "anthropic", "claude-sonnet-4-6", Model{"claude", "anthropic", "anthropic/claude-sonnet-4-6"}, "", ""},
		{"", "openai", "openai/gpt-5", Model{"codex", "openai", "openai/gpt-5"}, "", ""},
		{"", "local", "shell", Model{"shell", "local", "local/shell"}, "", ""},
		{"opencode", "openai", "gpt-5", Model{"opencode", "openai", "openai/gpt-5"}, "", ""},
		{"", "anthropic", "  ", Model{}, Invalid, "Model must be a non-empty string"},
		{"", "anthropic", "anthropic/", Model{}, Invalid, "Model must be a non-empty string"},
		{"", "anthropic", "openai/gpt-5", Model{}, Invalid, "Model provider prefix 'openai' does not match provider 'anthropic'"},
		{"", "acme", "x", Model{}, Invalid, "Unknown provider: acme. Must be one of: ['anthropic', 'google', 'local', 'openai']"},
		{"codex", "anthropic", "claude-x", Model{}, Invalid, "Runtime codex cannot serve model anthropic/claude-x: provider anthropic not in ['openai']"},
	}
	for _, c := range cases {
		t.Run(c.runtime+"|"+c.provider+"|"+c.model, func(t *testing.T) {
			is := is.New(t)
			got, err := ResolveModel(c.runtime, c.provider, c.model)
			if c.code == "" {
				is.NoErr(err)         // resolves
				is.Equal(got, c.want) // to the canonical triple
				return
			}
			is.Equal(ErrorCode(err), c.code)   // error class
			is.Equal(ErrorMessage(err), c.msg) // exact message
		})
	}
}
