use crate::db::schema::idempotency_keys;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// The first response to a request carrying an `Idempotency-Key`, replayed for retries.
/// `scope` separates callers (`site:<id>` for the public endpoint, `api` for tokens);
/// `request_hash` is the SHA-256 of the request, so a key reused for another request is refused.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct StoredResponse {
    pub tenant_id: String,
    pub scope: String,
    pub key: String,
    pub request_hash: String,
    pub status: i32,
    pub response: String,
    pub created_at: NaiveDateTime,
    /// The receipt the response carried (`consent_receipts.id`), stored apart and added back
    /// when the response is replayed.
    pub receipt_id: Option<String>,
}

impl StoredResponse {
    pub fn find(conn: &mut AnyConnection, tenant_id: &str, scope: &str, key: &str) -> QueryResult<Option<Self>> {
        idempotency_keys::table.find((tenant_id, scope, key)).select(Self::as_select()).first(conn).optional()
    }

    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(idempotency_keys::table).values(self).execute(conn).map(drop)
    }
}
