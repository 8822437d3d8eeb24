package store

import (
	"context"
	"database/sql"
	"time"
)

// MaxEgressHosts bounds a session's egress record: past this many distinct
// (host, port, allowed) entries, new ones are counted in one overflow row
// per verdict (host "*", port 0), so a sprite trying a million hosts cannot
// grow the table without bound.
const MaxEgressHosts = 1000

// maxHostLen is the longest host kept (a DNS name's limit).
const maxHostLen = 253

// EgressHit is Count connections to Host:Port, the last at At.
type EgressHit struct {
	Host    string
	Port    int
	Allowed bool
	Count   int
	At      time.Time
}

// EgressEntry is one row of a session's egress record.
type EgressEntry struct {
	Host    string
	Port    int
	Allowed bool
	Count   int
	FirstAt time.Time
	LastAt  time.Time
}

// RecordEgress adds hits to a session's record. A session that is gone is
// not an error: its sprite's last connections are simply dropped.
func (db *DB) RecordEgress(ctx context.Context, sessionID string, hits []EgressHit) error {
	if len(hits) == 0 {
		return nil
	}
	return db.write(ctx, func(tx *Tx) error {
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE id = ?`, sessionID).Scan(&exists); err != nil || exists == 0 {
			return err
		}
		var rows int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM session_egress WHERE session_id = ?`, sessionID).Scan(&rows); err != nil {
			return err
		}
		for _, h := range hits {
			host := h.Host
			if len(host) > maxHostLen {
				host = host[:maxHostLen]
			}
			port := h.Port
			var have int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM session_egress WHERE session_id = ? AND host = ? AND port = ? AND allowed = ?`,
				sessionID, host, port, h.Allowed).Scan(&have)
			if err == sql.ErrNoRows {
				if rows >= MaxEgressHosts {
					host, port = "*", 0
				} else {
					rows++
				}
			} else if err != nil {
				return err
			}
			at := FormatTime(h.At)
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_egress (session_id, host, port, allowed, count, first_at, last_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (session_id, host, port, allowed) DO UPDATE SET count = count + excluded.count,
					first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at)`,
				sessionID, host, port, h.Allowed, max(h.Count, 1), at, at); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListEgress is a session's egress record, most recent first; a session
// that is not the user's is NotFound.
func (db *DB) ListEgress(ctx context.Context, userID, sessionID string) ([]EgressEntry, error) {
	if _, err := getSession(ctx, db.reader, userID, sessionID); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT host, port, allowed, count, first_at, last_at FROM session_egress
		WHERE session_id = ? ORDER BY last_at DESC, host, port`, sessionID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []EgressEntry{}
	for rows.Next() {
		var e EgressEntry
		var first, last string
		if err := rows.Scan(&e.Host, &e.Port, &e.Allowed, &e.Count, &first, &last); err != nil {
			return nil, err
		}
		if e.FirstAt, err = ParseTime(first); err != nil {
			return nil, err
		}
		if e.LastAt, err = ParseTime(last); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
