-- A session's optional budget in US dollars, and whether its turns' cost
-- reached it (no more prompts then).
ALTER TABLE sessions ADD COLUMN budget_usd REAL;
ALTER TABLE sessions ADD COLUMN budget_exhausted INTEGER NOT NULL DEFAULT 0;
