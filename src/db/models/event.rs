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
    /// SHA-256 of what the person was shown (`domain::presentation`), when the write carried it.
    pub presentation_sha256: Option<String>,
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
            presentation: self.presentation_sha256.as_deref(),
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

    /// A tenant's events after the position `after` (a `(tx_id, seq)` from [`Event::position`];
    /// `(0, 0)`: the start), in `(tx_id, seq)` order, only of transactions older than
    /// `horizon` (see `backend::feed_horizon`): every event that may still appear before the
    /// horizon has committed, so a reader never skips one.
    pub fn feed(
        conn: &mut AnyConnection,
        tenant_id: &str,
        after: (i64, i64),
        horizon: i64,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        let (tx, seq) = after;
        consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            // A row comparison, not `tx_id > tx OR (tx_id = tx AND seq > seq)`: both databases
            // start the index range `(tenant_id, tx_id, seq)` at the cursor with it, where the
            // OR form made PostgreSQL read the tenant's index from its start on every page
            // (263 ms a page a million events in, growing with the feed).
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("(consent_events.tx_id, consent_events.seq) > (")
                    .bind::<diesel::sql_types::BigInt, _>(tx)
                    .sql(", ")
                    .bind::<diesel::sql_types::BigInt, _>(seq)
                    .sql(")"),
            )
            .filter(consent_events::tx_id.lt(horizon))
            .order((consent_events::tx_id.asc(), consent_events::seq.asc()))
            .limit(limit)
            .select(Self::as_select())
            .load(conn)
    }

    /// The feed position `(tx_id, seq)` of the tenant's event `seq` (a cursor the feed handed
    /// out); `None` when the tenant has no such event.
    pub fn position(conn: &mut AnyConnection, tenant_id: &str, seq: i64) -> QueryResult<Option<(i64, i64)>> {
        consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .filter(consent_events::seq.eq(seq))
            .select((consent_events::tx_id, consent_events::seq))
            .first(conn)
            .optional()
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
