-- The environment version a session was created with: provisioning and
-- every turn read that snapshot (packages, setup script, networking, env
-- vars), so editing the environment changes only later sessions. 0: the
-- session is older than this column and runs the environment as it is now.
ALTER TABLE sessions ADD COLUMN environment_version INTEGER NOT NULL DEFAULT 0;

-- What a session's provisioning script wrote (stdout and stderr together),
-- bounded by the runner and with the session's secret values redacted.
CREATE TABLE session_provision_logs (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    log        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
