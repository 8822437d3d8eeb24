package store

import (
	"context"
	"time"
)

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

// SessionEnd is what the sweep needs of a session: its status and when it
// last changed (a finished session's end).
type SessionEnd struct {
	Status    string
	UpdatedAt time.Time
}

// SessionStatuses maps every session id to its status and last change (the runner sweeps
// sprite directories of sessions that are gone or terminated).
func (db *DB) SessionStatuses(ctx context.Context) (map[string]SessionEnd, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, status, updated_at FROM sessions`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]SessionEnd{}
	for rows.Next() {
		var id, st, updated string
		if err := rows.Scan(&id, &st, &updated); err != nil {
			return nil, err
		}
		e := SessionEnd{Status: st}
		e.UpdatedAt, _ = ParseTime(updated)
		out[id] = e
	}
	return out, rows.Err()
}

// SpriteRemoved records, if the session is still finished, that its
// sprite is going: a later prompt is refused (its conversation and files
// go with it). It reports false for a session that took a prompt since.
func (db *DB) SpriteRemoved(ctx context.Context, id string) (bool, error) {
	removed := false
	err := db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET provision_state = ? WHERE id = ? AND status IN (?, ?, ?)`,
			ProvisionRemoved, id, StatusCompleted, StatusFailed, StatusTerminated)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		removed = n > 0
		return nil
	})
	return removed, err
}
