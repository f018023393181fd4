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

/// The tenant's pruned feed places (`pruned_feed_positions`) before the feed position
/// `(tx, seq)`, in feed order `(tx_id, seq)`.
macro_rules! pruned_before {
    ($tenant_id:expr, $tx:expr, $seq:expr) => {{
        use crate::db::schema::pruned_feed_positions as pruned;
        pruned::tenant_id.eq($tenant_id).and(pruned::tx_id.lt($tx).or(pruned::tx_id.eq($tx).and(pruned::seq.lt($seq))))
    }};
}

/// The feed query on SQLite (see [`Event::feed`]); a macro, so the test of its plan reads the
/// very query the feed runs.
macro_rules! sqlite_feed {
    ($tenant_id:expr, $tx:expr, $seq:expr, $limit:expr) => {
        consent_events::table
            .filter(consent_events::tenant_id.eq($tenant_id))
            .filter(consent_events::tx_id.eq($tx))
            .filter(consent_events::seq.gt($seq))
            .order((consent_events::tx_id.asc(), consent_events::seq.asc()))
            .limit($limit)
    };
}

/// [`Event::feed`] read as `$row` (a `Selectable` of `consent_events`): one query text for the
/// whole event and for what analytics counts of it ([`FeedFact::feed`]).
macro_rules! feed {
    ($conn:expr, $tenant_id:expr, $after:expr, $horizon:expr, $limit:expr, $row:ty) => {{
        let (tx, seq): (i64, i64) = $after;
        if let AnyConnection::Sqlite(_) = $conn {
            // SQLite has one writer, so every `tx_id` is 0 and the feed is `seq` order. Its
            // planner seeks only on the first column of a row comparison: the form below read
            // the tenant's whole index on every page (24 ms a page at 92,000 events, growing with
            // the ledger; the analytics worker asks every 250 ms), where this seeks to `seq`.
            return sqlite_feed!($tenant_id, tx, seq, $limit).select(<$row>::as_select()).load($conn);
        }
        consent_events::table
            .filter(consent_events::tenant_id.eq($tenant_id))
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
            .filter(consent_events::tx_id.lt($horizon))
            .order((consent_events::tx_id.asc(), consent_events::seq.asc()))
            .limit($limit)
            .select(<$row>::as_select())
            .load($conn)
    }};
}

/// What the analytics rollups count of an event, with its feed position: the feed without
/// ids, hashes or revision. The analytics worker reads every event once (5,000 a page); read
/// whole, that was 8.5% of the server's CPU under a steady stream of public writes.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = consent_events)]
pub struct FeedFact {
    pub seq: i64,
    pub tx_id: i64,
    pub subject_id: String,
    pub purpose_key: String,
    pub decision: String,
    pub source: String,
    pub region: Option<String>,
    pub site_id: Option<String>,
    pub occurred_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
}

impl FeedFact {
    /// [`Event::feed`], only what analytics counts; its position is `(tx_id, seq)`.
    pub fn feed(
        conn: &mut AnyConnection,
        tenant_id: &str,
        after: (i64, i64),
        horizon: i64,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        feed!(conn, tenant_id, after, horizon, limit, Self)
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
        Self::list_for_subject_after(conn, tenant_id, subject_ids, 0, limit)
    }

    /// [`Event::list_for_subject`] from the event after `seq` `after` on (0: from the first).
    pub fn list_for_subject_after(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[String],
        after: i64,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .filter(consent_events::subject_id.eq_any(subject_ids))
            .filter(consent_events::seq.gt(after))
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
        feed!(conn, tenant_id, after, horizon, limit, Self)
    }

    /// The feed position `(tx_id, seq)` of the tenant's event `seq` (a cursor the feed handed
    /// out), also after a retention run deleted it (`pruned_feed_positions`); `None` when the
    /// tenant never had such an event.
    pub fn position(conn: &mut AnyConnection, tenant_id: &str, seq: i64) -> QueryResult<Option<(i64, i64)>> {
        use crate::db::schema::pruned_feed_positions as pruned;
        let found = consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .filter(consent_events::seq.eq(seq))
            .select((consent_events::tx_id, consent_events::seq))
            .first(conn)
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
        // An event retention deleted keeps its place in the feed.
        let kept = pruned::table
            .filter(pruned::tenant_id.eq(tenant_id))
            .filter(pruned::seq.eq(seq))
            .select((pruned::tx_id, pruned::seq))
            .first(conn)
            .optional()?;
        if kept.is_some() {
            return Ok(kept);
        }
        // Places below every remaining event are kept as one, the latest
        // (`compact_pruned_positions`): a cursor at any of them resumes at the start, which is
        // where it would resume.
        let (_, mark) = Self::pruned_before_start(conn, tenant_id)?;
        Ok(mark.filter(|mark| (1..=*mark).contains(&seq)).map(|_| (0, 0)))
    }

    /// The feed position `(tx_id, seq)` of the tenant's first remaining event (`(i64::MAX,
    /// i64::MAX)`, after every place, when it has none), and the latest `seq` among its pruned
    /// places before it, if any.
    fn pruned_before_start(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<((i64, i64), Option<i64>)> {
        use crate::db::schema::pruned_feed_positions as pruned;
        let (tx, first) = consent_events::table
            .filter(consent_events::tenant_id.eq(tenant_id))
            .order((consent_events::tx_id.asc(), consent_events::seq.asc()))
            .select((consent_events::tx_id, consent_events::seq))
            .first(conn)
            .optional()?
            .unwrap_or((i64::MAX, i64::MAX));
        let latest = pruned::table
            .filter(pruned_before!(tenant_id, tx, first))
            .select(diesel::dsl::max(pruned::seq))
            .first(conn)?;
        Ok(((tx, first), latest))
    }

    /// Deletes the tenant's pruned feed places that lie before every event it still has, but
    /// the latest of them: a cursor at any of those resumes at the start of the feed, so one
    /// place stands for them all ([`Event::position`]). The table then holds only the places
    /// that interleave with remaining events (events pruned before their neighbours: a purpose
    /// kept for less time, a decision imported with an old date), not a row for every event
    /// ever pruned. Returns the rows deleted.
    pub fn compact_pruned_positions(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<usize> {
        use crate::db::schema::pruned_feed_positions as pruned;
        let ((tx, first), Some(latest)) = Self::pruned_before_start(conn, tenant_id)? else {
            return Ok(0);
        };
        diesel::delete(pruned::table.filter(pruned_before!(tenant_id, tx, first)).filter(pruned::seq.ne(latest)))
            .execute(conn)
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

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// The feed is read every 250 ms by the analytics worker and page by page by integrators:
    /// each page must start at its cursor, not read the tenant's ledger from the start.
    #[test]
    fn the_sqlite_feed_seeks_to_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/feed.db", dir.path().display());
        let options = crate::db::Options { pool_size: 1, migrate: true, synchronous: Default::default() };
        let pool = crate::db::open(&url, &options).unwrap();
        let mut conn = pool.get().unwrap();
        let query = sqlite_feed!("t", 0_i64, 42_i64, 10_i64).select(Event::as_select());
        let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap();
        let plan: Vec<PlanStep> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .bind::<Text, _>("t")
            .bind::<BigInt, _>(0_i64)
            .bind::<BigInt, _>(42_i64)
            .bind::<BigInt, _>(10_i64)
            .load(&mut *conn)
            .unwrap();
        let plan: Vec<&str> = plan.iter().map(|s| s.detail.as_str()).collect();
        assert_eq!(
            plan,
            ["SEARCH consent_events USING INDEX consent_events_feed (tenant_id=? AND tx_id=? AND seq>?)"],
            "{sql}"
        );
    }
}
