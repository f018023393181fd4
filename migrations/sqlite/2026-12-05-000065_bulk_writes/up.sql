-- Events by subject (see the PostgreSQL migration): subject ids are unique across tenants, so
-- the tenant id does not narrow the index; without it every entry is 37 bytes shorter.
-- (SQLite has no fillfactor; the PostgreSQL migration also keeps room for in-place updates.)
DROP INDEX consent_events_subject;
CREATE INDEX consent_events_subject ON consent_events (subject_id, seq);
