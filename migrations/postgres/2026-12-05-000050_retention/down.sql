DROP TRIGGER consent_events_no_delete ON consent_events;
DROP FUNCTION consent_events_prune_only();
DROP TRIGGER consent_events_no_update ON consent_events;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
DROP TABLE ledger_checkpoints;
ALTER TABLE purposes DROP COLUMN retention_days;
