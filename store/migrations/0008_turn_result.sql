-- A turn's result: the CLI's final answer (NULL when it gave none).
ALTER TABLE session_turns ADD COLUMN result TEXT;
