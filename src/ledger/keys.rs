//! The ledger's key history (`ledger_keys`): the public half of every key that signed a
//! checkpoint, kept in the database with the checkpoints.
//!
//! A retired receipt key leaves `/.well-known/jwks.json` after its `publish_until` date (see
//! [`crate::receipts`]), but the checkpoints it signed stand in for pruned events for ever, and
//! the receipts it signed stay evidence. `consentry ledger verify`, the retention run and proof
//! bundles check them against [`history`]: the key file's keys, published or not, and this
//! table's. Each key is pinned by its `kid`, its RFC 7638 thumbprint: a row whose `kid` is not
//! the thumbprint of its `x` is left out, so no key can be swapped in under a known name.

use crate::db::schema::ledger_keys;
use crate::db::AnyConnection;
use crate::receipts::{thumbprint, Jwk, Jwks, ReceiptKeys};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Records the signing key of `keys` in the history, unless it is there: called in the
/// transaction that writes checkpoints signed with it.
pub fn record_signing_key(conn: &mut AnyConnection, keys: &ReceiptKeys, now: NaiveDateTime) -> QueryResult<()> {
    let jwk = keys.signing_jwk();
    let row = (ledger_keys::kid.eq(&jwk.kid), ledger_keys::x.eq(&jwk.x), ledger_keys::created_at.eq(now));
    let insert = diesel::insert_into(ledger_keys::table).values(row).on_conflict_do_nothing();
    match conn {
        AnyConnection::Postgresql(c) => insert.execute(c),
        AnyConnection::Sqlite(c) => insert.execute(c),
    }
    .map(|_| ())
}

/// Every key the ledger's signatures may have been made with: the keys of `keys` (published
/// or not, [`ReceiptKeys::history`]) and the recorded ones whose `kid` is their RFC 7638
/// thumbprint, each once, the key file's first.
pub fn history(conn: &mut AnyConnection, keys: &ReceiptKeys) -> QueryResult<Jwks> {
    let mut out = keys.history();
    let rows: Vec<(String, String)> = ledger_keys::table
        .order(ledger_keys::created_at.asc())
        .select((ledger_keys::kid, ledger_keys::x))
        .load(conn)?;
    for (kid, x) in rows {
        if thumbprint(&x) == kid && !out.keys.iter().any(|k| k.kid == kid) {
            out.keys.push(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x,
                kid,
                alg: "EdDSA".into(),
                use_: "sig".into(),
            });
        }
    }
    Ok(out)
}
