DROP TABLE consent_receipts;
