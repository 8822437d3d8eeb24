-- Users own everything. password_hash is empty for users created by the CLI
-- until they set a password for the web UI.
CREATE TABLE users (
    id                      TEXT PRIMARY KEY,
    username                TEXT NOT NULL UNIQUE,
    password_hash           TEXT NOT NULL DEFAULT '',
    max_concurrent_sessions INTEGER,
    created_at              TEXT NOT NULL
);

-- API keys are stored as the SHA-256 of the raw token; key_prefix is for display.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash     TEXT NOT NULL UNIQUE,
    key_prefix   TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    is_active    INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    expires_at   TEXT
);
CREATE INDEX api_keys_user ON api_keys(user_id, id);

-- env_vars is AES-256-GCM ciphertext of a JSON object (NULL when empty).
CREATE TABLE environments (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    packages          TEXT NOT NULL DEFAULT '{}',
    env_vars          BLOB,
    setup_script      TEXT NOT NULL DEFAULT '',
    networking_type   TEXT NOT NULL DEFAULT 'unrestricted',
    networking_config TEXT NOT NULL DEFAULT '{}',
    version           INTEGER NOT NULL DEFAULT 1,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    archived_at       TEXT
);
CREATE INDEX environments_user ON environments(user_id, id);
CREATE UNIQUE INDEX environments_active_name ON environments(user_id, name) WHERE archived_at IS NULL;

CREATE TABLE environment_versions (
    environment_id    TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    version           INTEGER NOT NULL,
    name              TEXT NOT NULL,
    packages          TEXT NOT NULL,
    env_vars          BLOB,
    setup_script      TEXT NOT NULL,
    networking_type   TEXT NOT NULL,
    networking_config TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    PRIMARY KEY (environment_id, version)
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    system         TEXT NOT NULL DEFAULT '',
    runtime        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    environment_id TEXT REFERENCES environments(id) ON DELETE SET NULL,
    skills         TEXT NOT NULL DEFAULT '[]',
    mcp_servers    TEXT NOT NULL DEFAULT '[]',
    metadata       TEXT NOT NULL DEFAULT '{}',
    version        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    archived_at    TEXT
);
CREATE INDEX agents_user ON agents(user_id, id);
CREATE INDEX agents_environment ON agents(environment_id);

CREATE TABLE agent_versions (
    agent_id       TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    version        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    system         TEXT NOT NULL,
    runtime        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    environment_id TEXT REFERENCES environments(id) ON DELETE SET NULL,
    skills         TEXT NOT NULL,
    mcp_servers    TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
);
CREATE INDEX agent_versions_environment ON agent_versions(environment_id);

-- Sessions get their runner columns, turns and the event log in a later
-- migration; the table exists now so an environment referenced by a session
-- cannot be hard-deleted (RESTRICT backs up the store's 409 check).
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    agent_id       TEXT REFERENCES agents(id) ON DELETE SET NULL,
    environment_id TEXT REFERENCES environments(id) ON DELETE RESTRICT,
    runtime        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'pending',
    exit_code      INTEGER,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id, id);
CREATE INDEX sessions_environment ON sessions(environment_id);
