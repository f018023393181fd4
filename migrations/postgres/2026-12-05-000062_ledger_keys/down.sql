DROP TABLE ledger_keys;
