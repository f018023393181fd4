-- Almost no subject is merged: index only those that are, instead of a NULL per new subject.
-- (PostgreSQL's migration also drops the write path's references to tenants; SQLite keeps
-- them: its foreign-key checks are in-process reads and take no row locks.)
DROP INDEX data_subjects_merged_into;
CREATE INDEX data_subjects_merged_into ON data_subjects (merged_into) WHERE merged_into IS NOT NULL;
