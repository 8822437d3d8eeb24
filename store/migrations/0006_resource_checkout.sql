-- A repository resource may name the branch, tag or commit to check out
-- ('' : the repository's default branch).
ALTER TABLE session_resources ADD COLUMN checkout TEXT NOT NULL DEFAULT '';
