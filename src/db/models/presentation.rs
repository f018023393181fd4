use crate::db::schema::presentations;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// What a banner showed, stored once per tenant and content hash: the canonical JSON of the
/// content (`domain::presentation::PresentationContent`) and the first token issued for it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = presentations)]
pub struct PresentationRow {
    pub tenant_id: String,
    pub sha256: String,
    pub content: String,
    pub token: String,
    pub created_at: NaiveDateTime,
}

impl PresentationRow {
    /// Stores the row unless one of the same tenant and hash exists (the content is the same).
    pub fn insert_if_absent(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        let insert = diesel::insert_into(presentations::table).values(self).on_conflict_do_nothing();
        match conn {
            AnyConnection::Postgresql(c) => insert.execute(c),
            AnyConnection::Sqlite(c) => insert.execute(c),
        }
        .map(drop)
    }

    /// The tenant's presentations with these hashes (those stored), by hash.
    pub fn find_many(conn: &mut AnyConnection, tenant_id: &str, hashes: &[String]) -> QueryResult<Vec<Self>> {
        presentations::table
            .filter(presentations::tenant_id.eq(tenant_id))
            .filter(presentations::sha256.eq_any(hashes))
            .order(presentations::sha256.asc())
            .select(Self::as_select())
            .load(conn)
    }
}
