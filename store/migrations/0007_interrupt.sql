-- POST /sessions/{id}/interrupt: the request, until the runner has ended
-- the turn; and which turns an interrupt ended (they report "completed"
-- with "interrupted": true).
ALTER TABLE sessions ADD COLUMN interrupt_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session_turns ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
