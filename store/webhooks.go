package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Webhook event types: what happened to a session.
const (
	EventSessionRunning       = "session.running" // a turn started
	EventSessionCompleted     = "session.completed"
	EventSessionFailed        = "session.failed"
	EventSessionTerminated    = "session.terminated"
	EventSessionBudgetReached = "session.budget_reached"
)

// WebhookEvents are every event type, the default subscription.
var WebhookEvents = []string{EventSessionRunning, EventSessionCompleted, EventSessionFailed, EventSessionTerminated, EventSessionBudgetReached}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Webhook is one of a user's endpoints.
type Webhook struct {
	ID          string
	UserID      string
	URL         string
	Events      []string
	Description string
	CreatedAt   time.Time
	Secret      string // "whsec_…"; only filled where it is needed (create, sending)
}

// Delivery is one event sent (or to send) to a webhook.
type Delivery struct {
	ID             string
	WebhookID      string
	EventType      string
	SessionID      string
	Body           string
	Status         string
	Attempts       int
	ResponseStatus *int
	CreatedAt      time.Time
	LastAttemptAt  *time.Time
	NextAttemptAt  time.Time
}

// MaxWebhooksPerUser bounds a user's webhooks.
const MaxWebhooksPerUser = 20

func webhookBinding(id string) string { return "webhook-secret:" + id }

// CreateWebhook stores a user's webhook with a new secret, returned this
// once in Secret.
func (db *DB) CreateWebhook(ctx context.Context, userID, url string, events []string, description string) (*Webhook, error) {
	if len(events) == 0 {
		events = slices.Clone(WebhookEvents)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	w := &Webhook{ID: NewID(), UserID: userID, URL: url, Events: events, Description: description,
		Secret: "whsec_" + base64.StdEncoding.EncodeToString(raw)}
	sealed, err := db.crypt.seal([]byte(w.Secret), webhookBinding(w.ID))
	if err != nil {
		return nil, err
	}
	ev, _ := json.Marshal(events)
	err = db.write(ctx, func(tx *Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM webhooks WHERE user_id = ?`, userID).Scan(&n); err != nil {
			return err
		}
		if n >= MaxWebhooksPerUser {
			return Errorf(Conflict, "A user may have at most %d webhooks", MaxWebhooksPerUser)
		}
		w.CreatedAt = tx.Now
		_, err := tx.ExecContext(ctx, `INSERT INTO webhooks(id, user_id, url, events, description, secret, created_at) VALUES (?,?,?,?,?,?,?)`,
			w.ID, userID, url, string(ev), description, sealed, tx.Stamp())
		return err
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func scanWebhook(s scanner) (*Webhook, error) {
	var w Webhook
	var ev, created string
	if err := s.Scan(&w.ID, &w.UserID, &w.URL, &ev, &w.Description, &created); err != nil {
		return nil, err
	}
	json.Unmarshal([]byte(ev), &w.Events)
	w.CreatedAt, _ = ParseTime(created)
	return &w, nil
}

// ListWebhooks lists a user's webhooks, oldest first.
func (db *DB) ListWebhooks(ctx context.Context, userID string) ([]*Webhook, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, user_id, url, events, description, created_at FROM webhooks WHERE user_id = ? ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// GetWebhook returns one of the user's webhooks (404 for others').
func (db *DB) GetWebhook(ctx context.Context, userID, id string) (*Webhook, error) {
	w, err := scanWebhook(db.reader.QueryRowContext(ctx, `SELECT id, user_id, url, events, description, created_at FROM webhooks WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Errorf(NotFound, "Webhook not found")
	}
	return w, err
}

// DeleteWebhook removes one of the user's webhooks and its deliveries.
func (db *DB) DeleteWebhook(ctx context.Context, userID, id string) error {
	return db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ? AND user_id = ?`, id, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(NotFound, "Webhook not found")
		}
		return nil
	})
}

// enqueueWebhooks stores a delivery of event for each of the session's
// owner's webhooks that asked for it, in the transaction of the change.
func enqueueWebhooks(ctx context.Context, tx *Tx, sessionID, event string) error {
	var userID, status string
	var turn int
	if err := tx.QueryRowContext(ctx, `SELECT user_id, status, (SELECT COALESCE(max(turn_number), 0) FROM session_turns WHERE session_id = sessions.id)
		FROM sessions WHERE id = ?`, sessionID).Scan(&userID, &status, &turn); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, events FROM webhooks WHERE user_id = ?`, userID)
	if err != nil {
		return err
	}
	type hook struct{ id, events string }
	var hooks []hook
	for rows.Next() {
		var h hook
		if err := rows.Scan(&h.id, &h.events); err != nil {
			rows.Close()
			return err
		}
		hooks = append(hooks, h)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, h := range hooks {
		var events []string
		json.Unmarshal([]byte(h.events), &events)
		if !slices.Contains(events, event) {
			continue
		}
		id := NewID()
		body, _ := json.Marshal(map[string]any{"id": id, "type": event, "created_at": FormatTime(tx.Now),
			"data": map[string]any{"session_id": sessionID, "status": status, "turn_number": turn}})
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries(id, webhook_id, event_type, session_id, body, next_attempt_at, created_at)
			VALUES (?,?,?,?,?,?,?)`, id, h.id, event, sessionID, string(body), tx.Stamp(), tx.Stamp()); err != nil {
			return err
		}
	}
	return nil
}

func scanDelivery(s scanner) (*Delivery, error) {
	var d Delivery
	var resp sql.NullInt64
	var created, next string
	var last sql.NullString
	if err := s.Scan(&d.ID, &d.WebhookID, &d.EventType, &d.SessionID, &d.Body, &d.Status, &d.Attempts, &resp, &created, &last, &next); err != nil {
		return nil, err
	}
	if resp.Valid {
		r := int(resp.Int64)
		d.ResponseStatus = &r
	}
	d.CreatedAt, _ = ParseTime(created)
	d.NextAttemptAt, _ = ParseTime(next)
	d.LastAttemptAt = parseNullTime(last)
	return &d, nil
}

const deliveryColumns = `id, webhook_id, event_type, session_id, body, status, attempts, response_status, created_at, last_attempt_at, next_attempt_at`

// ListDeliveries lists a user's webhook's deliveries, newest first (at
// most 100).
func (db *DB) ListDeliveries(ctx context.Context, userID, webhookID string) ([]*Delivery, error) {
	if _, err := db.GetWebhook(ctx, userID, webhookID); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT 100`, webhookID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Redeliver queues one of a user's webhook's deliveries again, now.
func (db *DB) Redeliver(ctx context.Context, userID, webhookID, deliveryID string) error {
	if _, err := db.GetWebhook(ctx, userID, webhookID); err != nil {
		return err
	}
	return db.write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_attempt_at = ? WHERE id = ? AND webhook_id = ?`,
			DeliveryPending, tx.Stamp(), deliveryID, webhookID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Errorf(NotFound, "Delivery not found")
		}
		return nil
	})
}

// DueDeliveries are pending deliveries whose time has come, oldest first,
// with their webhook's URL and secret (unsealed).
func (db *DB) DueDeliveries(ctx context.Context, limit int) ([]*Delivery, map[string]*Webhook, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`, DeliveryPending, FormatTime(db.now()), limit)
	if err != nil {
		return nil, nil, err
	}
	var out []*Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			rows.Close()
			return nil, nil, err
		}
		out = append(out, d)
	}
	if err := rows.Close(); err != nil {
		return nil, nil, err
	}
	hooks := map[string]*Webhook{}
	for _, d := range out {
		if hooks[d.WebhookID] != nil {
			continue
		}
		var w Webhook
		var sealed []byte
		err := db.reader.QueryRowContext(ctx, `SELECT id, user_id, url, secret FROM webhooks WHERE id = ?`, d.WebhookID).Scan(&w.ID, &w.UserID, &w.URL, &sealed)
		if err != nil {
			continue // deleted meanwhile: its deliveries went with it
		}
		plain, err := db.crypt.open(sealed, webhookBinding(w.ID))
		if err != nil {
			return nil, nil, err
		}
		w.Secret = string(plain)
		hooks[w.ID] = &w
	}
	return out, hooks, nil
}

// RecordAttempt records an attempt at a delivery: succeeded, or tried
// again at next, or failed for good when next is zero.
func (db *DB) RecordAttempt(ctx context.Context, id string, status int, ok bool, next time.Time) error {
	return db.write(ctx, func(tx *Tx) error {
		st := DeliveryPending
		switch {
		case ok:
			st = DeliverySucceeded
		case next.IsZero():
			st = DeliveryFailed
		}
		var resp any
		if status > 0 {
			resp = status
		}
		nextAt := tx.Stamp()
		if !next.IsZero() {
			nextAt = FormatTime(next)
		}
		_, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, response_status = ?,
			last_attempt_at = ?, next_attempt_at = ? WHERE id = ?`, st, resp, tx.Stamp(), nextAt, id)
		return err
	})
}

// ValidWebhookEvent reports whether s is an event type webhooks take.
func ValidWebhookEvent(s string) bool { return slices.Contains(WebhookEvents, s) }

// webhookEventFor is the event a session status change is, "" for none.
func webhookEventFor(status string) string {
	switch status {
	case StatusCompleted:
		return EventSessionCompleted
	case StatusFailed:
		return EventSessionFailed
	case StatusTerminated:
		return EventSessionTerminated
	}
	return ""
}

// DeliveryCounts is how many webhook deliveries there are in each status,
// every user's (for the metrics).
func (db *DB) DeliveryCounts(ctx context.Context) (map[string]int, error) {
	return db.countsBy(ctx, `SELECT status, count(*) FROM webhook_deliveries GROUP BY status`)
}
