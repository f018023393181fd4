-- TRUNCATE fires no row trigger: it emptied consent_events past the append-only triggers
-- (found by a fresh trial of issue 11). A statement trigger refuses it.
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
