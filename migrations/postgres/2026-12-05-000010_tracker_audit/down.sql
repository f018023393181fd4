DROP TABLE tracker_observations;
ALTER TABLE sites DROP COLUMN audit_sample_rate;
ALTER TABLE purposes DROP COLUMN hosts;
ALTER TABLE purposes DROP COLUMN cookies;
