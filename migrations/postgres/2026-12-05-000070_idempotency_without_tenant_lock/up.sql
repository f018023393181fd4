-- Every stored idempotent response ran a foreign-key check on its tenant: a query per row (one
-- per public write) that took a FOR KEY SHARE lock on the tenant's one row, shared by all of
-- the tenant's concurrent writers (a MultiXact per overlap, each written to the WAL). The
-- write path's other tables dropped theirs for that reason (2026-12-04-000006_hot_path,
-- 2026-12-05-000007_write_path); this one was left. Responses are only stored by the ledger,
-- in the transaction of the write they answer, with that write's tenant id.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_tenant_id_fkey;
