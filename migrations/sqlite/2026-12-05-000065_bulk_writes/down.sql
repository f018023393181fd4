DROP INDEX consent_events_subject;
CREATE INDEX consent_events_subject ON consent_events (tenant_id, subject_id, seq);
