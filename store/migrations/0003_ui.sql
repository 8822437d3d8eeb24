-- Web UI login sessions: the cookie holds a random token, stored hashed.
CREATE TABLE ui_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    -- A raw API key shown once on the welcome page, encrypted, then cleared.
    pending_key  BLOB,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX ui_sessions_user ON ui_sessions(user_id);
