DROP TRIGGER consent_events_no_delete;
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_checkpoints c
    WHERE c.tenant_id = OLD.tenant_id AND c.subject_id = OLD.subject_id AND c.through_seq >= OLD.seq
)
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only (a checkpoint must cover a pruned event)');
END;
DROP TABLE ledger_pruning;
