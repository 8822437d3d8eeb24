-- A user's secrets: name -> value, each value sealed with the data dir's
-- key and bound to its user and name. Every session of the user gets them
-- as env vars, below the environment's and the session's own.
CREATE TABLE user_secrets (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      BLOB NOT NULL, -- sealed
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
