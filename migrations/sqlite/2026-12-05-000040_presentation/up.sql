-- What the person was shown (issue 11, item 2): the SHA-256 of the presentation (purposes with
-- titles, descriptions and consent models; policy revisions with their sha256) a submission was
-- made under. Covered by the event's chain hash only when present, so older chains still verify.
ALTER TABLE consent_events ADD COLUMN presentation_sha256 TEXT;

-- The presentations themselves, content-addressed per tenant: the canonical JSON and the first
-- token issued for it (signed by the receipt key), for proof bundles.
CREATE TABLE presentations (
    tenant_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
