-- The write path's tables no longer reference tenants directly. Each reference made every
-- inserted row lock its tenant's one row (FOR KEY SHARE), so all concurrent writers of a tenant
-- shared a lock on one row (a MultiXact per overlap). They still reference their data subject,
-- whose row references the tenant; rows are only written with their subject's tenant id.
ALTER TABLE consent_events DROP CONSTRAINT consent_events_tenant_id_fkey;
ALTER TABLE consent_states DROP CONSTRAINT consent_states_tenant_id_fkey;
ALTER TABLE subject_identifiers DROP CONSTRAINT subject_identifiers_tenant_id_fkey;

-- Almost no subject is merged: index only those that are, instead of a NULL per new subject.
DROP INDEX data_subjects_merged_into;
CREATE INDEX data_subjects_merged_into ON data_subjects (merged_into) WHERE merged_into IS NOT NULL;
