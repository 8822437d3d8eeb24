package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
)

// Turn statuses are pending, running, completed and failed (a subset); a
// turn an interrupt ended is completed with Interrupted set (the published
// SDKs accept only those four statuses).

// Turn is one prompt of a session.
type Turn struct {
	SessionID   string
	Number      int
	Prompt      string
	Timeout     int // seconds
	Status      string
	ExitCode    *int
	Error       string
	Interrupted bool
	Result      *string // the CLI's final answer
	Usage       json.RawMessage
	UsageView   *UsageView // Usage as the API shows it, priced (ListTurns)
	CreatedAt   time.Time
	StartedAt   *time.Time
	EndedAt     *time.Time
}

const turnColumns = `session_id, turn_number, prompt, timeout_s, status, exit_code, error, interrupted, result, usage, created_at, started_at, ended_at`

func scanTurn(s scanner) (*Turn, error) {
	var t Turn
	var exit sql.NullInt64
	var result, usage, started, ended sql.NullString
	var created string
	if err := s.Scan(&t.SessionID, &t.Number, &t.Prompt, &t.Timeout, &t.Status, &exit, &t.Error, &t.Interrupted, &result, &usage, &created, &started, &ended); err != nil {
		return nil, err
	}
	if exit.Valid {
		c := int(exit.Int64)
		t.ExitCode = &c
	}
	if usage.Valid {
		t.Usage = json.RawMessage(usage.String)
	}
	if result.Valid {
		t.Result = &result.String
	}
	t.CreatedAt, _ = ParseTime(created)
	t.StartedAt, t.EndedAt = parseNullTime(started), parseNullTime(ended)
	return &t, nil
}

func insertTurn(ctx context.Context, tx *Tx, sessionID string, n int, prompt string, timeout int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO session_turns(session_id, turn_number, prompt, timeout_s, status, created_at)
		VALUES (?,?,?,?,?,?)`, sessionID, n, prompt, timeout, StatusPending, tx.Stamp())
	return err
}

// ListTurns returns a session's turns by number, their usage priced.
func (db *DB) ListTurns(ctx context.Context, userID, id string) ([]*Turn, error) {
	s, err := getSession(ctx, db.reader, userID, id)
	if err != nil {
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
		t.UsageView = usageView(t.Usage, s.Runtime, s.Model)
		out = append(out, t)
	}
	return out, rows.Err()
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
// terminated before the turn could start; and false when an interrupt came
// first, after ending the turn as interrupted without running it.
func (db *DB) StartTurn(ctx context.Context, id string, turn int) (bool, error) {
	started, ended := false, false
	err := db.write(ctx, func(tx *Tx) error {
		var requested bool
		if err := tx.QueryRowContext(ctx, `SELECT interrupt_requested FROM sessions WHERE id = ? AND status = ?`,
			id, StatusPending).Scan(&requested); err == nil && requested {
			ended = true
			return finishTx(ctx, tx, id, &turn, StatusCompleted, TurnResult{Interrupted: true})
		}
		ok, err := runPendingSession(ctx, tx, id)
		if err != nil || !ok {
			return err
		}
		if err := runTurn(ctx, tx, id, turn); err != nil {
			return err
		}
		started = true
		return enqueueWebhooks(ctx, tx, id, EventSessionRunning)
	})
	if started || ended {
		db.notify.bump(id)
	}
	return started, err
}

// runPendingSession moves the session to running if it is still pending.
func runPendingSession(ctx context.Context, tx *Tx, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
		StatusRunning, tx.Stamp(), id, StatusPending)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func runTurn(ctx context.Context, tx *Tx, id string, turn int) error {
	_, err := tx.ExecContext(ctx, `UPDATE session_turns SET status = ?, started_at = ? WHERE session_id = ? AND turn_number = ?`,
		StatusRunning, tx.Stamp(), id, turn)
	return err
}

// TurnResult is how a turn ended.
type TurnResult struct {
	ExitCode    *int   // nil when the CLI never exited on its own
	Error       string // reason when it failed without an exit code, or a note
	Interrupted bool   // an interrupt ended it (ExitCode: the killed process's)
	Result      *string
	Usage       json.RawMessage
}

// FinishTurn records a turn's end: exit 0 or an interrupt completes the
// session, anything else fails it. A session terminated meanwhile stays
// terminated.
func (db *DB) FinishTurn(ctx context.Context, id string, turn int, r TurnResult) error {
	status := StatusFailed
	if r.Interrupted || r.ExitCode != nil && *r.ExitCode == 0 && r.Error == "" {
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
	err := db.write(ctx, func(tx *Tx) error { return finishTx(ctx, tx, id, turn, status, r) })
	if err == nil {
		db.notify.bump(id)
	}
	return err
}

// finishTx ends the turn(s) and the session; an interrupt request is
// answered by then, whichever way the turn ended.
func finishTx(ctx context.Context, tx *Tx, id string, turn *int, status string, r TurnResult) error {
	if err := endTurns(ctx, tx, id, turn, status, r); err != nil {
		return err
	}
	if err := endSession(ctx, tx, id, status, r); err != nil {
		return err
	}
	var now string
	if err := tx.QueryRowContext(ctx, `SELECT status FROM sessions WHERE id = ?`, id).Scan(&now); err != nil {
		return err
	}
	if now == status { // not terminated meanwhile (terminate told its own)
		if err := enqueueWebhooks(ctx, tx, id, webhookEventFor(status)); err != nil {
			return err
		}
	}
	return checkBudget(ctx, tx, id)
}

// checkBudget marks a session whose turns' cost reached its budget: it
// takes no more prompts.
func checkBudget(ctx context.Context, tx *Tx, id string) error {
	var budget sql.NullFloat64
	if err := tx.QueryRowContext(ctx, `SELECT budget_usd FROM sessions WHERE id = ?`, id).Scan(&budget); err != nil || !budget.Valid {
		return err
	}
	total, err := spent(ctx, tx, id)
	if err != nil {
		return err
	}
	if total >= budget.Float64 {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET budget_exhausted = 1 WHERE id = ? AND budget_exhausted = 0`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return enqueueWebhooks(ctx, tx, id, EventSessionBudgetReached)
		}
	}
	return nil
}

// endTurns records the end of the given turn, or of every pending or
// running turn when turn is nil.
func endTurns(ctx context.Context, tx *Tx, id string, turn *int, status string, r TurnResult) error {
	var usage any
	if len(r.Usage) > 0 {
		usage = string(r.Usage)
	}
	q := `UPDATE session_turns SET status = ?, exit_code = ?, error = ?, interrupted = ?, result = ?, usage = ?, ended_at = ?,
			started_at = COALESCE(started_at, ?) WHERE session_id = ? AND `
	args := []any{status, exitCodeArg(r.ExitCode), r.Error, r.Interrupted, r.Result, usage, tx.Stamp(), tx.Stamp(), id}
	if turn != nil {
		q += `turn_number = ?`
		args = append(args, *turn)
	} else {
		q += `status IN ('pending', 'running')`
	}
	// A turn ended by terminate keeps the failed status it got then.
	q += ` AND status IN ('pending', 'running')`
	_, err := tx.ExecContext(ctx, q, args...)
	return err
}

// endSession records the session's outcome unless it was terminated.
func endSession(ctx context.Context, tx *Tx, id, status string, r TurnResult) error {
	_, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, exit_code = ?, error = ?, updated_at = ?
			WHERE id = ? AND status != ?`, status, exitCodeArg(r.ExitCode), r.Error, tx.Stamp(), id, StatusTerminated)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE sessions SET interrupt_requested = 0 WHERE id = ?`, id)
	return err
}

// exitCodeArg is an optional exit code as a column value (NULL for nil).
func exitCodeArg(code *int) any {
	if code == nil {
		return nil
	}
	return *code
}

// SetRuntimeSessionID records the CLI's own conversation id for resuming.
func (db *DB) SetRuntimeSessionID(ctx context.Context, id, runtimeID string) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET runtime_session_id = ? WHERE id = ?`, runtimeID, id)
		return err
	})
}

// DetachedTurn is a running turn whose command aod let go of at a
// shutdown, to be taken up again (see DetachTurn).
type DetachedTurn struct {
	Turn
	ExecID                 string
	StdoutSeen, StderrSeen int64
}

// SetTurnExec records the id of the command a running turn runs, on a
// backend whose commands outlive aod's connection to them.
func (db *DB) SetTurnExec(ctx context.Context, id string, turn int, execID string) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE session_turns SET exec_id = ?, detached = 0 WHERE session_id = ? AND turn_number = ?`, execID, id, turn)
		return err
	})
}

// DetachTurn records that aod let go of a running turn's command, still
// running, after storing stdoutSeen and stderrSeen bytes of its output.
func (db *DB) DetachTurn(ctx context.Context, id string, turn int, stdoutSeen, stderrSeen int64) error {
	return db.write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE session_turns SET detached = 1, stdout_seen = ?, stderr_seen = ?
			WHERE session_id = ? AND turn_number = ? AND status = ? AND exec_id IS NOT NULL`, stdoutSeen, stderrSeen, id, turn, StatusRunning)
		return err
	})
}

// DetachedTurn returns the session's running turn if aod let go of its
// command at a shutdown, else nil.
func (db *DB) DetachedTurn(ctx context.Context, id string) (*DetachedTurn, error) {
	var d DetachedTurn
	var exec sql.NullString
	row := db.reader.QueryRowContext(ctx, `SELECT `+turnColumns+`, exec_id, stdout_seen, stderr_seen FROM session_turns
		WHERE session_id = ? AND status = ? AND detached = 1 ORDER BY turn_number DESC LIMIT 1`, id, StatusRunning)
	t, err := scanTurn(scanFunc(func(dest ...any) error {
		return row.Scan(append(dest, &exec, &d.StdoutSeen, &d.StderrSeen)...)
	}))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d.Turn, d.ExecID = *t, exec.String
	return &d, nil
}

// scanFunc is a scanner made of a function.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// RunningTurnExec is the id of the command the session's running turn
// runs on a backend whose commands outlive aod ("" when none is recorded).
func (db *DB) RunningTurnExec(ctx context.Context, id string) (string, error) {
	var exec sql.NullString
	err := db.reader.QueryRowContext(ctx, `SELECT exec_id FROM session_turns WHERE session_id = ? AND status = ?
		ORDER BY turn_number DESC LIMIT 1`, id, StatusRunning).Scan(&exec)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return exec.String, err
}
