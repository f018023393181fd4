-- Identity linking: a site's secret for identity tokens (HS256), and merged data subjects.
ALTER TABLE sites ADD COLUMN identity_secret TEXT;
ALTER TABLE data_subjects ADD COLUMN merged_into TEXT;
CREATE INDEX data_subjects_merged_into ON data_subjects (merged_into);
