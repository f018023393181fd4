ALTER TABLE idempotency_keys DROP COLUMN receipt_id;
