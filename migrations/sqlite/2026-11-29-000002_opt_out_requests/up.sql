-- CCPA requests to opt out of sale/sharing (Cal. Civ. Code §1798.120, 11 CCR §7026).
-- Kept at least 24 months (11 CCR §7101(a)): nothing deletes them.
CREATE TABLE opt_out_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    subject_id TEXT NOT NULL REFERENCES data_subjects (id),
    channel TEXT NOT NULL,
    scope TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    due_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX opt_out_requests_tenant ON opt_out_requests (tenant_id, received_at);
