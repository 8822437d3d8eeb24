package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
)

// Provisioning states of a session's sprite.
const (
	ProvisionNone    = ""
	ProvisionRunning = "running"
	ProvisionDone    = "done"
	ProvisionRemoved = "removed" // the sprite was removed after the session ended
)

// SetProvisionState records provisioning progress; it fails with NotFound
// once the session is gone.
func (db *DB) SetProvisionState(ctx context.Context, id, state string) error {
	return db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET provision_state = ? WHERE id = ?`, state, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return sessionNotFound()
		}
		return nil
	})
}

// sessionEnvVersion joins a session (s) to its environment (e) and the
// snapshot of it the session runs (v): the version it was created with, or
// the environment's current one for a session older than that record (0).
// Versions are never deleted while a session refers to the environment.
const sessionEnvVersion = `LEFT JOIN environments e ON e.id = s.environment_id
	LEFT JOIN environment_versions v ON v.environment_id = e.id
		AND v.version = CASE WHEN s.environment_version > 0 THEN s.environment_version ELSE e.version END`

// SessionEnvironment returns the environment a session runs with (see
// sessionEnvVersion): packages, setup script and networking as they were
// when it was created, whatever changed since, archived or not. Its env
// vars come with SessionSecrets. nil when the session has no environment.
func (db *DB) SessionEnvironment(ctx context.Context, id string) (*Environment, error) {
	var envID sql.NullString
	err := db.reader.QueryRowContext(ctx, `SELECT environment_id FROM sessions WHERE id = ?`, id).Scan(&envID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sessionNotFound()
	}
	if err != nil || !envID.Valid {
		return nil, err
	}
	return scanEnvironment(db.reader.QueryRowContext(ctx, `SELECT e.id, e.user_id, v.name, v.packages, v.setup_script,
		v.networking_type, v.networking_config, v.version, e.created_at, v.created_at, e.archived_at
		FROM sessions s `+sessionEnvVersion+` WHERE s.id = ?`, id))
}

// SessionSecrets returns the decrypted env vars a session's sprite gets,
// merged in sessionEnv's order (later wins): the server's host variables
// (--pass-env), the user's secrets as they are now, the env vars of the
// environment version the session runs (see sessionEnvVersion), the
// session's own secrets; and the repository tokens by resource position.
func (db *DB) SessionSecrets(ctx context.Context, id string) (env map[string]string, resources []Resource, err error) {
	var envID sql.NullString
	var userID string
	var sealed, envSealed []byte
	if err := db.reader.QueryRowContext(ctx, `SELECT s.user_id, s.environment_id, s.secret_env_vars, v.env_vars
		FROM sessions s `+sessionEnvVersion+` WHERE s.id = ?`, id).Scan(&userID, &envID, &sealed, &envSealed); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, sessionNotFound()
		}
		return nil, nil, err
	}
	var envVars, secrets map[string]string
	if envID.Valid {
		if envVars, err = db.openEnvVars(envID.String, envSealed); err != nil {
			return nil, nil, err
		}
	}
	if len(sealed) > 0 {
		plain, err := db.crypt.open(sealed, secretEnvVarsBinding(id))
		if err != nil {
			return nil, nil, errors.New("decrypt secret_env_vars: wrong key file or corrupted data")
		}
		if err := json.Unmarshal(plain, &secrets); err != nil {
			return nil, nil, err
		}
	}
	user, err := db.userSecrets(ctx, db.reader, userID)
	if err != nil {
		return nil, nil, err
	}
	env = sessionEnv(db.HostEnv(), user, envVars, secrets)
	rows, err := db.reader.QueryContext(ctx, `SELECT position, type, url, mount_path, checkout, authorization_token FROM session_resources
		WHERE session_id = ? ORDER BY position`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var pos int
		var r Resource
		var tok []byte
		if err := rows.Scan(&pos, &r.Type, &r.URL, &r.MountPath, &r.Checkout, &tok); err != nil {
			return nil, nil, err
		}
		if len(tok) > 0 {
			plain, err := db.crypt.open(tok, resourceTokenBinding(id, pos))
			if err != nil {
				return nil, nil, errors.New("decrypt repository token: wrong key file or corrupted data")
			}
			r.Token = string(plain)
		}
		resources = append(resources, r)
	}
	return env, resources, rows.Err()
}

// SessionAgent returns the agent version a session was created with (its
// MCP servers and skills), even if the agent changed or was archived since.
func (db *DB) SessionAgent(ctx context.Context, id string) (*AgentVersion, error) {
	var agentID sql.NullString
	var version int
	err := db.reader.QueryRowContext(ctx, `SELECT agent_id, agent_version FROM sessions WHERE id = ?`, id).Scan(&agentID, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sessionNotFound()
	}
	if err != nil {
		return nil, err
	}
	if !agentID.Valid {
		return nil, agentNotFound()
	}
	v, err := agentVersion(ctx, db.reader, agentID.String, version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, agentNotFound()
	}
	return v, err
}

// SetProvisionLog keeps what a session's provisioning script wrote,
// replacing an earlier log. The runner bounds it and redacts the
// session's secrets first. A session that is gone is not an error: its
// log goes with it.
func (db *DB) SetProvisionLog(ctx context.Context, id, log string) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO session_provision_logs(session_id, log, created_at)
			SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?)
			ON CONFLICT (session_id) DO UPDATE SET log = excluded.log, created_at = excluded.created_at`,
			id, log, tx.Stamp(), id)
		return err
	})
}

// ProvisionLog returns one of the user's sessions' provisioning log; ""
// when its provisioning ran no script (or has not yet).
func (db *DB) ProvisionLog(ctx context.Context, userID, id string) (string, error) {
	var log sql.NullString
	err := db.reader.QueryRowContext(ctx, `SELECT l.log FROM sessions s LEFT JOIN session_provision_logs l ON l.session_id = s.id
		WHERE s.id = ? AND s.user_id = ?`, id, userID).Scan(&log)
	if errors.Is(err, sql.ErrNoRows) {
		return "", sessionNotFound()
	}
	return log.String, err
}
