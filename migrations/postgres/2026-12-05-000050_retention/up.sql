-- Retention (issue 11, item 7): how long a purpose's events are kept, and the signed
-- checkpoints that stand in for pruned events in each subject's hash chain.
ALTER TABLE purposes ADD COLUMN retention_days INTEGER;

-- One per data subject whose events were pruned, replaced by each later pruning of the subject:
-- how many events are gone, their time range, the hash of the last one, and `jws`, a JWS signed
-- with the receipt key over all of that and the links that bridge the gaps (see
-- `domain::checkpoint`). `consentry ledger verify` starts the subject's chain from it.
CREATE TABLE ledger_checkpoints (
    tenant_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    events BIGINT NOT NULL,
    first_occurred_at TIMESTAMP NOT NULL,
    last_occurred_at TIMESTAMP NOT NULL,
    last_hash TEXT NOT NULL,
    -- The largest `seq` of the events it replaces.
    through_seq BIGINT NOT NULL,
    jws TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, subject_id)
);

-- Events stay append-only: no UPDATE ever, and a DELETE only of an event a checkpoint of its
-- subject already covers (written first, in the same transaction, by the pruning).
DROP TRIGGER consent_events_no_update ON consent_events;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE FUNCTION consent_events_prune_only() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_prune_only();
