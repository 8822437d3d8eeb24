package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// UISession is a web UI login: the cookie carries Token (stored hashed),
// forms carry CSRF.
type UISession struct {
	Token     string // only set when created
	User      User
	CSRF      string
	ExpiresAt time.Time
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// minPasswordLen is the shortest password the UI accepts.
const minPasswordLen = 8

// RegisterUser creates a user with a password (bcrypt). A taken username
// is a Conflict.
func (db *DB) RegisterUser(ctx context.Context, username, password string) (*User, error) {
	if !ValidUsername(username) {
		return nil, Errorf(Invalid, "Enter a valid username: up to 150 letters, digits and @/./+/-/_ characters.")
	}
	if len(password) < minPasswordLen {
		return nil, Errorf(Invalid, "This password is too short. It must contain at least %d characters.", minPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
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

// SetPassword sets (or replaces) a user's web UI password.
func (db *DB) SetPassword(ctx context.Context, username, password string) error {
	if len(password) < minPasswordLen {
		return Errorf(Invalid, "This password is too short. It must contain at least %d characters.", minPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
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

// dummyHash makes a login for an unknown user cost as much as a real one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

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
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, Errorf(Unauthorized, "Please enter a correct username and password.")
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return nil, Errorf(Unauthorized, "Please enter a correct username and password.")
	}
	u.CreatedAt, _ = ParseTime(created)
	return &u, nil
}

// CreateUISession logs a user in for ttl.
func (db *DB) CreateUISession(ctx context.Context, userID string, ttl time.Duration) (*UISession, error) {
	s := &UISession{Token: randomToken(), CSRF: randomToken()}
	err := db.write(ctx, func(tx *Tx) error {
		s.ExpiresAt = tx.Now.Add(ttl)
		// Expired logins are swept as new ones are made.
		if _, err := tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE expires_at < ?`, tx.Stamp()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ui_sessions(token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?,?,?,?,?)`,
			HashToken(s.Token), userID, s.CSRF, tx.Stamp(), FormatTime(s.ExpiresAt))
		return err
	})
	if err != nil {
		return nil, err
	}
	u, err := db.userByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	s.User = *u
	return s, nil
}

func (db *DB) userByID(ctx context.Context, id string) (*User, error) {
	var u User
	var created string
	err := db.reader.QueryRowContext(ctx, `SELECT id, username, created_at FROM users WHERE id = ?`, id).Scan(&u.ID, &u.Username, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(NotFound, "User not found")
	}
	u.CreatedAt, _ = ParseTime(created)
	return &u, err
}

// UISessionByToken resolves a cookie token; expired or unknown → Unauthorized.
func (db *DB) UISessionByToken(ctx context.Context, token string) (*UISession, error) {
	var s UISession
	var expires, created string
	err := db.reader.QueryRowContext(ctx, `SELECT u.id, u.username, u.created_at, s.csrf_token, s.expires_at
		FROM ui_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`, HashToken(token)).
		Scan(&s.User.ID, &s.User.Username, &created, &s.CSRF, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(Unauthorized, "Not logged in")
	}
	if err != nil {
		return nil, err
	}
	s.User.CreatedAt, _ = ParseTime(created)
	s.ExpiresAt, _ = ParseTime(expires)
	if !db.now().Before(s.ExpiresAt) {
		return nil, Errorf(Unauthorized, "Not logged in")
	}
	return &s, nil
}

// DeleteUISession logs out.
func (db *DB) DeleteUISession(ctx context.Context, token string) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE token_hash = ?`, HashToken(token))
		return err
	})
}

// StashWelcomeKey keeps a raw API key with the login (encrypted) so the
// welcome page can show it exactly once.
func (db *DB) StashWelcomeKey(ctx context.Context, token, rawKey string) error {
	sealed, err := db.crypt.seal([]byte(rawKey), "ui_session:"+HashToken(token)+":pending_key")
	if err != nil {
		return err
	}
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE ui_sessions SET pending_key = ? WHERE token_hash = ?`, sealed, HashToken(token))
		return err
	})
}

// PopWelcomeKey returns the stashed key and forgets it ("" when none).
func (db *DB) PopWelcomeKey(ctx context.Context, token string) (string, error) {
	var raw string
	err := db.write(ctx, func(tx *Tx) error {
		var sealed []byte
		err := tx.QueryRowContext(ctx, `SELECT pending_key FROM ui_sessions WHERE token_hash = ?`, HashToken(token)).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) || len(sealed) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		plain, err := db.crypt.open(sealed, "ui_session:"+HashToken(token)+":pending_key")
		if err != nil {
			return err
		}
		raw = string(plain)
		_, err = tx.ExecContext(ctx, `UPDATE ui_sessions SET pending_key = NULL WHERE token_hash = ?`, HashToken(token))
		return err
	})
	return raw, err
}

// RevokeAPIKey deactivates one of the user's keys by id (the UI's revoke
// button); another user's key is NotFound.
func (db *DB) RevokeAPIKey(ctx context.Context, userID string, keyID int64) (*APIKey, error) {
	var k APIKey
	err := db.write(ctx, func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT id, user_id, key_prefix, name FROM api_keys WHERE id = ? AND user_id = ?`, keyID, userID).
			Scan(&k.ID, &k.UserID, &k.Prefix, &k.Name)
		if errors.Is(err, sql.ErrNoRows) {
			return Errorf(NotFound, "API key not found")
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE api_keys SET is_active = 0 WHERE id = ?`, keyID)
		return err
	})
	return &k, err
}

// Counts are the dashboard's numbers.
type Counts struct{ Agents, Environments, Sessions, ActiveKeys int }

// DashboardCounts counts a user's non-archived agents and environments,
// all sessions and active, unexpired API keys.
func (db *DB) DashboardCounts(ctx context.Context, userID string) (Counts, error) {
	var c Counts
	err := db.reader.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM agents WHERE user_id = ?1 AND archived_at IS NULL),
		(SELECT count(*) FROM environments WHERE user_id = ?1 AND archived_at IS NULL),
		(SELECT count(*) FROM sessions WHERE user_id = ?1),
		(SELECT count(*) FROM api_keys WHERE user_id = ?1 AND is_active = 1 AND (expires_at IS NULL OR expires_at > ?2))`,
		userID, FormatTime(db.now())).Scan(&c.Agents, &c.Environments, &c.Sessions, &c.ActiveKeys)
	return c, err
}
