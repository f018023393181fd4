ALTER TABLE idempotency_keys RESET (toast_tuple_target);
ALTER TABLE consent_receipts RESET (toast_tuple_target);
ALTER TABLE idempotency_keys DROP COLUMN receipt_id;
