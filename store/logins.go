package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"time"
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

// CreateUISession logs a user in for ttl.
func (db *DB) CreateUISession(ctx context.Context, userID string, ttl time.Duration) (*UISession, error) {
	s := &UISession{Token: randomToken(), CSRF: randomToken()}
	err := db.write(ctx, func(tx *Tx) error {
		s.ExpiresAt = tx.Now.Add(ttl)
		// Expired logins are swept as new ones are made.
		if err := sweepUISessions(ctx, tx); err != nil {
			return err
		}
		return insertUISession(ctx, tx, userID, s)
	})
	if err != nil {
		return nil, err
	}
	u, err := userByID(ctx, db.reader, userID)
	if err != nil {
		return nil, err
	}
	s.User = *u
	return s, nil
}

func sweepUISessions(ctx context.Context, tx *Tx) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE expires_at < ?`, tx.Stamp())
	return err
}

func insertUISession(ctx context.Context, tx *Tx, userID string, s *UISession) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ui_sessions(token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?,?,?,?,?)`,
		HashToken(s.Token), userID, s.CSRF, tx.Stamp(), FormatTime(s.ExpiresAt))
	return err
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
	sealed, err := db.crypt.seal([]byte(rawKey), welcomeKeyBinding(token))
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
		sealed, err := stashedWelcomeKey(ctx, tx, token)
		if errors.Is(err, sql.ErrNoRows) || len(sealed) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		plain, err := db.crypt.open(sealed, welcomeKeyBinding(token))
		if err != nil {
			return err
		}
		raw = string(plain)
		return clearWelcomeKey(ctx, tx, token)
	})
	return raw, err
}

// welcomeKeyBinding ties a sealed welcome key to its login row.
func welcomeKeyBinding(token string) string { return "ui_session:" + HashToken(token) + ":pending_key" }

func stashedWelcomeKey(ctx context.Context, tx *Tx, token string) ([]byte, error) {
	var sealed []byte
	err := tx.QueryRowContext(ctx, `SELECT pending_key FROM ui_sessions WHERE token_hash = ?`, HashToken(token)).Scan(&sealed)
	return sealed, err
}

func clearWelcomeKey(ctx context.Context, tx *Tx, token string) error {
	_, err := tx.ExecContext(ctx, `UPDATE ui_sessions SET pending_key = NULL WHERE token_hash = ?`, HashToken(token))
	return err
}
