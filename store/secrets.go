package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// A user's secrets are a small vault of name -> value pairs, each value
// sealed as an environment's env vars are. Every session of the user gets
// them as env vars (see SessionSecrets for the order), and they count for
// the model-key check when a session is created. Values are never listed
// or returned.

// Secret is one of a user's secrets as it is listed: its name and when it
// was set, never its value.
type Secret struct {
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// MaxSecretsPerUser bounds a user's secrets.
const MaxSecretsPerUser = 100

// SecretsPage is the web UI's page of a user's secrets, named in the hint
// of a refused session so the UI and the API point at the same place.
const SecretsPage = "/ui/settings/secrets"

func secretNotFound() error { return Errorf(NotFound, "Secret not found") }

// secretBinding ties a sealed value to its user and name, so a value
// copied to another row does not open.
func secretBinding(userID, name string) string { return "user-secret:" + userID + ":" + name }

// ListSecrets lists a user's secrets by name, without their values.
func (db *DB) ListSecrets(ctx context.Context, userID string) ([]Secret, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT name, created_at, updated_at FROM user_secrets WHERE user_id = ? ORDER BY name`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Secret{}
	for rows.Next() {
		var s Secret
		var created, updated string
		if err := rows.Scan(&s.Name, &created, &updated); err != nil {
			return nil, err
		}
		s.CreatedAt, _ = ParseTime(created)
		s.UpdatedAt, _ = ParseTime(updated)
		out = append(out, s)
	}
	return out, rows.Err()
}

// PutSecret sets one of a user's secrets, creating it or replacing its
// value, and reports whether it was created. The name and value are
// validated by the caller (validate.SecretInput); a user at
// MaxSecretsPerUser may replace a secret but not add one.
func (db *DB) PutSecret(ctx context.Context, userID, name, value string) (*Secret, bool, error) {
	sealed, err := db.crypt.seal([]byte(value), secretBinding(userID, name))
	if err != nil {
		return nil, false, err
	}
	s := &Secret{Name: name}
	created := false
	err = db.write(ctx, func(tx *Tx) error {
		var createdAt string
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM user_secrets WHERE user_id = ? AND name = ?`, userID, name).Scan(&createdAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM user_secrets WHERE user_id = ?`, userID).Scan(&n); err != nil {
				return err
			}
			if n >= MaxSecretsPerUser {
				return Errorf(Conflict, "A user may have at most %d secrets", MaxSecretsPerUser)
			}
			created = true
			s.CreatedAt, s.UpdatedAt = tx.Now, tx.Now
			_, err = tx.ExecContext(ctx, `INSERT INTO user_secrets(user_id, name, value, created_at, updated_at) VALUES (?,?,?,?,?)`,
				userID, name, sealed, tx.Stamp(), tx.Stamp())
			return err
		case err != nil:
			return err
		}
		s.CreatedAt, _ = ParseTime(createdAt)
		s.UpdatedAt = tx.Now
		_, err = tx.ExecContext(ctx, `UPDATE user_secrets SET value = ?, updated_at = ? WHERE user_id = ? AND name = ?`,
			sealed, tx.Stamp(), userID, name)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return s, created, nil
}

// DeleteSecret removes one of a user's secrets; a name the user has no
// secret of (another user's included) is a 404.
func (db *DB) DeleteSecret(ctx context.Context, userID, name string) error {
	return db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM user_secrets WHERE user_id = ? AND name = ?`, userID, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return secretNotFound()
		}
		return nil
	})
}

// UserSecrets decrypts all of a user's secrets, name -> value.
func (db *DB) UserSecrets(ctx context.Context, userID string) (map[string]string, error) {
	return db.userSecrets(ctx, db.reader, userID)
}

func (db *DB) userSecrets(ctx context.Context, q querier, userID string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, value FROM user_secrets WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name string
		var sealed []byte
		if err := rows.Scan(&name, &sealed); err != nil {
			return nil, err
		}
		plain, err := db.crypt.open(sealed, secretBinding(userID, name))
		if err != nil {
			return nil, errors.New("decrypt user secret: wrong key file or corrupted data")
		}
		out[name] = string(plain)
	}
	return out, rows.Err()
}

// SetHostEnv sets the server's own variables that every session gets
// (aod serve --pass-env), name -> value, below everything else a session's
// environment holds. Call it before sessions are created or run.
func (db *DB) SetHostEnv(vars map[string]string) {
	c := maps.Clone(vars)
	db.hostEnv.Store(&c)
}

// HostEnv is what SetHostEnv set (nil before it is called).
func (db *DB) HostEnv() map[string]string {
	if p := db.hostEnv.Load(); p != nil {
		return *p
	}
	return nil
}

// sessionEnv merges a session's env vars from their four sources; on the
// same name the later wins: the server's host variables (--pass-env), the
// user's secrets, the environment's env_vars (of the version the session
// runs), the session's secret_env_vars. This is the one statement of that
// order: the sprite's environment (SessionSecrets) and the model-key check
// at create both use it.
func sessionEnv(host, user, environment, session map[string]string) map[string]string {
	env := make(map[string]string, len(host)+len(user)+len(environment)+len(session))
	for _, layer := range []map[string]string{host, user, environment, session} {
		maps.Copy(env, layer)
	}
	return env
}

// noKeyError is the 400 of a session whose runtime would start without a
// model key: the contract's detail, and a hint of where a key can go.
func noKeyError(runtime string, names []string) error {
	var also string
	if len(names) > 1 {
		also = " (or " + strings.Join(names[1:], " or ") + ")"
	}
	return &Error{Code: BadRequest, Message: fmt.Sprintf("No API key configured for runtime: %s", runtime),
		Extra: map[string]any{"hint": fmt.Sprintf("Set %s%s in Settings → Secrets (%s) or with PUT /secrets/%s; "+
			"the environment's env_vars or the session's secret_env_vars work too", names[0], also, SecretsPage, names[0])}}
}
