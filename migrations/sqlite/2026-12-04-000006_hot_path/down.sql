DROP INDEX data_subjects_merged_into;
CREATE INDEX data_subjects_merged_into ON data_subjects (merged_into);
