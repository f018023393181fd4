-- The service core: a per-tenant version of the configuration that instances cache, and the
-- transaction id of each event for a change feed that needs no tenant-wide lock.

-- Bumped by the triggers below in the transaction of every change to a tenant's tenant row,
-- sites, purposes, policy revisions, tokens or webhooks. Each instance compares these versions
-- with the ones it cached (every 250 ms) and drops what changed; the instance that made the
-- change drops it at once.
CREATE TABLE config_versions (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    version BIGINT NOT NULL
);

CREATE FUNCTION consentry_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    -- TG_ARGV[0]: the column holding the tenant id (id in tenants, tenant_id elsewhere).
    IF TG_OP = 'DELETE' THEN
        t := to_jsonb(OLD) ->> TG_ARGV[0];
    ELSE
        t := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    INSERT INTO config_versions (tenant_id, version) VALUES (t, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = config_versions.version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_config_changed AFTER INSERT OR UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('id');
CREATE TRIGGER sites_config_changed AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('tenant_id');
CREATE TRIGGER purposes_config_changed AFTER INSERT OR UPDATE OR DELETE ON purposes
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('tenant_id');
CREATE TRIGGER policy_revisions_config_changed AFTER INSERT OR UPDATE OR DELETE ON policy_revisions
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('tenant_id');
CREATE TRIGGER api_tokens_config_changed AFTER INSERT OR UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('tenant_id');
CREATE TRIGGER webhooks_config_changed AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION consentry_config_changed('tenant_id');

INSERT INTO config_versions (tenant_id, version) SELECT id, 1 FROM tenants;

-- The writing transaction's id. The feed serves only events of transactions older than every
-- transaction still running (pg_snapshot_xmin), in (tx_id, seq) order: an event that commits
-- late can never be skipped, and writers of a tenant need no lock in common.
ALTER TABLE consent_events ADD COLUMN tx_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX consent_events_feed ON consent_events (tenant_id, tx_id, seq);
