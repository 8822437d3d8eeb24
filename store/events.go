package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// Event kinds stored in the log. The stream derives start, turn_start and
// the terminal event; only these are rows.
const (
	KindStage  = "stage"
	KindOutput = "output"
)

// Stage states.
const (
	StageStarted = "started"
	StageDone    = "done"
	StageFailed  = "failed"
)

// Event is one row of a session's log. ID is the SSE event id.
type Event struct {
	ID         int64
	SessionID  string
	Turn       int // 0 for provisioning rows
	Kind       string
	Stream     string // stdout|stderr for output rows
	Stage      string
	State      string
	DurationMS *int64
	Data       string // output bytes, or a failed stage's message
}

// AppendEvents stores events for one session in one transaction, fills in
// their ids and then wakes the session's waiters. Nothing is visible to a
// reader before it is committed.
func (db *DB) AppendEvents(ctx context.Context, sessionID string, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	err := db.write(ctx, func(tx *Tx) error {
		stamp := tx.Stamp()
		// One multi-row INSERT per batch keeps group commits cheap.
		const cols = 9
		const maxRows = 100 // SQLite's default limit is 32766 variables
		for start := 0; start < len(events); start += maxRows {
			batch := events[start:min(start+maxRows, len(events))]
			var q strings.Builder
			q.WriteString(`INSERT INTO events(session_id, turn, kind, stream, stage, state, duration_ms, data, created_at) VALUES `)
			args := make([]any, 0, len(batch)*cols)
			for i := range batch {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteString(`(?,?,?,?,?,?,?,?,?)`)
				e := &batch[i]
				var turn any
				if e.Turn > 0 {
					turn = e.Turn
				}
				args = append(args, sessionID, turn, e.Kind, e.Stream, e.Stage, e.State, e.DurationMS, e.Data, stamp)
			}
			q.WriteString(` RETURNING id`)
			rows, err := tx.QueryContext(ctx, q.String(), args...)
			if err != nil {
				return err
			}
			i := 0
			for rows.Next() {
				if err := rows.Scan(&batch[i].ID); err != nil {
					rows.Close()
					return err
				}
				batch[i].SessionID = sessionID
				i++
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	db.notify.bump(sessionID)
	db.appended.Add(int64(len(events)))
	return nil
}

// EventsAppended counts the log rows this process has stored.
func (db *DB) EventsAppended() int64 { return db.appended.Load() }

// SessionCounts is how many sessions there are in each status.
func (db *DB) SessionCounts(ctx context.Context) (map[string]int, error) {
	return db.countsBy(ctx, `SELECT status, count(*) FROM sessions GROUP BY status`)
}

// countsBy runs a query of (key, count) rows, e.g. a GROUP BY, and returns
// the counts by key.
func (db *DB) countsBy(ctx context.Context, query string) (map[string]int, error) {
	rows, err := db.reader.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return nil, err
		}
		out[key] = n
	}
	return out, rows.Err()
}

// Events reads up to limit rows of a session's log with id > after, in id
// order. It holds no transaction open after it returns.
func (db *DB) Events(ctx context.Context, sessionID string, after int64, limit int) ([]Event, error) {
	rows, _, err := db.EventBatch(ctx, sessionID, after, limit, 0)
	return rows, err
}

// EventBatch is Events bounded by bytes as well: it stops after the row
// that brings the batch's data to maxBytes (0: no bound), so a batch never
// holds much more than maxBytes whatever the rows' sizes. full reports that
// a bound stopped it (more rows may follow).
func (db *DB) EventBatch(ctx context.Context, sessionID string, after int64, maxRows, maxBytes int) (batch []Event, full bool, err error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, COALESCE(turn, 0), kind, stream, stage, state, duration_ms, data
		FROM events WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?`, sessionID, after, maxRows)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		e := Event{SessionID: sessionID}
		var dur sql.NullInt64
		if err := rows.Scan(&e.ID, &e.Turn, &e.Kind, &e.Stream, &e.Stage, &e.State, &dur, &e.Data); err != nil {
			return nil, false, err
		}
		if dur.Valid {
			e.DurationMS = &dur.Int64
		}
		batch = append(batch, e)
		size += len(e.Data)
		if maxBytes > 0 && size >= maxBytes {
			return batch, true, rows.Err()
		}
	}
	return batch, len(batch) == maxRows, rows.Err()
}

// LastEventID is the id of a session's newest log row, 0 when it has none.
func (db *DB) LastEventID(ctx context.Context, sessionID string) (int64, error) {
	var id sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT max(id) FROM events WHERE session_id = ?`, sessionID).Scan(&id)
	return id.Int64, err
}

// ChangeSeq returns a number that grows whenever the session gets new
// events or changes state. Take it before reading, then WaitChange with it:
// a change that lands in between is not missed.
func (db *DB) ChangeSeq(sessionID string) uint64 { return db.notify.seq(sessionID) }

// WaitChange blocks until the session's change sequence passes seq or ctx
// ends (returning ctx's error).
func (db *DB) WaitChange(ctx context.Context, sessionID string, seq uint64) error {
	return db.notify.wait(ctx, sessionID, seq)
}

// notifier is the in-memory "session X changed" signal: the log and the
// session state machine bump it after they commit; stream readers wait on it.
type notifier struct {
	mu sync.Mutex
	m  map[string]*notifyEntry
}

type notifyEntry struct {
	seq uint64
	ch  chan struct{} // closed and replaced on every bump
}

func (n *notifier) entry(id string) *notifyEntry {
	if n.m == nil {
		n.m = map[string]*notifyEntry{}
	}
	e := n.m[id]
	if e == nil {
		e = &notifyEntry{ch: make(chan struct{})}
		n.m[id] = e
	}
	return e
}

func (n *notifier) bump(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.m[id]
	if e == nil {
		return // nobody has looked at this session: nothing to wake
	}
	e.seq++
	close(e.ch)
	e.ch = make(chan struct{})
}

// forget drops a deleted session's entry. Entries are otherwise kept: a
// reader holding a seq must find the same entry when it waits.
func (n *notifier) forget(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.m[id]; e != nil {
		close(e.ch) // wake any last waiter so it sees the session is gone
		delete(n.m, id)
	}
}

func (n *notifier) seq(id string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.entry(id).seq
}

func (n *notifier) wait(ctx context.Context, id string, seq uint64) error {
	n.mu.Lock()
	e := n.entry(id)
	if e.seq != seq {
		n.mu.Unlock()
		return nil
	}
	ch := e.ch
	n.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OutputBytes is the number of output bytes stored for a session across
// all its turns (the runner's per-session output cap counts them, so a
// restart does not reset it).
func (db *DB) OutputBytes(ctx context.Context, sessionID string) (int64, error) {
	var n sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT sum(length(CAST(data AS BLOB))) FROM events WHERE session_id = ? AND kind = ?`,
		sessionID, KindOutput).Scan(&n)
	return n.Int64, err
}
