-- A turn running on a backend whose commands outlive aod's connection
-- (Sprites): the command's id there, and, once aod let go of it at a
-- shutdown, how many bytes of each stream it had stored, so the next
-- server takes it up again without gap or duplicate.
ALTER TABLE session_turns ADD COLUMN exec_id TEXT;
ALTER TABLE session_turns ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session_turns ADD COLUMN stdout_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session_turns ADD COLUMN stderr_seen INTEGER NOT NULL DEFAULT 0;
