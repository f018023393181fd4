use super::utc;
use crate::db::schema::consent_events;
use crate::db::AnyConnection;
use crate::domain::ledger::EventContent;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A consent event as stored. Append-only: there is no update or delete here, and database
/// triggers refuse both.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_events)]
pub struct NewEvent {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    pub purpose_key: String,
    pub decision: String,
    pub policy_revision: Option<String>,
    pub source: String,
    pub region: Option<String>,
    pub site_id: Option<String>,
    pub occurred_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
    pub prev_hash: String,
    pub hash: String,
}

/// A stored event with its position in the tenant's log.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = consent_events)]
pub struct Event {
    pub seq: i64,
    #[diesel(embed)]
    pub row: NewEvent,
}

impl NewEvent {
    /// The canonical content whose SHA-256 is `hash`.
    pub fn content(&self) -> EventContent<'_> {
        EventContent {
            id: &self.id,
            tenant_id: &self.tenant_id,
            subject_id: &self.subject_id,
            purpose: &self.purpose_key,
            decision: &self.decision,
            policy_revision: self.policy_revision.as_deref(),
            source: &self.source,
            region: self.region.as_deref(),
            occurred_at: utc(self.occurred_at),
            recorded_at: utc(self.recorded_at),
            prev_hash: &self.prev_hash,
        }
    }

    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(consent_events::table).values(self).execute(conn).map(drop)
    }
}

impl Event {
    /// The events of subjects (a person and the subjects merged into it), in recorded order.
    pub fn list_for_subject(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[String],
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .filter(consent_events::subject_id.eq_any(subject_ids))
            .order(consent_events::seq.asc())
            .limit(limit)
            .select(Self::as_select())
            .load(conn)
    }

    /// A tenant's events after position `after_seq`, in commit order (see
    /// `backend::lock_tenant_feed`), with the stored identifiers of each event's subject.
    pub fn feed(conn: &mut AnyConnection, tenant_id: &str, after_seq: i64, limit: i64) -> QueryResult<Vec<Self>> {
        consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .filter(consent_events::seq.gt(after_seq))
            .order(consent_events::seq.asc())
            .limit(limit)
            .select(Self::as_select())
            .load(conn)
    }

    /// Whether the tenant has an event at position `seq` (a cursor the feed handed out).
    pub fn exists_at(conn: &mut AnyConnection, tenant_id: &str, seq: i64) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            consent_events::table.filter(consent_events::tenant_id.eq(tenant_id)).filter(consent_events::seq.eq(seq)),
        ))
        .get_result(conn)
    }

    /// Every event, by subject and then in recorded order (for `consentry ledger verify`).
    pub fn all_by_subject(conn: &mut AnyConnection, after_seq: i64, limit: i64) -> QueryResult<Vec<Self>> {
        consent_events::table
            .filter(consent_events::seq.gt(after_seq))
            .order(consent_events::seq.asc())
            .limit(limit)
            .select(Self::as_select())
            .load(conn)
    }
}
