package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aod/aod/catalogue"
)

// Session statuses.
const (
	StatusPending    = "pending"
	StatusRunning    = "running"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusTerminated = "terminated"
)

// Turn statuses are pending, running, completed and failed (a subset).

// Provisioning states of a session's sprite.
const (
	ProvisionNone    = ""
	ProvisionRunning = "running"
	ProvisionDone    = "done"
)

// Session is one agent run in its own sprite.
type Session struct {
	ID               string
	UserID           string
	AgentID          string // "" when the agent row is gone
	EnvironmentID    string // "" when none
	Runtime          string
	Provider         string
	Model            string
	System           string // the agent's system prompt at creation
	Status           string
	ExitCode         *int
	Error            string // why it failed without an exit code
	ProvisionState   string
	RuntimeSessionID string
	Resources        []Resource
	TurnCount        int
	CurrentTurn      int
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Active reports whether the session counts toward the quota and blocks
// delete: pending or running.
func (s *Session) Active() bool { return s.Status == StatusPending || s.Status == StatusRunning }

// Resource is a repository mounted into the sprite. Token is only filled
// by SessionSecrets.
type Resource struct {
	Type      string
	URL       string
	MountPath string
	Token     string
}

// Turn is one prompt of a session.
type Turn struct {
	SessionID string
	Number    int
	Prompt    string
	Timeout   int // seconds
	Status    string
	ExitCode  *int
	Error     string
	Usage     json.RawMessage
	CreatedAt time.Time
	StartedAt *time.Time
	EndedAt   *time.Time
}

// SessionInput is a validated create request.
type SessionInput struct {
	AgentID string
	// EnvironmentID overrides the agent's default environment when set.
	EnvironmentID string
	Prompt        string
	Timeout       int
	Resources     []Resource
	SecretEnvVars map[string]string
	Policy        SessionPolicy
}

// SessionPolicy is the server's rules for new sessions, the same for the API
// and the UI.
type SessionPolicy struct {
	// MaxConcurrent is the default per-user limit of active sessions (a
	// per-user override in the store wins); 0 = none.
	MaxConcurrent int
	// Keyless reports whether sessions of a model provider need no key: the
	// server points its CLIs at an endpoint that needs none (the fake model
	// API). nil: every provider needs its key.
	Keyless func(provider string) bool
}

func sessionNotFound() error { return Errorf(NotFound, "Session not found") }

const sessionColumns = `id, user_id, agent_id, environment_id, runtime, provider, model, system, status, exit_code, error,
	provision_state, runtime_session_id, created_at, updated_at,
	(SELECT count(*) FROM session_turns t WHERE t.session_id = sessions.id),
	(SELECT COALESCE(max(turn_number), 0) FROM session_turns t WHERE t.session_id = sessions.id)`

func scanSession(s scanner) (*Session, error) {
	var x Session
	var agent, env sql.NullString
	var exit sql.NullInt64
	var created, updated string
	if err := s.Scan(&x.ID, &x.UserID, &agent, &env, &x.Runtime, &x.Provider, &x.Model, &x.System, &x.Status, &exit, &x.Error,
		&x.ProvisionState, &x.RuntimeSessionID, &created, &updated, &x.TurnCount, &x.CurrentTurn); err != nil {
		return nil, err
	}
	x.AgentID, x.EnvironmentID = agent.String, env.String
	if exit.Valid {
		c := int(exit.Int64)
		x.ExitCode = &c
	}
	x.CreatedAt, _ = ParseTime(created)
	x.UpdatedAt, _ = ParseTime(updated)
	return &x, nil
}

func loadResources(ctx context.Context, q querier, s *Session) error {
	rows, err := q.QueryContext(ctx, `SELECT type, url, mount_path FROM session_resources WHERE session_id = ? ORDER BY position`, s.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	s.Resources = []Resource{}
	for rows.Next() {
		var r Resource
		if err := rows.Scan(&r.Type, &r.URL, &r.MountPath); err != nil {
			return err
		}
		s.Resources = append(s.Resources, r)
	}
	return rows.Err()
}

func getSession(ctx context.Context, q querier, userID, id string) (*Session, error) {
	query := `SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`
	args := []any{id}
	if userID != "" {
		query += ` AND user_id = ?`
		args = append(args, userID)
	}
	s, err := scanSession(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sessionNotFound()
	}
	if err != nil {
		return nil, err
	}
	return s, loadResources(ctx, q, s)
}

// SessionState reads just what a stream needs to follow a session (id,
// runtime, provider, status, exit code, error) with one cheap query: the
// stream re-reads it after every batch of rows.
func (db *DB) SessionState(ctx context.Context, id string) (*Session, error) {
	var s Session
	var exit sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT id, runtime, provider, status, exit_code, error FROM sessions WHERE id = ?`, id).
		Scan(&s.ID, &s.Runtime, &s.Provider, &s.Status, &exit, &s.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sessionNotFound()
	}
	if err != nil {
		return nil, err
	}
	if exit.Valid {
		c := int(exit.Int64)
		s.ExitCode = &c
	}
	return &s, nil
}

// GetSession returns one of the user's sessions. An empty userID reads any
// session (the runner and the stream, which checked ownership already).
func (db *DB) GetSession(ctx context.Context, userID, id string) (*Session, error) {
	return getSession(ctx, db.reader, userID, id)
}

// ListSessions returns the user's sessions, newest first, every status.
func (db *DB) ListSessions(ctx context.Context, userID string) ([]*Session, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE user_id = ? ORDER BY id DESC`, userID)
	if err != nil {
		return nil, err
	}
	var out []*Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, s := range out {
		if err := loadResources(ctx, db.reader, s); err != nil {
			return nil, err
		}
	}
	if out == nil {
		out = []*Session{}
	}
	return out, nil
}

// CreateSession checks the agent, the environment and the quota, then
// stores the session with turn 1 pending, all in one transaction.
func (db *DB) CreateSession(ctx context.Context, userID string, in SessionInput) (*Session, error) {
	var s *Session
	err := db.write(ctx, func(tx *Tx) error {
		agent, err := getAgent(ctx, tx, userID, in.AgentID)
		if err != nil {
			return err
		}
		if agent.ArchivedAt != nil {
			return Errorf(Conflict, "Cannot create session with archived agent")
		}
		envID := in.EnvironmentID
		if envID == "" {
			envID = agent.EnvironmentID
		}
		var envVars map[string]string
		if envID != "" {
			env, err := getEnvironment(ctx, tx, userID, envID)
			if err != nil {
				return err
			}
			if env.ArchivedAt != nil {
				return Errorf(Conflict, "Cannot create session with archived environment")
			}
			var sealed []byte
			if err := tx.QueryRowContext(ctx, `SELECT env_vars FROM environments WHERE id = ?`, envID).Scan(&sealed); err != nil {
				return err
			}
			if envVars, err = db.openEnvVars(envID, sealed); err != nil {
				return err
			}
		}
		if keyless := in.Policy.Keyless; keyless == nil || !keyless(agent.Provider) {
			names := catalogue.CredentialNames(agent.Runtime, agent.Provider)
			if len(names) > 0 && !hasAny(names, in.SecretEnvVars, envVars) {
				return Errorf(BadRequest, "No API key configured for runtime: %s", agent.Runtime)
			}
		}
		if err := checkQuota(ctx, tx, userID, in.Policy.MaxConcurrent); err != nil {
			return err
		}
		s = &Session{
			ID: NewID(), UserID: userID, AgentID: agent.ID, EnvironmentID: envID, Runtime: agent.Runtime,
			Provider: agent.Provider, Model: agent.Model, System: agent.System, Status: StatusPending,
			Resources: in.Resources, TurnCount: 1, CurrentTurn: 1, CreatedAt: tx.Now, UpdatedAt: tx.Now,
		}
		if s.Resources == nil {
			s.Resources = []Resource{}
		}
		var secrets any
		if len(in.SecretEnvVars) > 0 {
			plain, _ := json.Marshal(in.SecretEnvVars)
			if secrets, err = db.crypt.seal(plain, "session:"+s.ID+":secret_env_vars"); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions(id, user_id, agent_id, environment_id, runtime, provider, model,
			system, agent_version, status, secret_env_vars, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			s.ID, userID, s.AgentID, nullString(envID), s.Runtime, s.Provider, s.Model, s.System, agent.Version, s.Status, secrets,
			tx.Stamp(), tx.Stamp()); err != nil {
			return err
		}
		for i, r := range in.Resources {
			var token any
			if r.Token != "" {
				if token, err = db.crypt.seal([]byte(r.Token), fmt.Sprintf("session:%s:resource:%d", s.ID, i)); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_resources(session_id, position, type, url, mount_path,
				authorization_token) VALUES (?,?,?,?,?,?)`, s.ID, i, r.Type, r.URL, r.MountPath, token); err != nil {
				return err
			}
			s.Resources[i].Token = ""
		}
		return insertTurn(ctx, tx, s.ID, 1, in.Prompt, in.Timeout)
	})
	return s, err
}

func hasAny(names []string, maps ...map[string]string) bool {
	for _, n := range names {
		for _, m := range maps {
			if m[n] != "" {
				return true
			}
		}
	}
	return false
}

func insertTurn(ctx context.Context, tx *Tx, sessionID string, n int, prompt string, timeout int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO session_turns(session_id, turn_number, prompt, timeout_s, status, created_at)
		VALUES (?,?,?,?,?,?)`, sessionID, n, prompt, timeout, StatusPending, tx.Stamp())
	return err
}

// checkQuota refuses a new session when the user already has their limit
// of pending and running ones. The write transaction serialises creators.
func checkQuota(ctx context.Context, tx *Tx, userID string, def int) error {
	var override sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max_concurrent_sessions FROM users WHERE id = ?`, userID).Scan(&override); err != nil {
		return err
	}
	limit := def
	if override.Valid && override.Int64 > 0 {
		limit = int(override.Int64)
	}
	if limit <= 0 {
		return nil
	}
	var active int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE user_id = ? AND status IN ('pending', 'running')`, userID).Scan(&active); err != nil {
		return err
	}
	if active >= limit {
		return QuotaError(limit, active)
	}
	return nil
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

// CheckPromptable returns the 409 a prompt would get from the session's
// state, before the body is read (the contract's order).
func (db *DB) CheckPromptable(ctx context.Context, userID, id string) error {
	s, err := db.GetSession(ctx, userID, id)
	if err != nil {
		return err
	}
	return promptStateError(s.Status)
}

func promptStateError(status string) error {
	switch status {
	case StatusRunning:
		return Errorf(Conflict, "Session is already running")
	case StatusFailed:
		return Errorf(Conflict, "Session has failed and cannot be resumed. Start a new session.")
	case StatusTerminated:
		return Errorf(Conflict, "Session has been terminated")
	case StatusPending:
		return Errorf(Conflict, "Session already has a pending turn")
	}
	return nil
}

// PromptSession queues the next turn of a completed session and puts the
// session back to pending with no exit code.
func (db *DB) PromptSession(ctx context.Context, userID, id, prompt string, timeout int) (*Session, error) {
	var s *Session
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		if s, err = getSession(ctx, tx, userID, id); err != nil {
			return err
		}
		if err := promptStateError(s.Status); err != nil {
			return err
		}
		if s.ProvisionState != ProvisionDone {
			return Errorf(Conflict, "Session backend is no longer available; start a new session.")
		}
		n := s.CurrentTurn + 1
		if err := insertTurn(ctx, tx, id, n, prompt, timeout); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, exit_code = NULL, error = '', updated_at = ? WHERE id = ?`,
			StatusPending, tx.Stamp(), id); err != nil {
			return err
		}
		s.Status, s.ExitCode, s.Error, s.CurrentTurn, s.TurnCount, s.UpdatedAt = StatusPending, nil, "", n, s.TurnCount+1, tx.Now
		return nil
	})
	if err == nil {
		db.notify.bump(id)
	}
	return s, err
}

// TerminateSession marks a session terminated; a turn in flight keeps that
// status when it ends. A pending or running turn is failed now.
func (db *DB) TerminateSession(ctx context.Context, userID, id string) (*Session, error) {
	var s *Session
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		if s, err = getSession(ctx, tx, userID, id); err != nil {
			return err
		}
		if s.Status == StatusTerminated {
			return Errorf(Conflict, "Session is already terminated")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, updated_at = ? WHERE id = ?`, StatusTerminated, tx.Stamp(), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE session_turns SET status = ?, error = 'terminated', ended_at = ?,
			started_at = COALESCE(started_at, ?) WHERE session_id = ? AND status IN ('pending', 'running')`,
			StatusFailed, tx.Stamp(), tx.Stamp(), id); err != nil {
			return err
		}
		s.Status, s.UpdatedAt = StatusTerminated, tx.Now
		return nil
	})
	if err == nil {
		db.notify.bump(id)
	}
	return s, err
}

// DeleteSession removes a finished session with its turns, events,
// resources and secrets.
func (db *DB) DeleteSession(ctx context.Context, userID, id string) error {
	err := db.write(ctx, func(tx *Tx) error {
		s, err := getSession(ctx, tx, userID, id)
		if err != nil {
			return err
		}
		if s.Active() {
			return Errorf(Conflict, "Cannot delete an active session")
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id)
		return err
	})
	if err == nil {
		db.notify.forget(id)
	}
	return err
}

const turnColumns = `session_id, turn_number, prompt, timeout_s, status, exit_code, error, usage, created_at, started_at, ended_at`

func scanTurn(s scanner) (*Turn, error) {
	var t Turn
	var exit sql.NullInt64
	var usage, started, ended sql.NullString
	var created string
	if err := s.Scan(&t.SessionID, &t.Number, &t.Prompt, &t.Timeout, &t.Status, &exit, &t.Error, &usage, &created, &started, &ended); err != nil {
		return nil, err
	}
	if exit.Valid {
		c := int(exit.Int64)
		t.ExitCode = &c
	}
	if usage.Valid {
		t.Usage = json.RawMessage(usage.String)
	}
	t.CreatedAt, _ = ParseTime(created)
	t.StartedAt, t.EndedAt = parseNullTime(started), parseNullTime(ended)
	return &t, nil
}

// ListTurns returns a session's turns by number.
func (db *DB) ListTurns(ctx context.Context, userID, id string) ([]*Turn, error) {
	if _, err := getSession(ctx, db.reader, userID, id); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT `+turnColumns+` FROM session_turns WHERE session_id = ? ORDER BY turn_number`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Turn{}
	for rows.Next() {
		t, err := scanTurn(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// --- what the runner uses ---

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
		var envSealed []byte
		if err := db.reader.QueryRowContext(ctx, `SELECT env_vars FROM environments WHERE id = ?`, envID.String).Scan(&envSealed); err != nil {
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
		plain, err := db.crypt.open(sealed, "session:"+id+":secret_env_vars")
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
			plain, err := db.crypt.open(tok, fmt.Sprintf("session:%s:resource:%d", id, pos))
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

// SortedKeys returns m's keys in order (env files are written sorted).
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

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

// SetRuntimeSessionID records the CLI's own conversation id for resuming.
func (db *DB) SetRuntimeSessionID(ctx context.Context, id, runtimeID string) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET runtime_session_id = ? WHERE id = ?`, runtimeID, id)
		return err
	})
}

// NextTurn returns the session and its lowest pending turn, or a nil turn
// when none is pending.
func (db *DB) NextTurn(ctx context.Context, id string) (*Session, *Turn, error) {
	s, err := db.GetSession(ctx, "", id)
	if err != nil {
		return nil, nil, err
	}
	t, err := scanTurn(db.reader.QueryRowContext(ctx, `SELECT `+turnColumns+` FROM session_turns
		WHERE session_id = ? AND status = 'pending' ORDER BY turn_number LIMIT 1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil, nil
	}
	return s, t, err
}

// StartTurn moves a pending session and its turn to running. It reports
// false (and changes nothing) when the session is no longer pending, e.g.
// terminated before the turn could start.
func (db *DB) StartTurn(ctx context.Context, id string, turn int) (bool, error) {
	started := false
	err := db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
			StatusRunning, tx.Stamp(), id, StatusPending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE session_turns SET status = ?, started_at = ? WHERE session_id = ? AND turn_number = ?`,
			StatusRunning, tx.Stamp(), id, turn); err != nil {
			return err
		}
		started = true
		return nil
	})
	if started {
		db.notify.bump(id)
	}
	return started, err
}

// TurnResult is how a turn ended.
type TurnResult struct {
	ExitCode *int   // nil when the CLI never exited on its own
	Error    string // reason when it failed without an exit code, or a note
	Usage    json.RawMessage
}

// FinishTurn records a turn's end: exit 0 completes the session, anything
// else fails it. A session terminated meanwhile stays terminated.
func (db *DB) FinishTurn(ctx context.Context, id string, turn int, r TurnResult) error {
	status := StatusFailed
	if r.ExitCode != nil && *r.ExitCode == 0 && r.Error == "" {
		status = StatusCompleted
	}
	return db.finish(ctx, id, &turn, status, r)
}

// FailSession ends a session that failed outside a turn (provisioning, a
// restart) with a reason; its pending or running turn fails with it.
func (db *DB) FailSession(ctx context.Context, id, reason string) error {
	return db.finish(ctx, id, nil, StatusFailed, TurnResult{Error: reason})
}

func (db *DB) finish(ctx context.Context, id string, turn *int, status string, r TurnResult) error {
	err := db.write(ctx, func(tx *Tx) error {
		var exit any
		if r.ExitCode != nil {
			exit = *r.ExitCode
		}
		var usage any
		if len(r.Usage) > 0 {
			usage = string(r.Usage)
		}
		q := `UPDATE session_turns SET status = ?, exit_code = ?, error = ?, usage = ?, ended_at = ?,
			started_at = COALESCE(started_at, ?) WHERE session_id = ? AND `
		args := []any{status, exit, r.Error, usage, tx.Stamp(), tx.Stamp(), id}
		if turn != nil {
			q += `turn_number = ?`
			args = append(args, *turn)
		} else {
			q += `status IN ('pending', 'running')`
		}
		// A turn ended by terminate keeps the failed status it got then.
		q += ` AND status IN ('pending', 'running')`
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, exit_code = ?, error = ?, updated_at = ?
			WHERE id = ? AND status != ?`, status, exit, r.Error, tx.Stamp(), id, StatusTerminated)
		return err
	})
	if err == nil {
		db.notify.bump(id)
	}
	return err
}

// SessionsToRecover lists sessions a previous process left pending or
// running, oldest first (crash reconciliation at start).
func (db *DB) SessionsToRecover(ctx context.Context) ([]*Session, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE status IN ('pending', 'running') ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// SessionStatuses maps every session id to its status (the runner sweeps
// sprite directories of sessions that are gone or terminated).
func (db *DB) SessionStatuses(ctx context.Context) (map[string]string, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, status FROM sessions`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, err
		}
		out[id] = st
	}
	return out, rows.Err()
}
