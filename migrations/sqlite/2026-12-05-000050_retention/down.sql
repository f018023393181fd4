DROP TRIGGER consent_events_no_delete;
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only');
END;
DROP TABLE ledger_checkpoints;
ALTER TABLE purposes DROP COLUMN retention_days;
