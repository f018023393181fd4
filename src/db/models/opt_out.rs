use crate::db::schema::opt_out_requests;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A CCPA request to opt out of sale/sharing, with its 15-business-day deadline.
/// `status` is derived: `completed` once `completed_at` is set, else `overdue` past `due_at`,
/// else `open`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = opt_out_requests)]
pub struct OptOutRequest {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    pub channel: String,
    pub scope: String,
    pub received_at: NaiveDateTime,
    pub due_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    /// What the privacy team wrote when it completed the request.
    pub completion_note: Option<String>,
}

/// Which requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutFilter {
    All,
    Open,
    Overdue,
    Completed,
}

impl OptOutRequest {
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(opt_out_requests::table).values(self).execute(conn).map(drop)
    }

    pub fn find(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> QueryResult<Option<Self>> {
        opt_out_requests::table
            .filter(opt_out_requests::tenant_id.eq(tenant_id))
            .filter(opt_out_requests::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// The requests of subjects (a person and those merged into it), oldest first.
    pub fn list_for_subjects(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[String],
    ) -> QueryResult<Vec<Self>> {
        opt_out_requests::table
            .filter(opt_out_requests::tenant_id.eq(tenant_id))
            .filter(opt_out_requests::subject_id.eq_any(subject_ids))
            .order(opt_out_requests::received_at.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// A tenant's requests, oldest first; `now` decides what is overdue.
    pub fn list(
        conn: &mut AnyConnection,
        tenant_id: &str,
        filter: OptOutFilter,
        now: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        let mut query = opt_out_requests::table.filter(opt_out_requests::tenant_id.eq(tenant_id)).into_boxed();
        query = match filter {
            OptOutFilter::All => query,
            OptOutFilter::Open => query.filter(opt_out_requests::completed_at.is_null()),
            OptOutFilter::Overdue => {
                query.filter(opt_out_requests::completed_at.is_null()).filter(opt_out_requests::due_at.lt(now))
            }
            OptOutFilter::Completed => query.filter(opt_out_requests::completed_at.is_not_null()),
        };
        query.order(opt_out_requests::received_at.asc()).limit(limit).select(Self::as_select()).load(conn)
    }

    /// A tenant's requests received in `start..end` (an index range on `(tenant_id, received_at)`).
    pub fn received_between(
        conn: &mut AnyConnection,
        tenant_id: &str,
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> QueryResult<Vec<Self>> {
        opt_out_requests::table
            .filter(opt_out_requests::tenant_id.eq(tenant_id))
            .filter(opt_out_requests::received_at.ge(start))
            .filter(opt_out_requests::received_at.lt(end))
            .select(Self::as_select())
            .load(conn)
    }

    /// Marks the request completed, with the team's note; returns whether it was open.
    pub fn complete(
        conn: &mut AnyConnection,
        tenant_id: &str,
        id: &str,
        now: NaiveDateTime,
        note: Option<&str>,
    ) -> QueryResult<bool> {
        diesel::update(
            opt_out_requests::table
                .filter(opt_out_requests::tenant_id.eq(tenant_id))
                .filter(opt_out_requests::id.eq(id))
                .filter(opt_out_requests::completed_at.is_null()),
        )
        .set((opt_out_requests::completed_at.eq(Some(now)), opt_out_requests::completion_note.eq(note)))
        .execute(conn)
        .map(|n| n == 1)
    }
}
