DROP INDEX consent_events_subject;
CREATE INDEX consent_events_subject ON consent_events (tenant_id, subject_id, seq);
ALTER TABLE data_subjects RESET (fillfactor);
ALTER TABLE consent_states RESET (fillfactor);
