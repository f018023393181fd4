-- Consentry foundation schema (PostgreSQL). Keep in step with migrations/sqlite: same tables,
-- same columns, same names; a test compares them.
-- Portable types only: TEXT ids and JSON, TIMESTAMP holding UTC, BOOLEAN, INTEGER, BIGINT.

CREATE TABLE instance_keys (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    subject_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    scopes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    site_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    origins TEXT NOT NULL,
    purposes TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX sites_tenant ON sites (tenant_id);

CREATE TABLE purposes (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    key TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    kind TEXT NOT NULL,
    consent_model TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    gpc_applies BOOLEAN NOT NULL,
    max_age_days INTEGER,
    regions TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE policy_revisions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    policy_key TEXT NOT NULL,
    revision_date TEXT NOT NULL,
    effective_at TIMESTAMP NOT NULL,
    url TEXT NOT NULL,
    sha256 TEXT,
    requires_reconsent BOOLEAN NOT NULL,
    purposes TEXT,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (tenant_id, policy_key, revision_date)
);

CREATE TABLE data_subjects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    last_event_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE subject_identifiers (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    identifier TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES data_subjects (id),
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, identifier)
);
CREATE INDEX subject_identifiers_subject ON subject_identifiers (subject_id);

-- Append-only: the triggers below refuse UPDATE and DELETE.
CREATE TABLE consent_events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT NOT NULL REFERENCES data_subjects (id),
    purpose_key TEXT NOT NULL,
    decision TEXT NOT NULL,
    policy_revision TEXT,
    source TEXT NOT NULL,
    region TEXT,
    site_id TEXT,
    occurred_at TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX consent_events_subject ON consent_events (tenant_id, subject_id, seq);

CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent events are append-only';
END;
$$;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();

-- The decision in force per (subject, purpose), kept in step with consent_events in the same
-- transaction; derivable from the events at any time.
CREATE TABLE consent_states (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    purpose_key TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES data_subjects (id),
    decision TEXT NOT NULL,
    event_id TEXT NOT NULL,
    policy_revision TEXT,
    source TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, purpose_key, subject_id)
);
CREATE INDEX consent_states_subject ON consent_states (tenant_id, subject_id);

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
