DROP INDEX data_subjects_merged_into;
CREATE INDEX data_subjects_merged_into ON data_subjects (merged_into);
ALTER TABLE subject_identifiers ADD CONSTRAINT subject_identifiers_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE consent_states ADD CONSTRAINT consent_states_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE consent_events ADD CONSTRAINT consent_events_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
