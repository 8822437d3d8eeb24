package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// User owns agents, environments, sessions and API keys.
type User struct {
	ID        string
	Username  string
	CreatedAt time.Time
	// Operator is set on a request's user when its API key is an operator
	// key (see CreateOperatorKey).
	Operator bool
}

// MaxUsernameLen bounds a username.
const MaxUsernameLen = 150

// ValidUsername reports whether name is acceptable: 1-150 characters of
// letters, digits and @.+-_ (what people expect from a login name).
func ValidUsername(name string) bool {
	if name == "" || len(name) > MaxUsernameLen {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("@.+-_", r):
		default:
			return false
		}
	}
	return true
}

// minPasswordLen is the shortest password the UI accepts.
const minPasswordLen = 8

// EnsureUser returns the user with that username, creating it if needed.
func (db *DB) EnsureUser(ctx context.Context, username string) (*User, error) {
	if !ValidUsername(username) {
		return nil, Errorf(Invalid, "Invalid username %q: use 1-150 letters, digits and @.+-_", username)
	}
	var u *User
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		u, err = userByName(ctx, tx, username)
		if err == nil || ErrorCode(err) != NotFound {
			return err
		}
		u = &User{ID: NewID(), Username: username, CreatedAt: tx.Now}
		_, err = tx.ExecContext(ctx, `INSERT INTO users(id, username, created_at) VALUES (?, ?, ?)`, u.ID, u.Username, tx.Stamp())
		return err
	})
	return u, err
}

// RegisterUser creates a user with a password (bcrypt). A taken username
// is a Conflict.
func (db *DB) RegisterUser(ctx context.Context, username, password string) (*User, error) {
	if !ValidUsername(username) {
		return nil, Errorf(Invalid, "Enter a valid username: up to 150 letters, digits and @/./+/-/_ characters.")
	}
	if len(password) < minPasswordLen {
		return nil, Errorf(Invalid, "This password is too short. It must contain at least %d characters.", minPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), db.passwordCost)
	if err != nil {
		return nil, Errorf(Invalid, "Password is too long.")
	}
	var u *User
	err = db.write(ctx, func(tx *Tx) error {
		if _, err := userByName(ctx, tx, username); err == nil {
			return Errorf(Conflict, "A user with that username already exists.")
		}
		u = &User{ID: NewID(), Username: username, CreatedAt: tx.Now}
		_, err := tx.ExecContext(ctx, `INSERT INTO users(id, username, password_hash, created_at) VALUES (?, ?, ?, ?)`,
			u.ID, username, string(hash), tx.Stamp())
		return err
	})
	return u, err
}

// UserByName looks a user up by username.
func (db *DB) UserByName(ctx context.Context, username string) (*User, error) {
	return userByName(ctx, db.reader, username)
}

func userByName(ctx context.Context, q querier, username string) (*User, error) {
	var u User
	var created string
	err := q.QueryRowContext(ctx, `SELECT id, username, created_at FROM users WHERE username = ?`, username).Scan(&u.ID, &u.Username, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(NotFound, "User not found: %s", username)
	}
	if err != nil {
		return nil, err
	}
	u.CreatedAt, _ = ParseTime(created)
	return &u, nil
}

func userByID(ctx context.Context, q querier, id string) (*User, error) {
	var u User
	var created string
	err := q.QueryRowContext(ctx, `SELECT id, username, created_at FROM users WHERE id = ?`, id).Scan(&u.ID, &u.Username, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(NotFound, "User not found")
	}
	u.CreatedAt, _ = ParseTime(created)
	return &u, err
}

// SetPassword sets (or replaces) a user's web UI password.
func (db *DB) SetPassword(ctx context.Context, username, password string) error {
	if len(password) < minPasswordLen {
		return Errorf(Invalid, "This password is too short. It must contain at least %d characters.", minPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), db.passwordCost)
	if err != nil {
		return Errorf(Invalid, "Password is too long.")
	}
	return db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE username = ?`, string(hash), username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(NotFound, "User not found: %s", username)
		}
		return nil
	})
}

// CheckPassword returns the user when the password matches; any failure is
// the same Unauthorized error (no hint whether the user exists).
func (db *DB) CheckPassword(ctx context.Context, username, password string) (*User, error) {
	var u User
	var hash, created string
	err := db.reader.QueryRowContext(ctx, `SELECT id, username, password_hash, created_at FROM users WHERE username = ?`, username).
		Scan(&u.ID, &u.Username, &hash, &created)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if err != nil || hash == "" {
		bcrypt.CompareHashAndPassword(db.dummyHash(), []byte(password))
		return nil, Errorf(Unauthorized, "Please enter a correct username and password.")
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return nil, Errorf(Unauthorized, "Please enter a correct username and password.")
	}
	u.CreatedAt, _ = ParseTime(created)
	return &u, nil
}

// SetUserQuota sets a user's own concurrent-session limit (0 = the server default).
func (db *DB) SetUserQuota(ctx context.Context, username string, limit int) error {
	return db.write(ctx, func(tx *Tx) error {
		var v any
		if limit > 0 {
			v = limit
		}
		res, err := tx.ExecContext(ctx, `UPDATE users SET max_concurrent_sessions = ? WHERE username = ?`, v, username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(NotFound, "User not found: %s", username)
		}
		return nil
	})
}
