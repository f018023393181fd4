DROP TABLE import_keys;
DROP TABLE consent_receipts;
