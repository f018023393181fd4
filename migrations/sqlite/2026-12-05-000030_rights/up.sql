-- Signed consent receipts (issue 11): one per accepted submission, as handed to the caller.
-- Kept with the pseudonymous subject id only, so an erasure leaves them verifiable.
CREATE TABLE consent_receipts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    -- `<scope>:<key>` of the request's Idempotency-Key (a replay returns the stored response,
    -- which carries the receipt).
    idempotency TEXT,
    -- JSON array of the event ids the receipt covers.
    event_ids TEXT NOT NULL,
    jws TEXT NOT NULL,
    issued_at TIMESTAMP NOT NULL
);
CREATE INDEX consent_receipts_subject ON consent_receipts (tenant_id, subject_id, issued_at);

-- Rows already imported by `consentry import` (issue 11): the SHA-256 of each row as normalised,
-- so importing a file twice adds nothing.
CREATE TABLE import_keys (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
