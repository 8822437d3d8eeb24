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

// SessionSecrets returns the decrypted env vars a session's sprite gets:
// the environment's, then the session's secrets (which win), and the
// repository tokens by resource position.
func (db *DB) SessionSecrets(ctx context.Context, id string) (env map[string]string, resources []Resource, err error) {
	var envID sql.NullString
	var sealed []byte
	if err := db.reader.QueryRowContext(ctx, `SELECT environment_id, secret_env_vars FROM sessions WHERE id = ?`, id).Scan(&envID, &sealed); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, sessionNotFound()
		}
		return nil, nil, err
	}
	env = map[string]string{}
	if envID.Valid {
		envSealed, err := sealedEnvVars(ctx, db.reader, envID.String)
		if err != nil {
			return nil, nil, err
		}
		vars, err := db.openEnvVars(envID.String, envSealed)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range vars {
			env[k] = v
		}
	}
	if len(sealed) > 0 {
		plain, err := db.crypt.open(sealed, secretEnvVarsBinding(id))
		if err != nil {
			return nil, nil, errors.New("decrypt secret_env_vars: wrong key file or corrupted data")
		}
		var secrets map[string]string
		if err := json.Unmarshal(plain, &secrets); err != nil {
			return nil, nil, err
		}
		for k, v := range secrets {
			env[k] = v
		}
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT position, type, url, mount_path, authorization_token FROM session_resources
		WHERE session_id = ? ORDER BY position`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var pos int
		var r Resource
		var tok []byte
		if err := rows.Scan(&pos, &r.Type, &r.URL, &r.MountPath, &tok); err != nil {
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
