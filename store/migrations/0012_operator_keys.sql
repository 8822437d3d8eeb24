-- An operator key (`aod token create --admin`) may also create users and
-- their keys over HTTP (POST /admin/api-keys).
ALTER TABLE api_keys ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
