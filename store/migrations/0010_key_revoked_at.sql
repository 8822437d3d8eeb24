-- When an API key was revoked (NULL while it is active or for keys revoked
-- before this was kept).
ALTER TABLE api_keys ADD COLUMN revoked_at TEXT;
