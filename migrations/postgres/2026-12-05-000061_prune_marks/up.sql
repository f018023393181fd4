-- Only a retention run deletes events (issue 11 review): the run writes the ids of the events it
-- prunes into `ledger_pruning`, deletes them and empties it again, all in its transaction, so no
-- other session ever sees a mark. A DELETE of an event without a mark is refused, even at or
-- below its subject's checkpoint; so is one of an event a state rests on or of a chain head,
-- which a run never prunes.
CREATE TABLE ledger_pruning (
    event_id TEXT PRIMARY KEY
);

CREATE OR REPLACE FUNCTION consent_events_prune_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_pruning p WHERE p.event_id = OLD.id) THEN
        RAISE EXCEPTION 'consent events are append-only (only a retention run prunes events)';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM ledger_checkpoints c
        WHERE c.tenant_id = OLD.tenant_id AND c.subject_id = OLD.subject_id AND c.through_seq >= OLD.seq
    ) THEN
        RAISE EXCEPTION 'consent events are append-only (a checkpoint must cover a pruned event)';
    END IF;
    IF EXISTS (
        SELECT 1 FROM consent_states s
        WHERE s.tenant_id = OLD.tenant_id AND s.purpose_key = OLD.purpose_key
          AND s.subject_id = OLD.subject_id AND s.event_id = OLD.id
    ) OR EXISTS (
        SELECT 1 FROM data_subjects d WHERE d.id = OLD.subject_id AND d.last_event_hash = OLD.hash
    ) THEN
        RAISE EXCEPTION 'consent events are append-only (the event a state rests on and a chain head are kept)';
    END IF;
    RETURN OLD;
END;
$$;
