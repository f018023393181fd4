CREATE OR REPLACE FUNCTION consent_events_prune_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM ledger_checkpoints c
        WHERE c.tenant_id = OLD.tenant_id AND c.subject_id = OLD.subject_id AND c.through_seq >= OLD.seq
    ) THEN
        RAISE EXCEPTION 'consent events are append-only (a checkpoint must cover a pruned event)';
    END IF;
    RETURN OLD;
END;
$$;
DROP TABLE ledger_pruning;
