-- The service core: see the PostgreSQL migration. SQLite has one writer, so events commit in
-- seq order and tx_id stays 0.
CREATE TABLE config_versions (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    version BIGINT NOT NULL
);

CREATE TRIGGER tenants_config_changed_insert AFTER INSERT ON tenants BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER tenants_config_changed_update AFTER UPDATE ON tenants BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER sites_config_changed_insert AFTER INSERT ON sites BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER sites_config_changed_update AFTER UPDATE ON sites BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER sites_config_changed_delete AFTER DELETE ON sites BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER purposes_config_changed_insert AFTER INSERT ON purposes BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER purposes_config_changed_update AFTER UPDATE ON purposes BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER purposes_config_changed_delete AFTER DELETE ON purposes BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER policy_revisions_config_changed_insert AFTER INSERT ON policy_revisions BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER policy_revisions_config_changed_update AFTER UPDATE ON policy_revisions BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER policy_revisions_config_changed_delete AFTER DELETE ON policy_revisions BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER api_tokens_config_changed_insert AFTER INSERT ON api_tokens BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER api_tokens_config_changed_update AFTER UPDATE ON api_tokens BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER api_tokens_config_changed_delete AFTER DELETE ON api_tokens BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER webhooks_config_changed_insert AFTER INSERT ON webhooks BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER webhooks_config_changed_update AFTER UPDATE ON webhooks BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER webhooks_config_changed_delete AFTER DELETE ON webhooks BEGIN
    INSERT INTO config_versions (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1;
END;

INSERT INTO config_versions (tenant_id, version) SELECT id, 1 FROM tenants;

ALTER TABLE consent_events ADD COLUMN tx_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX consent_events_feed ON consent_events (tenant_id, tx_id, seq);
