-- The response stored for an Idempotency-Key no longer carries its receipt (stored once, in
-- consent_receipts): it names it, and a replay adds it back. With it, the body was over
-- PostgreSQL's 2 kB in-line limit and compressed on every write.
ALTER TABLE idempotency_keys ADD COLUMN receipt_id TEXT;
