DROP INDEX data_subjects_merged_into;
ALTER TABLE data_subjects DROP COLUMN merged_into;
ALTER TABLE sites DROP COLUMN identity_secret;
