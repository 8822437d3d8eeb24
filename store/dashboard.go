package store

import "context"

// Counts are the dashboard's numbers.
type Counts struct{ Agents, Environments, Sessions, ActiveKeys int }

// DashboardCounts counts a user's non-archived agents and environments,
// all sessions and active, unexpired API keys.
func (db *DB) DashboardCounts(ctx context.Context, userID string) (Counts, error) {
	var c Counts
	err := db.reader.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM agents WHERE user_id = ?1 AND archived_at IS NULL),
		(SELECT count(*) FROM environments WHERE user_id = ?1 AND archived_at IS NULL),
		(SELECT count(*) FROM sessions WHERE user_id = ?1),
		(SELECT count(*) FROM api_keys WHERE user_id = ?1 AND is_active = 1 AND (expires_at IS NULL OR expires_at > ?2))`,
		userID, FormatTime(db.now())).Scan(&c.Agents, &c.Environments, &c.Sessions, &c.ActiveKeys)
	return c, err
}
