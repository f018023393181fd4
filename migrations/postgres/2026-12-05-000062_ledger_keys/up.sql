-- The ledger's key history (issue 11 review): the public half of every key that signed a
-- checkpoint, written by the retention run with the checkpoints. A retired receipt key leaves
-- /.well-known/jwks.json after its `publish_until` date, but the checkpoints (and receipts) it
-- signed must still verify: `consentry ledger verify`, the retention run and proof bundles
-- check them with these keys as well as the key file's. `kid` is the RFC 7638 thumbprint of
-- `x`, and a row whose `kid` is not that thumbprint is not used: a key cannot be swapped in
-- under another's name.
CREATE TABLE ledger_keys (
    kid TEXT PRIMARY KEY,
    -- The Ed25519 public key (RFC 8037), base64url without padding.
    x TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
