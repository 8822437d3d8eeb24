-- Sessions: what the runner needs to run, resume and recover them.
ALTER TABLE sessions ADD COLUMN model TEXT NOT NULL DEFAULT '';
-- The agent's system prompt when the session was created (prefixed to turn 1).
ALTER TABLE sessions ADD COLUMN system TEXT NOT NULL DEFAULT '';
-- The agent version the session runs (its MCP servers and skills).
ALTER TABLE sessions ADD COLUMN agent_version INTEGER NOT NULL DEFAULT 0;
-- Why a session failed without an exit code (shown in the stream's error event).
ALTER TABLE sessions ADD COLUMN error TEXT NOT NULL DEFAULT '';
-- '' (not yet), 'running' (provisioning in progress) or 'done'.
ALTER TABLE sessions ADD COLUMN provision_state TEXT NOT NULL DEFAULT '';
-- The CLI's own conversation id, to resume it on later turns.
ALTER TABLE sessions ADD COLUMN runtime_session_id TEXT NOT NULL DEFAULT '';
-- AES-256-GCM ciphertext of the session's secret env vars (NULL when none).
ALTER TABLE sessions ADD COLUMN secret_env_vars BLOB;
CREATE INDEX sessions_status ON sessions(status);

CREATE TABLE session_turns (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_number INTEGER NOT NULL,
    prompt      TEXT NOT NULL,
    timeout_s   INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    exit_code   INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    usage       TEXT,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    PRIMARY KEY (session_id, turn_number)
);

CREATE TABLE session_resources (
    session_id          TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position            INTEGER NOT NULL,
    type                TEXT NOT NULL,
    url                 TEXT NOT NULL,
    mount_path          TEXT NOT NULL,
    authorization_token BLOB,
    PRIMARY KEY (session_id, position)
);

-- The event log: every stage and output row of every session, in one id
-- sequence that is also the SSE event id. turn is NULL for provisioning.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn        INTEGER,
    kind        TEXT NOT NULL,
    stream      TEXT NOT NULL DEFAULT '',
    stage       TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER,
    data        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
CREATE INDEX events_session ON events(session_id, id);
