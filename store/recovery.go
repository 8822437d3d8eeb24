package store

import "context"

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
