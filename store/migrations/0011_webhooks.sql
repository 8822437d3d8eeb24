-- Webhooks: a user's endpoints told of their sessions' state changes, and
-- every delivery, stored before it is sent (retried, surviving restarts).
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL, -- JSON list of event types
    description TEXT NOT NULL DEFAULT '',
    secret      BLOB NOT NULL, -- sealed with the data dir's key
    created_at  TEXT NOT NULL
);
CREATE INDEX webhooks_user ON webhooks(user_id);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending', -- pending | succeeded | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    response_status INTEGER,
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_attempt_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, created_at);
