-- Consent analytics (issue 13): per-day rollups of the consent events, kept by the worker in
-- src/workers/analytics.rs, which follows each tenant's change feed from a stored cursor and
-- adds each page of events to the rollups in the transaction that moves the cursor (exact,
-- restart-safe, idempotent). '' stands for "no site" / "no region" (part of the key).
CREATE TABLE analytics_cursors (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    tx_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE analytics_decisions (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    site_id TEXT NOT NULL,
    region TEXT NOT NULL,
    purpose_key TEXT NOT NULL,
    source TEXT NOT NULL,
    decision TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, site_id, region, purpose_key, source, decision)
);
CREATE TABLE analytics_submissions (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    site_id TEXT NOT NULL,
    region TEXT NOT NULL,
    source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    gpc BOOLEAN NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, site_id, region, source, outcome, gpc)
);
-- The note a privacy team writes when it completes an opt-out request.
ALTER TABLE opt_out_requests ADD COLUMN completion_note TEXT;
-- Tokens issued over the API carry a label saying what they are for ("mailer").
ALTER TABLE api_tokens ADD COLUMN label TEXT;
-- One-time sign-in codes of the console (`serve --demo` prints one): stored as a SHA-256, used once.
CREATE TABLE console_sign_in_codes (
    code_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
