CREATE INDEX consent_states_subject ON consent_states (tenant_id, subject_id);
ALTER TABLE consent_states DROP CONSTRAINT consent_states_pkey;
ALTER TABLE consent_states ADD PRIMARY KEY (tenant_id, purpose_key, subject_id);
ALTER TABLE data_subjects ADD CONSTRAINT data_subjects_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE subject_identifiers ADD CONSTRAINT subject_identifiers_subject_id_fkey FOREIGN KEY (subject_id) REFERENCES data_subjects (id);
ALTER TABLE consent_states ADD CONSTRAINT consent_states_subject_id_fkey FOREIGN KEY (subject_id) REFERENCES data_subjects (id);
ALTER TABLE consent_events ADD CONSTRAINT consent_events_subject_id_fkey FOREIGN KEY (subject_id) REFERENCES data_subjects (id);
