-- The session list's filters and the dashboard's panels (sessionlist.go):
-- a user's sessions of one status, newest first; an agent's sessions,
-- newest first (also what deleting an agent looks up to clear agent_id);
-- and a user's sessions by their last change, for the recently ended ones
-- and the spend of the last days.
CREATE INDEX sessions_user_status ON sessions(user_id, status, id);
CREATE INDEX sessions_agent ON sessions(agent_id, id);
CREATE INDEX sessions_user_updated ON sessions(user_id, updated_at, id);
