-- Tracker audit (issue 12): see the SQLite migration of the same name.
ALTER TABLE purposes ADD COLUMN cookies TEXT NOT NULL DEFAULT '[]';
ALTER TABLE purposes ADD COLUMN hosts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN audit_sample_rate DOUBLE PRECISION NOT NULL DEFAULT 0;

CREATE TABLE tracker_observations (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    site_id TEXT NOT NULL REFERENCES sites (id),
    day TEXT NOT NULL,
    item_kind TEXT NOT NULL,
    item TEXT NOT NULL,
    purpose_key TEXT NOT NULL,
    without_consent BOOLEAN NOT NULL,
    seen BIGINT NOT NULL,
    seen_with_gpc BIGINT NOT NULL,
    example_paths TEXT NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    PRIMARY KEY (site_id, day, item_kind, item, purpose_key, without_consent)
);
CREATE INDEX tracker_observations_violations ON tracker_observations (site_id, item_kind, item, purpose_key)
    WHERE without_consent;
