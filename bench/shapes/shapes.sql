-- Shapes B and C, beside the real schema (shape A, made by `consentry migrate`). B: 16-byte ids
-- (uuid) and 32-byte hashes (bytea), one state row a subject (its purposes in jsonb), the receipt
-- and the stored response in one row. C: B with one event row a submission (its decisions in jsonb)
-- instead of one a purpose.
CREATE TABLE b_subjects (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, last_event_hash bytea NOT NULL, created_at timestamp NOT NULL);
CREATE TABLE b_identifiers (tenant_id uuid NOT NULL, identifier text COLLATE "C" NOT NULL, subject_id uuid NOT NULL, created_at timestamp NOT NULL, PRIMARY KEY (tenant_id, identifier));
CREATE INDEX ON b_identifiers (subject_id);
CREATE TABLE b_events (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, tenant_id uuid NOT NULL, subject_id uuid NOT NULL,
  purpose_key text COLLATE "C" NOT NULL, decision text NOT NULL, policy_revision text, source text NOT NULL, region text, site_id uuid,
  occurred_at timestamp NOT NULL, recorded_at timestamp NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL, presentation_sha256 bytea,
  tx_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint));
CREATE INDEX ON b_events (tenant_id, tx_id, seq);
CREATE INDEX ON b_events (tenant_id, purpose_key, occurred_at, seq);
CREATE INDEX ON b_events (subject_id, seq);
CREATE TABLE b_states (tenant_id uuid NOT NULL, subject_id uuid NOT NULL, states jsonb NOT NULL, PRIMARY KEY (tenant_id, subject_id));
CREATE TABLE b_receipts (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, subject_id uuid NOT NULL, scope text COLLATE "C", key text COLLATE "C",
  request_hash bytea, status int, response text, event_ids uuid[] NOT NULL, jws text NOT NULL, issued_at timestamp NOT NULL);
CREATE UNIQUE INDEX ON b_receipts (tenant_id, scope, key);
CREATE INDEX ON b_receipts (tenant_id, subject_id, issued_at);
ALTER TABLE b_receipts SET (toast_tuple_target = 8160);
-- shape C: B with one event row per submission (its decisions in one column)
CREATE TABLE c_events (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, tenant_id uuid NOT NULL, subject_id uuid NOT NULL,
  decisions jsonb NOT NULL, policy_revision text, source text NOT NULL, region text, site_id uuid,
  occurred_at timestamp NOT NULL, recorded_at timestamp NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL, presentation_sha256 bytea,
  tx_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint));
CREATE INDEX ON c_events (tenant_id, tx_id, seq);
CREATE INDEX ON c_events (tenant_id, occurred_at, seq);
CREATE INDEX ON c_events (subject_id, seq);
