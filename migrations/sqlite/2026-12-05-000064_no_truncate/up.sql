-- SQLite has no TRUNCATE: its `DELETE FROM consent_events` without WHERE runs the row triggers
-- (the truncate optimisation is off for a table with triggers). Kept in step with PostgreSQL.
SELECT 1;
