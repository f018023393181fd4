-- The response stored for an Idempotency-Key no longer carries its receipt (stored once, in
-- consent_receipts): it names it, and a replay adds it back. With it, the body was over
-- PostgreSQL's 2 kB in-line limit and compressed on every write.
ALTER TABLE idempotency_keys ADD COLUMN receipt_id TEXT;

-- A receipt row is about 2 kB, mostly a base64 JWS that does not compress: PostgreSQL tried
-- (pglz) on every insert once a row passed its 2 kB default target. Rows up to a page are kept
-- whole and uncompressed.
ALTER TABLE consent_receipts SET (toast_tuple_target = 8160);
ALTER TABLE idempotency_keys SET (toast_tuple_target = 8160);
