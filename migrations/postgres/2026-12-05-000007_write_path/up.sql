-- The write path without per-row foreign-key checks, and consent states under one index.
--
-- Every inserted event, state and identifier ran a foreign-key check on its data subject (a
-- trigger that runs a query per row: 7 per public write of 3 purposes), and every new data
-- subject one on its tenant (a FOR KEY SHARE lock on the tenant's one row, shared by all of
-- the tenant's writers). Those rows are only ever written by the ledger, in the transaction
-- that creates or locks their subject, with their subject's tenant id; the hash chains
-- (`consentry verify`) prove the events of each subject whole.
ALTER TABLE consent_events DROP CONSTRAINT consent_events_subject_id_fkey;
ALTER TABLE consent_states DROP CONSTRAINT consent_states_subject_id_fkey;
ALTER TABLE subject_identifiers DROP CONSTRAINT subject_identifiers_subject_id_fkey;
ALTER TABLE data_subjects DROP CONSTRAINT data_subjects_tenant_id_fkey;

-- Every read of states names the subject (a check, a visitor read, a suppression page probes
-- (tenant, subject, purpose)); keyed by subject first, the primary key serves them all and the
-- second index (tenant, subject) goes: two index entries per state row instead of three.
ALTER TABLE consent_states DROP CONSTRAINT consent_states_pkey;
ALTER TABLE consent_states ADD PRIMARY KEY (tenant_id, subject_id, purpose_key);
DROP INDEX consent_states_subject;
