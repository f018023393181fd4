DROP TABLE presentations;
ALTER TABLE consent_events DROP COLUMN presentation_sha256;
