package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
	Usage            *UsageView // its turns' usage summed (AttachUsage), nil when none reported any
	BudgetUSD        *float64   // the most its turns may cost, nil for no limit
	BudgetExhausted  bool       // its turns' cost reached BudgetUSD: no more prompts
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// TerminalStatus reports whether a session in status has ended: no turn is
// pending or running, so its stream ends.
func TerminalStatus(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusTerminated
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
	Checkout  string // a branch, tag or commit to check out; "": the default branch
	Token     string
}

// SessionInput is a validated create request.
type SessionInput struct {
	AgentID string
	// EnvironmentID overrides the agent's default environment when set.
	EnvironmentID string
	Prompt        string
	Timeout       int
	BudgetUSD     *float64
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
	provision_state, runtime_session_id, created_at, updated_at, budget_usd, budget_exhausted,
	(SELECT count(*) FROM session_turns t WHERE t.session_id = sessions.id),
	(SELECT COALESCE(max(turn_number), 0) FROM session_turns t WHERE t.session_id = sessions.id)`

func scanSession(s scanner) (*Session, error) {
	var x Session
	var agent, env sql.NullString
	var exit sql.NullInt64
	var budget sql.NullFloat64
	var created, updated string
	if err := s.Scan(&x.ID, &x.UserID, &agent, &env, &x.Runtime, &x.Provider, &x.Model, &x.System, &x.Status, &exit, &x.Error,
		&x.ProvisionState, &x.RuntimeSessionID, &created, &updated, &budget, &x.BudgetExhausted, &x.TurnCount, &x.CurrentTurn); err != nil {
		return nil, err
	}
	if budget.Valid {
		x.BudgetUSD = &budget.Float64
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
	rows, err := q.QueryContext(ctx, `SELECT type, url, mount_path, checkout FROM session_resources WHERE session_id = ? ORDER BY position`, s.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	s.Resources = []Resource{}
	for rows.Next() {
		var r Resource
		if err := rows.Scan(&r.Type, &r.URL, &r.MountPath, &r.Checkout); err != nil {
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
		envVersion, envVars, err := db.sessionEnvVars(ctx, tx, userID, envID)
		if err != nil {
			return err
		}
		if err := db.checkCredentials(ctx, tx, userID, agent, in.Policy, envVars, in.SecretEnvVars); err != nil {
			return err
		}
		if err := checkQuota(ctx, tx, userID, in.Policy.MaxConcurrent); err != nil {
			return err
		}
		s = &Session{
			ID: NewID(), UserID: userID, AgentID: agent.ID, EnvironmentID: envID, Runtime: agent.Runtime,
			Provider: agent.Provider, Model: agent.Model, System: agent.System, Status: StatusPending,
			Resources: in.Resources, TurnCount: 1, CurrentTurn: 1, CreatedAt: tx.Now, UpdatedAt: tx.Now,
			BudgetUSD: in.BudgetUSD,
		}
		if s.Resources == nil {
			s.Resources = []Resource{}
		}
		if err := db.insertSession(ctx, tx, s, agent.Version, envVersion, in.SecretEnvVars); err != nil {
			return err
		}
		if err := db.insertResources(ctx, tx, s); err != nil {
			return err
		}
		return insertTurn(ctx, tx, s.ID, 1, in.Prompt, in.Timeout)
	})
	return s, err
}

// sessionEnvVars checks a new session's environment (the user's, not
// archived) and returns its current version, which the session will run,
// with that version's env vars opened; none when envID is "".
func (db *DB) sessionEnvVars(ctx context.Context, tx *Tx, userID, envID string) (int, map[string]string, error) {
	if envID == "" {
		return 0, nil, nil
	}
	env, err := getEnvironment(ctx, tx, userID, envID)
	if err != nil {
		return 0, nil, err
	}
	if env.ArchivedAt != nil {
		return 0, nil, Errorf(Conflict, "Cannot create session with archived environment")
	}
	sealed, err := sealedEnvVars(ctx, tx, envID)
	if err != nil {
		return 0, nil, err
	}
	vars, err := db.openEnvVars(envID, sealed)
	return env.Version, vars, err
}

// sealedEnvVars reads an environment's env vars as stored (encrypted).
func sealedEnvVars(ctx context.Context, q querier, envID string) ([]byte, error) {
	var sealed []byte
	err := q.QueryRowContext(ctx, `SELECT env_vars FROM environments WHERE id = ?`, envID).Scan(&sealed)
	return sealed, err
}

// checkCredentials refuses a session whose CLI would start without its
// provider's key (unless the policy says it needs none): the key must be in
// the environment the session's sprite will get (see sessionEnv), from the
// server's host variables, the user's secrets, the environment's env vars
// or the session's secret env vars.
func (db *DB) checkCredentials(ctx context.Context, tx *Tx, userID string, agent *Agent, policy SessionPolicy, envVars, secretEnvVars map[string]string) error {
	if keyless := policy.Keyless; keyless != nil && keyless(agent.Provider) {
		return nil
	}
	names := catalogue.CredentialNames(agent.Runtime, agent.Provider)
	if len(names) == 0 {
		return nil
	}
	user, err := db.userSecrets(ctx, tx, userID)
	if err != nil {
		return err
	}
	if !hasAny(names, sessionEnv(db.HostEnv(), user, envVars, secretEnvVars)) {
		return noKeyError(agent.Runtime, names)
	}
	return nil
}

// insertSession stores the session row with the agent and environment
// versions it runs and its secret env vars sealed.
func (db *DB) insertSession(ctx context.Context, tx *Tx, s *Session, agentVersion, envVersion int, secretEnvVars map[string]string) error {
	var secrets any
	if len(secretEnvVars) > 0 {
		plain, _ := json.Marshal(secretEnvVars)
		var err error
		if secrets, err = db.crypt.seal(plain, secretEnvVarsBinding(s.ID)); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO sessions(id, user_id, agent_id, environment_id, runtime, provider, model,
			system, agent_version, environment_version, status, secret_env_vars, created_at, updated_at, budget_usd) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		s.ID, s.UserID, s.AgentID, nullString(s.EnvironmentID), s.Runtime, s.Provider, s.Model, s.System, agentVersion, envVersion, s.Status, secrets,
		tx.Stamp(), tx.Stamp(), s.BudgetUSD)
	return err
}

// insertResources stores the session's repositories in order, their tokens
// sealed, and clears the tokens from s.
func (db *DB) insertResources(ctx context.Context, tx *Tx, s *Session) error {
	for i, r := range s.Resources {
		var token any
		if r.Token != "" {
			var err error
			if token, err = db.crypt.seal([]byte(r.Token), resourceTokenBinding(s.ID, i)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO session_resources(session_id, position, type, url, mount_path,
				checkout, authorization_token) VALUES (?,?,?,?,?,?,?)`, s.ID, i, r.Type, r.URL, r.MountPath, r.Checkout, token); err != nil {
			return err
		}
		s.Resources[i].Token = ""
	}
	return nil
}

// secretEnvVarsBinding and resourceTokenBinding tie sealed secrets to their
// session row (and resource position), so a value copied to another row
// does not open.
func secretEnvVarsBinding(sessionID string) string {
	return "session:" + sessionID + ":secret_env_vars"
}

func resourceTokenBinding(sessionID string, pos int) string {
	return fmt.Sprintf("session:%s:resource:%d", sessionID, pos)
}

// hasAny reports whether env sets any of names to a value.
func hasAny(names []string, env map[string]string) bool {
	for _, n := range names {
		if env[n] != "" {
			return true
		}
	}
	return false
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

// CheckPromptable returns the 409 a prompt would get from the session's
// state, before the body is read (the contract's order).
func (db *DB) CheckPromptable(ctx context.Context, userID, id string) error {
	s, err := db.GetSession(ctx, userID, id)
	if err != nil {
		return err
	}
	return promptError(s)
}

// promptError is why session s takes no prompt now, nil when it does: its
// state, then its budget.
func promptError(s *Session) error {
	if err := promptStateError(s.Status); err != nil {
		return err
	}
	if s.BudgetExhausted {
		return Errorf(Conflict, "Session budget exhausted")
	}
	return nil
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
		if err := promptError(s); err != nil {
			return err
		}
		if s.ProvisionState != ProvisionDone {
			return Errorf(Conflict, "Session backend is no longer available; start a new session.")
		}
		n := s.CurrentTurn + 1
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET interrupt_requested = 0 WHERE id = ?`, id); err != nil {
			return err // an interrupt of an earlier turn is no concern of this one
		}
		if err := insertTurn(ctx, tx, id, n, prompt, timeout); err != nil {
			return err
		}
		if err := requeueSession(ctx, tx, id); err != nil {
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

// requeueSession puts a session back to pending with no exit code or error.
func requeueSession(ctx context.Context, tx *Tx, id string) error {
	_, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, exit_code = NULL, error = '', updated_at = ? WHERE id = ?`,
		StatusPending, tx.Stamp(), id)
	return err
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
		if err := markTerminated(ctx, tx, id); err != nil {
			return err
		}
		if err := failOpenTurns(ctx, tx, id); err != nil {
			return err
		}
		s.Status, s.UpdatedAt = StatusTerminated, tx.Now
		return enqueueWebhooks(ctx, tx, id, EventSessionTerminated)
	})
	if err == nil {
		db.notify.bump(id)
	}
	return s, err
}

// InterruptSession asks for the session's pending or running turn to be
// stopped, keeping the session (and its sprite) for the next prompt, and
// returns its status at the time of asking. The runner ends the turn as
// interrupted; a turn that has not started never runs.
func (db *DB) InterruptSession(ctx context.Context, userID, id string) (*Session, error) {
	var s *Session
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		if s, err = getSession(ctx, tx, userID, id); err != nil {
			return err
		}
		switch s.Status {
		case StatusCompleted:
			return Errorf(Conflict, "Session has no active turn to interrupt")
		case StatusTerminated:
			return Errorf(Conflict, "Session has been terminated")
		case StatusFailed:
			return Errorf(Conflict, "Session has failed")
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET interrupt_requested = 1, updated_at = ? WHERE id = ?`, tx.Stamp(), id)
		return err
	})
	if err == nil {
		db.notify.bump(id)
	}
	return s, err
}

// InterruptRequested reports whether an interrupt of the session's turn
// is waiting to be carried out.
func (db *DB) InterruptRequested(ctx context.Context, id string) (bool, error) {
	var requested bool
	err := db.reader.QueryRowContext(ctx, `SELECT interrupt_requested FROM sessions WHERE id = ?`, id).Scan(&requested)
	if errors.Is(err, sql.ErrNoRows) {
		return false, sessionNotFound()
	}
	return requested, err
}

func markTerminated(ctx context.Context, tx *Tx, id string) error {
	_, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, updated_at = ? WHERE id = ?`, StatusTerminated, tx.Stamp(), id)
	return err
}

// failOpenTurns fails a terminated session's pending or running turn.
func failOpenTurns(ctx context.Context, tx *Tx, id string) error {
	_, err := tx.ExecContext(ctx, `UPDATE session_turns SET status = ?, error = 'terminated', ended_at = ?,
			started_at = COALESCE(started_at, ?) WHERE session_id = ? AND status IN ('pending', 'running')`,
		StatusFailed, tx.Stamp(), tx.Stamp(), id)
	return err
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
