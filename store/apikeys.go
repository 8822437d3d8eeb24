package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
)

// APIKey is a stored key; the raw token is never stored.
type APIKey struct {
	ID        int64
	UserID    string
	Prefix    string
	Name      string
	Active    bool
	Admin     bool // an operator key: it may also create users and their keys
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// MaxKeyNameLen bounds an API key's label.
const MaxKeyNameLen = 100

// TokenPrefix starts every raw API token.
const TokenPrefix = "aod_"

// keyPrefixLen is how much of a raw token is kept for display.
const keyPrefixLen = 12

// HashToken is the stored form of a raw token: lowercase hex SHA-256.
func HashToken(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// CreateAPIKey mints a new token for the user and returns the stored key and
// the raw token, which is shown once and never again.
func (db *DB) CreateAPIKey(ctx context.Context, userID, name string, expiresAt *time.Time) (*APIKey, string, error) {
	return db.createAPIKey(ctx, userID, name, expiresAt, false)
}

// CreateOperatorKey is CreateAPIKey for an operator key, which may also
// create users and their keys over HTTP. Only a shell on the server makes
// one (`aod token create --admin`); no HTTP route does.
func (db *DB) CreateOperatorKey(ctx context.Context, userID, name string, expiresAt *time.Time) (*APIKey, string, error) {
	return db.createAPIKey(ctx, userID, name, expiresAt, true)
}

func (db *DB) createAPIKey(ctx context.Context, userID, name string, expiresAt *time.Time, admin bool) (*APIKey, string, error) {
	if len([]rune(name)) > MaxKeyNameLen {
		return nil, "", Errorf(Invalid, "Key name must be at most %d characters", MaxKeyNameLen)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, "", err
	}
	raw := TokenPrefix + base64.RawURLEncoding.EncodeToString(buf)
	k := &APIKey{UserID: userID, Prefix: raw[:keyPrefixLen], Name: name, Active: true, Admin: admin, ExpiresAt: expiresAt}
	err := db.write(ctx, func(tx *Tx) error {
		k.CreatedAt = tx.Now
		var exp any
		if expiresAt != nil {
			exp = FormatTime(*expiresAt)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO api_keys(user_id, key_hash, key_prefix, name, is_active, is_admin, created_at, expires_at)
			VALUES (?, ?, ?, ?, 1, ?, ?, ?)`, userID, HashToken(raw), k.Prefix, name, admin, tx.Stamp(), exp)
		if err != nil {
			return err
		}
		k.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return k, raw, nil
}

// Authenticate resolves a raw bearer token to its user. The errors carry the
// contract's 401 strings.
func (db *DB) Authenticate(ctx context.Context, raw string) (*User, error) {
	var u User
	var active bool
	var expires sql.NullString
	err := db.reader.QueryRowContext(ctx, `SELECT u.id, u.username, k.is_active, k.is_admin, k.expires_at
		FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?`, HashToken(raw)).
		Scan(&u.ID, &u.Username, &active, &u.Operator, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(Unauthorized, "Invalid API key")
	}
	if err != nil {
		return nil, err
	}
	if !active {
		return nil, Errorf(Unauthorized, "API key is inactive")
	}
	if expires.Valid {
		t, err := ParseTime(expires.String)
		if err != nil || !db.now().Before(t) {
			return nil, Errorf(Unauthorized, "API key has expired")
		}
	}
	return &u, nil
}

// ListAPIKeys lists a user's keys, newest first, active and revoked.
func (db *DB) ListAPIKeys(ctx context.Context, userID string) ([]*APIKey, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, user_id, key_prefix, name, is_active, is_admin, created_at, expires_at, revoked_at
		FROM api_keys WHERE user_id = ? ORDER BY id DESC`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*APIKey
	for rows.Next() {
		var k APIKey
		var created string
		var expires, revoked sql.NullString
		if err := rows.Scan(&k.ID, &k.UserID, &k.Prefix, &k.Name, &k.Active, &k.Admin, &created, &expires, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt, _ = ParseTime(created)
		k.ExpiresAt, k.RevokedAt = parseNullTime(expires), parseNullTime(revoked)
		out = append(out, &k)
	}
	return out, rows.Err()
}

// RevokeAPIKey deactivates one of the user's keys by id (the UI's revoke
// button); another user's key is NotFound.
func (db *DB) RevokeAPIKey(ctx context.Context, userID string, keyID int64) (*APIKey, error) {
	var k APIKey
	err := db.write(ctx, func(tx *Tx) error {
		if err := userAPIKey(ctx, tx, userID, keyID, &k); err != nil {
			return err
		}
		return deactivateAPIKey(ctx, tx, keyID)
	})
	return &k, err
}

// userAPIKey reads one of the user's keys (id, owner, prefix, name) into k.
func userAPIKey(ctx context.Context, tx *Tx, userID string, keyID int64, k *APIKey) error {
	err := tx.QueryRowContext(ctx, `SELECT id, user_id, key_prefix, name FROM api_keys WHERE id = ? AND user_id = ?`, keyID, userID).
		Scan(&k.ID, &k.UserID, &k.Prefix, &k.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return Errorf(NotFound, "API key not found")
	}
	return err
}

func deactivateAPIKey(ctx context.Context, tx *Tx, keyID int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE api_keys SET is_active = 0, revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, tx.Stamp(), keyID)
	return err
}

// RevokeUserAPIKey deactivates the user's key whose display prefix is
// prefix (the API's revoke); another user's key is NotFound. It returns
// the key as it is now.
func (db *DB) RevokeUserAPIKey(ctx context.Context, userID, prefix string) (*APIKey, error) {
	var id int64
	err := db.write(ctx, func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT id FROM api_keys WHERE key_prefix = ? AND user_id = ?`, prefix, userID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return Errorf(NotFound, "API key not found")
		}
		if err != nil {
			return err
		}
		return deactivateAPIKey(ctx, tx, id)
	})
	if err != nil {
		return nil, err
	}
	keys, err := db.ListAPIKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.ID == id {
			return k, nil
		}
	}
	return nil, Errorf(NotFound, "API key not found")
}

// RevokeAPIKeyByPrefix deactivates the one key whose display prefix starts
// with prefix (across all users: this is the operator's CLI). An ambiguous
// prefix revokes nothing.
func (db *DB) RevokeAPIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error) {
	if prefix == "" {
		return nil, Errorf(Invalid, "Give a key prefix")
	}
	var k *APIKey
	err := db.write(ctx, func(tx *Tx) error {
		found, err := apiKeysByPrefix(ctx, tx, prefix)
		if err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return Errorf(NotFound, "No API key with prefix %s", prefix)
		case 1:
		default:
			return Errorf(Conflict, "Prefix %s matches %d keys; give more characters", prefix, len(found))
		}
		k = found[0]
		return deactivateAPIKey(ctx, tx, k.ID)
	})
	return k, err
}

// apiKeysByPrefix lists every user's keys whose display prefix starts with
// prefix (id, owner, prefix, name).
func apiKeysByPrefix(ctx context.Context, tx *Tx, prefix string) ([]*APIKey, error) {
	// The display prefix is 12 characters; a longer argument (the whole
	// token, say) is matched on its first 12.
	p := prefix
	if len(p) > keyPrefixLen {
		p = p[:keyPrefixLen]
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, user_id, key_prefix, name FROM api_keys WHERE substr(key_prefix, 1, ?) = ?`, len(p), p)
	if err != nil {
		return nil, err
	}
	var found []*APIKey
	for rows.Next() {
		var c APIKey
		if err := rows.Scan(&c.ID, &c.UserID, &c.Prefix, &c.Name); err != nil {
			rows.Close()
			return nil, err
		}
		found = append(found, &c)
	}
	rows.Close()
	return found, nil
}
