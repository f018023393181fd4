use crate::db::schema::consent_receipts;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A signed consent receipt as handed out (see `service::receipts`): the compact JWS and the
/// events it covers, under the pseudonymous subject id (kept by an erasure).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_receipts)]
pub struct ReceiptRow {
    /// The receipt's `jti`.
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    /// `<scope>:<key>` of the request's `Idempotency-Key`, if it had one.
    pub idempotency: Option<String>,
    /// JSON array of event ids.
    pub event_ids: String,
    pub jws: String,
    pub issued_at: NaiveDateTime,
}

impl ReceiptRow {
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(consent_receipts::table).values(self).execute(conn).map(drop)
    }

    /// The JWS of receipt `id`, if it is stored.
    pub fn jws_of(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<String>> {
        consent_receipts::table.find(id).select(consent_receipts::jws).first(conn).optional()
    }

    /// The receipts of subjects (a person and those merged into it), oldest first.
    pub fn list_for_subjects(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[String],
    ) -> QueryResult<Vec<Self>> {
        consent_receipts::table
            .filter(consent_receipts::tenant_id.eq(tenant_id))
            .filter(consent_receipts::subject_id.eq_any(subject_ids))
            .order((consent_receipts::issued_at.asc(), consent_receipts::id.asc()))
            .select(Self::as_select())
            .load(conn)
    }
}
