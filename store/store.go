// Package store owns aod's state: the SQLite database (one writer connection,
// a read pool, embedded migrations), the domain types and their queries, and
// encryption of secrets at rest.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"golang.org/x/crypto/bcrypt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the cgo-free "sqlite" driver
)

// DBFile and KeyFile are the names of the database and the encryption key
// inside the data directory.
const (
	DBFile  = "aod.db"
	KeyFile = "aod.key"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is an open aod data directory.
type DB struct {
	dir    string
	path   string
	writer *pool // exactly one connection; every write goes through it
	reader *pool // query_only pool for reads
	crypt  *cipherBox
	now    func() time.Time
	notify notifier
	// appended counts the log rows stored since Open (a metric).
	appended atomic.Int64
	// hostEnv is the server's variables every session gets (SetHostEnv).
	hostEnv atomic.Pointer[map[string]string]
	// passwordCost is the bcrypt cost of new password hashes; dummyHash
	// is one of that cost, made on first use (see CheckPassword).
	passwordCost int
	dummyHash    func() []byte
}

// Options tune Open. The zero value is what `aod serve` uses.
type Options struct {
	// EncryptionKey, when set, is used instead of the key file (32 bytes,
	// hex or base64 encoded, as AOD_ENCRYPTION_KEY gives it).
	EncryptionKey string
	// ReadConns caps the read pool (default 8).
	ReadConns int
	// PasswordCost is the bcrypt cost of web UI passwords (default
	// bcrypt.DefaultCost). Tests that sign many users up lower it: under
	// the race detector a default-cost hash takes about a second.
	PasswordCost int
}

// Open creates dir if needed, opens (or creates) the database in it, applies
// pending migrations and loads (or creates, 0600) the encryption key.
func Open(ctx context.Context, dir string, opt Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	box, err := loadKey(dir, opt.EncryptionKey)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, DBFile)
	// Create the file ourselves so it (and the -wal/-shm files SQLite derives
	// from it) is private to the owner.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	// busy_timeout comes first so the pragmas after it wait instead of failing
	// when another process (the CLI beside a running server) holds the lock.
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	writer, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	reader, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		writer.Close()
		return nil, err
	}
	n := opt.ReadConns
	if n <= 0 {
		n = 8
	}
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	db := &DB{dir: dir, path: path, writer: newPool(writer), reader: newPool(reader), crypt: box, now: time.Now,
		passwordCost: cmp.Or(opt.PasswordCost, bcrypt.DefaultCost)}
	// A login for an unknown user costs as much as a real one. The hash is
	// made on first use: it costs ~60 ms, which every aod process (the
	// server, each `aod token` run) would otherwise pay at start.
	db.dummyHash = sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), db.passwordCost)
		return h
	})
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.reader.Close(), db.writer.Close())
}

// Dir is the data directory.
func (db *DB) Dir() string { return db.dir }

// migrate applies every embedded migration not yet recorded, each in its own
// transaction, in file-name order. Files are append-only: never edit one
// that has shipped.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    TEXT PRIMARY KEY,
		applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return err
		}
		err = db.write(ctx, func(tx *Tx) error {
			var done int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&done); err != nil {
				return err
			}
			if done > 0 {
				return nil
			}
			if _, err := tx.Tx.ExecContext(ctx, string(body)); err != nil { // a script: not kept
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, version, tx.Stamp())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

// Migrations lists the applied migration versions in order.
func (db *DB) Migrations(ctx context.Context) ([]string, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Tx is a write transaction carrying one "now" for every row it touches.
type Tx struct {
	*sql.Tx
	Now time.Time
	db  *DB

	missed []string // queries to prepare once the transaction has ended
}

// Stamp is the transaction's time in aod's timestamp format.
func (tx *Tx) Stamp() string { return FormatTime(tx.Now) }

// write runs fn in an immediate transaction on the single writer connection.
func (db *DB) write(ctx context.Context, fn func(tx *Tx) error) error {
	sqlTx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{Tx: sqlTx, Now: db.now().UTC(), db: db}
	defer tx.keepMissed(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Ping checks that the database answers a query (for /health).
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Backup writes a consistent copy of the database (VACUUM INTO) and the key
// file into destDir, which must not already hold a backup. It runs on its own
// connection so a live server keeps writing while it reads.
func (db *DB) Backup(ctx context.Context, destDir string) error {
	if err := os.MkdirAll(destDir, 0o700); err != nil {
		return err
	}
	destDB := filepath.Join(destDir, DBFile)
	destKey := filepath.Join(destDir, KeyFile)
	for _, p := range []string{destDB, destKey} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists; choose an empty directory", p)
		}
	}
	conn, err := sql.Open("sqlite", "file:"+db.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, destDB); err != nil {
		return fmt.Errorf("vacuum into %s: %w", destDB, err)
	}
	if err := os.Chmod(destDB, 0o600); err != nil {
		return err
	}
	return os.WriteFile(destKey, db.crypt.encodedKey(), 0o600)
}

// querier is what the read pool and a write Tx have in common, so a lookup
// helper serves both a plain read and a check inside a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface{ Scan(dest ...any) error }

// nullString maps "" to NULL for optional text columns.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// parseNullTime reads an optional timestamp column (nil for NULL).
func parseNullTime(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	t, err := ParseTime(s.String)
	if err != nil {
		return nil
	}
	return &t
}

// SortedKeys returns m's keys in order (env files, error lists and config
// files are written in a stable order).
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
