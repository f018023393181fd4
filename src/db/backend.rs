//! The few places where PostgreSQL and SQLite need different statements, each one `match`.

use super::models::idempotency::StoredResponse;
use super::models::receipt::ReceiptRow;
use super::models::state::{ChoiceRow, StateRow};
use super::schema::{consent_states, data_subjects, idempotency_keys};
use super::AnyConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::{Array, Nullable, Text, Timestamp};
use std::collections::HashMap;
use std::marker::PhantomData;

/// Whether the connection is inside a transaction (a pooled connection never should be).
pub fn in_transaction(conn: &mut AnyConnection) -> bool {
    let depth = match conn {
        AnyConnection::Postgresql(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        AnyConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
    };
    !matches!(depth, Ok(None))
}

/// Whether a write could commit now. PostgreSQL: not a standby (`pg_is_in_recovery()`) and
/// not read-only by default (`default_transaction_read_only`, e.g. during a failover).
/// SQLite: not `query_only`.
pub fn accepts_writes(conn: &mut AnyConnection) -> QueryResult<bool> {
    use diesel::sql_types::Bool;
    #[derive(QueryableByName)]
    struct Writable {
        #[diesel(sql_type = Bool)]
        writable: bool,
    }
    let pg = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable";
    let row: Writable = match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(pg).get_result(c)?,
        AnyConnection::Sqlite(c) => {
            diesel::sql_query("SELECT NOT query_only AS writable FROM pragma_query_only").get_result(c)?
        }
    };
    Ok(row.writable)
}

/// How PostgreSQL plans the prepared statements of a write transaction. SQLite: no difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// PostgreSQL's own choice (`plan_cache_mode = auto`): a statement is planned again for
    /// every execution's parameters for as long as that looks cheaper than its generic plan.
    Auto,
    /// Each prepared statement's generic plan, made once per connection and reused until a
    /// table's statistics change (`SET LOCAL plan_cache_mode = force_generic_plan`, sent with
    /// `BEGIN`: no round trip of its own, and the connection's next transaction plans as
    /// before). For transactions whose statements all probe or write by key, where a plan for
    /// the parameters can be no better: the ledger's batched writes. There, PostgreSQL kept
    /// planning the identifier lookup, and at times the batch's main statement, for every
    /// batch: a custom plan for an array of a few elements always looks cheaper than a generic
    /// one, which assumes ten (35–92 µs and about 90 µs of planning a batch;
    /// `pg_stat_statements`, bench/ `write` workload). A returning visitor's write planned its
    /// subject locks and state reads the same way: generic plans cut PostgreSQL's CPU a write
    /// by 12% there and raised such writes 10–21% (bench/ `update` workload, BENCHMARKS.md).
    ///
    /// Sequential scans are off in these transactions too (`SET LOCAL enable_seqscan = off`,
    /// sent with the same `BEGIN`): every statement has a key to probe by, and a plan must not
    /// depend on the statistics being fresh. A plan is made once per connection and kept until
    /// the table is analysed again: one made while a table was small (a new database, a tenant's
    /// first minutes, the last `ANALYZE` before an import) scanned the whole table for each
    /// key ever after, wherever autovacuum was off or had not come round yet. So it was here
    /// (bench/ `update` after the `write` workload: the subject locks read 202 million rows of
    /// `data_subjects` in 20 seconds; returning visitors' writes @8 at 350–1,400/s, 2,300/s
    /// without sequential scans).
    ///
    /// Neither setting replans a statement whose generic plan the connection already cached, so
    /// a statement these transactions run must not be planned outside them: PostgreSQL's own
    /// mode caches a generic plan from a statement's sixth execution, made with the statistics
    /// of that moment. The one the ledger's writes share, the subject lock ([`lock_subjects`]),
    /// is why retention's pruning runs with these plans too (`service::retention`).
    Generic,
}

/// Runs `f` in a write transaction and commits it; rolls back when `f` fails.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front:
/// a deferred transaction that reads and then writes fails with `SQLITE_BUSY` when another
/// writer committed in between, and waiting (busy_timeout) cannot help it.
pub fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<Error>,
{
    write_transaction_with(conn, Plans::Auto, f)
}

/// [`write_transaction`], with its statements planned as `plans` says on PostgreSQL.
pub fn write_transaction_with<T, E>(
    conn: &mut AnyConnection,
    plans: Plans,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<Error>,
{
    match (&mut *conn, plans) {
        (AnyConnection::Postgresql(c), Plans::Auto) => AnsiTransactionManager::begin_transaction(c)?,
        (AnyConnection::Postgresql(c), Plans::Generic) => AnsiTransactionManager::begin_transaction_sql(
            c,
            "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off",
        )?,
        (AnyConnection::Sqlite(c), _) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
    }
    let outcome = f(conn);
    let end = match (&outcome, &mut *conn) {
        (Ok(_), AnyConnection::Postgresql(c)) => AnsiTransactionManager::commit_transaction(c),
        (Ok(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::commit_transaction(c),
        (Err(_), AnyConnection::Postgresql(c)) => AnsiTransactionManager::rollback_transaction(c),
        (Err(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::rollback_transaction(c),
    };
    match (outcome, end) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

/// SQLite: whether commits on `conn` sync the write-ahead log before they return
/// (`PRAGMA synchronous`, <https://sqlite.org/pragma.html#pragma_synchronous>).
/// `Synchronous::Normal` while the writer commits its batches and syncs the log itself, once for
/// many commits, before it acknowledges any ([`super::WalLog::sync`]); `Synchronous::Full` again
/// before the connection goes back to the pool. PostgreSQL: nothing.
pub fn set_commit_sync(conn: &mut AnyConnection, sync: super::Synchronous) -> QueryResult<()> {
    match conn {
        AnyConnection::Sqlite(c) => {
            diesel::connection::SimpleConnection::batch_execute(c, &format!("PRAGMA synchronous = {}", sync.pragma()))
        }
        AnyConnection::Postgresql(_) => Ok(()),
    }
}

/// How many times in all [`write_transaction_retrying`] runs a transaction.
pub const WRITE_ATTEMPTS: u32 = 8;

/// An error that says whether running the transaction again may succeed ([`is_retryable`]).
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        is_retryable(self)
    }
}

/// [`write_transaction`], run again (at most [`WRITE_ATTEMPTS`] times in all) after an error
/// that [`is_retryable`]: two requests creating the same key or identifier at once, where the
/// loser's next run finds the winner's row; a serialization failure; a deadlock. The one retry
/// policy of the writes.
pub fn write_transaction_retrying<T, E: From<Error> + Retryable>(
    conn: &mut AnyConnection,
    f: impl FnMut(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    write_transaction_retrying_with(conn, Plans::Auto, f)
}

/// [`write_transaction_retrying`], with its statements planned as `plans` says on PostgreSQL.
pub fn write_transaction_retrying_with<T, E: From<Error> + Retryable>(
    conn: &mut AnyConnection,
    plans: Plans,
    mut f: impl FnMut(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match write_transaction_with(conn, plans, &mut f) {
            Err(e) if attempt < WRITE_ATTEMPTS && e.is_retryable() => continue,
            other => return other,
        }
    }
}

/// Serialises writers of one data subject's hash chain until the transaction ends.
///
/// PostgreSQL: `SELECT … FOR NO KEY UPDATE` on the subject row. SQLite: nothing to do, the
/// `BEGIN IMMEDIATE` of [`write_transaction`] already holds the database's one write lock.
/// Returns the subject's `last_event_hash`.
pub fn lock_subject(conn: &mut AnyConnection, subject_id: &str) -> QueryResult<String> {
    let query = data_subjects::table.find(subject_id).select(data_subjects::last_event_hash);
    match conn {
        AnyConnection::Postgresql(c) => query.for_no_key_update().first(c),
        AnyConnection::Sqlite(c) => query.first(c),
    }
}

/// A data subject as [`lock_subjects`] found it, locked.
pub struct LockedSubject {
    pub id: String,
    pub last_event_hash: String,
    /// The subject it was merged into (identity linking), if any: its identifiers name that
    /// subject now, so a writer that resolved one of them before the merge must resolve again.
    pub merged_into: Option<String>,
}

/// Locks data subjects until the transaction ends, in id order (so that two writers locking
/// overlapping sets never deadlock), and returns each as it is once locked (on PostgreSQL, the
/// newest version: a merge that committed while this waited shows in `merged_into`). Like
/// [`lock_subject`] for many.
///
/// PostgreSQL: one primary-key probe and lock per id, in id order (`unnest` of the sorted ids
/// joined `LATERAL`, as [`resolve_identifiers`]): `id = ANY($1)` was a bitmap scan of the
/// whole list and a sort.
pub fn lock_subjects(conn: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<LockedSubject>> {
    let rows: Vec<(String, String, Option<String>)> = match conn {
        AnyConnection::Postgresql(c) => {
            let mut sorted = ids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            PgStatement::<_, (Text, Text, Nullable<Text>)>::new(
                &[
                    "SELECT d.id, d.last_event_hash, d.merged_into FROM unnest(",
                    ") WITH ORDINALITY AS q(id, n) CROSS JOIN LATERAL (SELECT id, last_event_hash, merged_into \
                     FROM data_subjects WHERE id = q.id FOR NO KEY UPDATE) d ORDER BY q.n",
                ],
                vec![Box::new(sorted.into_sql::<Array<Text>>()) as PgBind<'_>],
            )
            .load(c)?
        }
        AnyConnection::Sqlite(c) => data_subjects::table
            .filter(data_subjects::id.eq_any(ids))
            .order(data_subjects::id.asc())
            .select((data_subjects::id, data_subjects::last_event_hash, data_subjects::merged_into))
            .load(c)?,
    };
    Ok(rows
        .into_iter()
        .map(|(id, last_event_hash, merged_into)| LockedSubject { id, last_event_hash, merged_into })
        .collect())
}

/// The subject id of each known identifier of a tenant, as (identifier, subject id): one query
/// for the whole list (callers chunk very long lists).
///
/// PostgreSQL: one primary-key probe per identifier (`unnest` joined `LATERAL`), a plan that
/// does not depend on statistics. `identifier = ANY($1)`, prepared once and planned
/// generically, filtered every identifier of the tenant instead while the table had no
/// statistics yet (a new database; 1,340 checks/s against 4,800 once analysed).
pub fn resolve_identifiers(
    conn: &mut AnyConnection,
    tenant_id: &str,
    identifiers: &[&str],
) -> QueryResult<Vec<(String, String)>> {
    match conn {
        AnyConnection::Postgresql(c) => PgStatement::<_, (Text, Text)>::new(
            &[
                "SELECT q.identifier, si.subject_id FROM unnest(",
                ") AS q(identifier) CROSS JOIN LATERAL (SELECT subject_id FROM subject_identifiers \
                 WHERE tenant_id = ",
                " AND identifier = q.identifier OFFSET 0) si",
            ],
            (identifiers.into_sql::<Array<Text>>(), tenant_id.into_sql::<Text>()),
        )
        .load(c),
        // One cached statement per identifier (in-process, no round trip): an `IN (…)` of a
        // varying length is a statement diesel does not cache, parsed again on every call.
        AnyConnection::Sqlite(_) => {
            let mut known = Vec::with_capacity(identifiers.len());
            for identifier in identifiers {
                let subject = super::models::subject::DataSubject::resolve(conn, tenant_id, identifier)?;
                known.extend(subject.map(|s| ((*identifier).to_owned(), s)));
            }
            Ok(known)
        }
    }
}

/// The consent states of many subjects of a tenant: every purpose's, or only `purpose`'s. One
/// query, one index probe per subject on PostgreSQL (see [`resolve_identifiers`]).
pub fn states_of(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purpose: Option<&str>,
    subject_ids: &[&str],
) -> QueryResult<Vec<StateRow>> {
    use consent_states as cs;
    const COLUMNS: &str = "SELECT s.* FROM unnest(";
    const FROM: &str = ") AS q(subject_id) CROSS JOIN LATERAL (SELECT tenant_id, purpose_key, subject_id, \
         decision, event_id, policy_revision, source, occurred_at, recorded_at FROM consent_states \
         WHERE tenant_id = ";
    match (conn, purpose) {
        (AnyConnection::Postgresql(c), Some(purpose)) => PgStatement::<_, StateColumns>::new(
            &[COLUMNS, FROM, " AND purpose_key = ", " AND subject_id = q.subject_id OFFSET 0) s"],
            (subject_ids.into_sql::<Array<Text>>(), tenant_id.into_sql::<Text>(), purpose.into_sql::<Text>()),
        )
        .load(c),
        (AnyConnection::Postgresql(c), None) => PgStatement::<_, StateColumns>::new(
            &[COLUMNS, FROM, " AND subject_id = q.subject_id OFFSET 0) s"],
            (subject_ids.into_sql::<Array<Text>>(), tenant_id.into_sql::<Text>()),
        )
        .load(c),
        (AnyConnection::Sqlite(c), purpose) => {
            let mut query = cs::table
                .filter(cs::tenant_id.eq(tenant_id))
                .filter(cs::subject_id.eq_any(subject_ids))
                .select(StateRow::as_select())
                .into_boxed();
            if let Some(purpose) = purpose {
                query = query.filter(cs::purpose_key.eq(purpose));
            }
            query.load(c)
        }
    }
}

/// What one lookup of [`states_of_identifiers`] asks for: the states of the subject behind a
/// stored identifier of a tenant, of one purpose or (`None`) all.
pub struct StateLookup<'a> {
    pub tenant_id: &'a str,
    pub identifier: &'a str,
    pub purpose: Option<&'a str>,
}

/// The states several lookups ask for, each row with the 1-based position of its lookup: one
/// query on PostgreSQL (an identifier probe and a state probe per lookup, whatever the
/// statistics), one cached statement per lookup on SQLite (in-process, no round trip).
pub fn states_of_identifiers(
    conn: &mut AnyConnection,
    lookups: &[StateLookup<'_>],
) -> QueryResult<Vec<(i64, StateRow)>> {
    match conn {
        AnyConnection::Postgresql(c) => {
            let tenants: Vec<&str> = lookups.iter().map(|l| l.tenant_id).collect();
            let identifiers: Vec<&str> = lookups.iter().map(|l| l.identifier).collect();
            let purposes: Vec<Option<&str>> = lookups.iter().map(|l| l.purpose).collect();
            PgStatement::<_, (diesel::sql_types::BigInt, StateColumns)>::new(
                &[
                    "SELECT q.n, s.* FROM unnest(",
                    ", ",
                    ", ",
                    ") WITH ORDINALITY AS q(tenant_id, identifier, purpose_key, n) CROSS JOIN LATERAL ( \
                     SELECT c.tenant_id, c.purpose_key, c.subject_id, c.decision, c.event_id, \
                     c.policy_revision, c.source, c.occurred_at, c.recorded_at FROM consent_states c \
                     WHERE c.tenant_id = q.tenant_id AND c.subject_id = (SELECT si.subject_id \
                     FROM subject_identifiers si WHERE si.tenant_id = q.tenant_id AND si.identifier = q.identifier) \
                     AND (q.purpose_key IS NULL OR c.purpose_key = q.purpose_key) OFFSET 0) s",
                ],
                (
                    tenants.into_sql::<Array<Text>>(),
                    identifiers.into_sql::<Array<Text>>(),
                    purposes.into_sql::<Array<Nullable<Text>>>(),
                ),
            )
            .load(c)
        }
        AnyConnection::Sqlite(_) => {
            let mut rows = Vec::new();
            for (n, l) in (1..).zip(lookups) {
                rows.extend(
                    StateRow::for_identifier(conn, l.tenant_id, l.identifier, l.purpose)?.into_iter().map(|r| (n, r)),
                );
            }
            Ok(rows)
        }
    }
}

/// The choice in force for `purpose` of the subject behind each stored identifier of a tenant,
/// with the 1-based position of its identifier in `identifiers` (a check's subjects). An
/// identifier without a subject, or whose subject has no state for `purpose`, has no row. One
/// query on PostgreSQL: an identifier probe and a state probe per identifier, read in one
/// snapshot, so a merge that moves an identifier between them cannot hide its state. On SQLite,
/// a cached lookup per identifier and one read of their subjects' states, in one transaction.
pub fn choices_of_identifiers(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purpose: &str,
    identifiers: &[&str],
) -> QueryResult<Vec<(i64, ChoiceRow)>> {
    match conn {
        AnyConnection::Postgresql(c) => PgStatement::<_, (diesel::sql_types::BigInt, ChoiceColumns)>::new(
            &[
                "SELECT q.n, s.* FROM unnest(",
                ") WITH ORDINALITY AS q(identifier, n) CROSS JOIN LATERAL ( \
                 SELECT c.decision, c.source, c.policy_revision, c.occurred_at FROM consent_states c \
                 WHERE c.tenant_id = ",
                " AND c.subject_id = (SELECT si.subject_id FROM subject_identifiers si \
                 WHERE si.tenant_id = ",
                " AND si.identifier = q.identifier) AND c.purpose_key = ",
                " OFFSET 0) s",
            ],
            (
                identifiers.into_sql::<Array<Text>>(),
                tenant_id.into_sql::<Text>(),
                tenant_id.into_sql::<Text>(),
                purpose.into_sql::<Text>(),
            ),
        )
        .load(c),
        // A cached lookup per identifier, then the states of their subjects in one statement:
        // a join per identifier (`StateRow::for_identifier`) made a check of 10,000 1.8 times as
        // slow (p50 68 against 38 ms). One read transaction: one snapshot for both.
        AnyConnection::Sqlite(_) => conn.transaction(|conn| {
            let mut subject_at: Vec<(i64, String)> = Vec::new();
            for (n, identifier) in (1..).zip(identifiers) {
                let subject = super::models::subject::DataSubject::resolve(conn, tenant_id, identifier)?;
                subject_at.extend(subject.map(|s| (n, s)));
            }
            let ids: Vec<&str> = subject_at.iter().map(|(_, s)| s.as_str()).collect();
            let choice_of: std::collections::HashMap<String, ChoiceRow> =
                states_of(conn, tenant_id, Some(purpose), &ids)?
                    .into_iter()
                    .map(|row| (row.subject_id.clone(), ChoiceRow::from(row)))
                    .collect();
            Ok(subject_at.into_iter().filter_map(|(n, s)| Some((n, choice_of.get(&s)?.clone()))).collect())
        }),
    }
}

/// The SQL types of a [`ChoiceRow`], in its field order.
type ChoiceColumns = (Text, Text, Nullable<Text>, Timestamp);

/// The SQL types of a [`StateRow`], in its field order.
type StateColumns = (Text, Text, Text, Text, Text, Nullable<Text>, Text, Timestamp, Timestamp);

/// A PostgreSQL statement written by hand: `parts` with the bind parameters between them, in
/// order. It calls nothing "unsafe to cache", so diesel prepares it once per connection and
/// reuses it (its statement cache is keyed by the SQL text), unlike `sql_query`.
struct PgStatement<B, Row> {
    parts: &'static [&'static str],
    binds: B,
    row: PhantomData<Row>,
}

impl<B: PgBinds, Row> PgStatement<B, Row> {
    fn new(parts: &'static [&'static str], binds: B) -> Self {
        debug_assert_eq!(parts.len(), binds.count() + 1, "one more SQL part than bind parameters");
        Self { parts, binds, row: PhantomData }
    }
}

impl<B, Row> QueryId for PgStatement<B, Row> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B: PgBinds, Row> QueryFragment<Pg> for PgStatement<B, Row> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.binds.walk(self.parts, out)
    }
}

impl<B, Row: diesel::sql_types::SqlType> Query for PgStatement<B, Row> {
    type SqlType = Row;
}

impl<B, Row> RunQueryDsl<diesel::PgConnection> for PgStatement<B, Row> {}

/// The bind parameters of a [`PgStatement`]: a tuple of bound values (`into_sql`).
trait PgBinds {
    fn count(&self) -> usize;
    fn walk<'b>(&'b self, parts: &'static [&'static str], out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

macro_rules! pg_binds {
    ($count:literal: $($t:ident $i:tt),+) => {
        impl<$($t: QueryFragment<Pg>),+> PgBinds for ($($t,)+) {
            fn count(&self) -> usize {
                $count
            }
            fn walk<'b>(&'b self, parts: &'static [&'static str], mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                let mut parts = parts.iter();
                $(
                    out.push_sql(parts.next().copied().unwrap_or_default());
                    self.$i.walk_ast(out.reborrow())?;
                )+
                parts.for_each(|rest| out.push_sql(rest));
                Ok(())
            }
        }
    };
}
pg_binds!(2: A 0, B 1);
pg_binds!(3: A 0, B 1, C 2);
pg_binds!(4: A 0, B 1, C 2, D 3);

/// One bind parameter of a [`PgStatement`] with many (`into_sql` values, boxed).
type PgBind<'a> = Box<dyn QueryFragment<Pg> + Send + 'a>;

impl PgBinds for Vec<PgBind<'_>> {
    fn count(&self) -> usize {
        self.len()
    }

    fn walk<'b>(&'b self, parts: &'static [&'static str], mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut parts = parts.iter();
        for bind in self {
            out.push_sql(parts.next().copied().unwrap_or_default());
            bind.walk_ast(out.reborrow())?;
        }
        parts.for_each(|rest| out.push_sql(rest));
        Ok(())
    }
}

/// Rows per multi-row `INSERT` on PostgreSQL (and of rare, large SQLite inserts): below
/// SQLite's 32,766 bound parameters at 14 columns.
const INSERT_CHUNK: usize = 1_000;

// SQLite's inserts on the write path run one cached prepared statement per row. In-process
// there is no round trip to save, and a multi-row `INSERT` of a varying length is a statement
// diesel does not cache: SQLite parsed and planned it again for every batch, 15% of the
// writer thread, which is SQLite's bottleneck (it has one). A one-row insert of a struct is
// cached by its SQL (one per set of its optional columns that are present).

/// Runs an insert statement on whichever backend the connection is (diesel's
/// `MultiConnection` has no multi-row insert of its own).
macro_rules! execute_on_either {
    ($conn:expr, $query:expr) => {
        match $conn {
            AnyConnection::Postgresql(c) => $query.execute(c),
            AnyConnection::Sqlite(c) => $query.execute(c),
        }
    };
}

/// Everything a write batch stores once its submissions are planned.
#[derive(Default)]
pub struct BatchRows<'a> {
    /// New data subjects: (id, tenant id, chain head).
    pub subjects: Vec<(&'a str, &'a str, &'a str)>,
    /// Their identifiers: (tenant id, identifier, subject id).
    pub identifiers: Vec<(&'a str, &'a str, &'a str)>,
    pub created_at: chrono::NaiveDateTime,
    /// New chain heads of known subjects: (id, head).
    pub heads: Vec<(&'a str, &'a str)>,
    /// Events, in the order they are written (`seq` follows it).
    pub events: &'a [super::models::event::NewEvent],
    /// States of known subjects, to insert or replace; each (tenant, subject, purpose) once.
    pub states: Vec<&'a StateRow>,
    /// States of the new subjects (`subjects`): nothing to replace, so PostgreSQL inserts them
    /// without `ON CONFLICT` (no speculative insertion: one index probe and one WAL record
    /// fewer a row).
    pub new_states: Vec<&'a StateRow>,
}

/// Writes a batch's rows, and the stored responses and signed receipts of its submissions, in
/// the caller's transaction (each part may be empty).
///
/// PostgreSQL: one statement, prepared once per connection (each column is an array bound as
/// one parameter and `unnest`ed), so a batch costs one round trip and no parse or plan,
/// whatever its size. A multi-row `INSERT … VALUES` has a different text for every batch size,
/// so it was parsed and planned for every batch, and took four round trips.
/// SQLite: in-process statements ([`insert_new_subjects`], [`insert_events`],
/// [`upsert_states`], then each head, then one cached statement per response and receipt).
///
/// A concurrent writer that created the same identifier, or stored a response for the same
/// idempotency key, makes this a unique violation (retryable).
pub fn write_batch_rows(
    conn: &mut AnyConnection,
    rows: &BatchRows<'_>,
    responses: &[StoredResponse],
    receipts: &[ReceiptRow],
) -> QueryResult<()> {
    use super::schema::consent_receipts;
    if rows.is_empty() && responses.is_empty() && receipts.is_empty() {
        return Ok(());
    }
    let AnyConnection::Postgresql(c) = conn else {
        if !rows.subjects.is_empty() {
            insert_new_subjects(conn, &rows.subjects, &rows.identifiers, rows.created_at)?;
        }
        insert_events(conn, rows.events)?;
        upsert_states(conn, &rows.new_states)?;
        upsert_states(conn, &rows.states)?;
        for (id, head) in &rows.heads {
            diesel::update(data_subjects::table.find(id)).set(data_subjects::last_event_hash.eq(head)).execute(conn)?;
        }
        if let AnyConnection::Sqlite(c) = conn {
            for r in responses {
                diesel::insert_into(idempotency_keys::table).values(r).execute(c)?;
            }
            for r in receipts {
                diesel::insert_into(consent_receipts::table).values(r).execute(c)?;
            }
        }
        return Ok(());
    };
    let events = rows.events;
    let mut binds: Vec<PgBind<'_>> = vec![
        texts(&rows.subjects, |s| s.0),
        texts(&rows.subjects, |s| s.1),
        texts(&rows.subjects, |s| s.2),
        Box::new(rows.created_at.into_sql::<Timestamp>()),
        texts(&rows.identifiers, |i| i.0),
        texts(&rows.identifiers, |i| i.1),
        texts(&rows.identifiers, |i| i.2),
        Box::new(rows.created_at.into_sql::<Timestamp>()),
        texts(&rows.heads, |h| h.0),
        texts(&rows.heads, |h| h.1),
        texts(events, |e| &e.id),
        texts(events, |e| &e.tenant_id),
        texts(events, |e| &e.subject_id),
        texts(events, |e| &e.purpose_key),
        texts(events, |e| &e.decision),
        optional(events, |e| e.policy_revision.as_deref()),
        texts(events, |e| &e.source),
        optional(events, |e| e.region.as_deref()),
        optional(events, |e| e.site_id.as_deref()),
        times(events, |e| e.occurred_at),
        times(events, |e| e.recorded_at),
        texts(events, |e| &e.prev_hash),
        texts(events, |e| &e.hash),
        optional(events, |e| e.presentation_sha256.as_deref()),
    ];
    binds.extend(state_columns(&rows.states));
    binds.extend(state_columns(&rows.new_states));
    binds.extend([
        texts(responses, |r| &r.tenant_id),
        texts(responses, |r| &r.scope),
        texts(responses, |r| &r.key),
        texts(responses, |r| &r.request_hash),
        Box::new(
            responses.iter().map(|r| r.status).collect::<Vec<i32>>().into_sql::<Array<diesel::sql_types::Integer>>(),
        ),
        texts(responses, |r| &r.response),
        times(responses, |r| r.created_at),
        optional(responses, |r| r.receipt_id.as_deref()),
        texts(receipts, |r| &r.id),
        texts(receipts, |r| &r.tenant_id),
        texts(receipts, |r| &r.subject_id),
        optional(receipts, |r| r.idempotency.as_deref()),
        texts(receipts, |r| &r.event_ids),
        texts(receipts, |r| &r.jws),
        times(receipts, |r| r.issued_at),
    ]);
    PgStatement::<_, ()>::new(BATCH_ROWS_SQL, binds).execute(c).map(drop)
}

impl BatchRows<'_> {
    /// Nothing to write (a batch of replays).
    fn is_empty(&self) -> bool {
        self.subjects.is_empty() && self.heads.is_empty() && self.events.is_empty()
    }
}

/// The nine columns of consent states, each a bound array, in `consent_states`' column order.
fn state_columns<'a>(states: &'a [&'a StateRow]) -> [PgBind<'a>; 9] {
    [
        texts(states, |s| &s.tenant_id),
        texts(states, |s| &s.subject_id),
        texts(states, |s| &s.purpose_key),
        texts(states, |s| &s.decision),
        texts(states, |s| &s.event_id),
        optional(states, |s| s.policy_revision.as_deref()),
        texts(states, |s| &s.source),
        times(states, |s| s.occurred_at),
        times(states, |s| s.recorded_at),
    ]
}

/// One column of `rows` as a bound text array (for `unnest`).
fn texts<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> &'a str) -> PgBind<'a> {
    Box::new(rows.iter().map(f).collect::<Vec<&str>>().into_sql::<Array<Text>>())
}

/// One nullable column of `rows` as a bound text array.
fn optional<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> Option<&'a str>) -> PgBind<'a> {
    Box::new(rows.iter().map(f).collect::<Vec<Option<&str>>>().into_sql::<Array<Nullable<Text>>>())
}

/// One timestamp column of `rows` as a bound array.
fn times<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> chrono::NaiveDateTime) -> PgBind<'a> {
    Box::new(rows.iter().map(f).collect::<Vec<_>>().into_sql::<Array<Timestamp>>())
}

/// [`write_batch_rows`] on PostgreSQL: the SQL between its 57 bind parameters.
const BATCH_ROWS_SQL: &[&str] = &[
    "WITH subjects AS (INSERT INTO data_subjects (id, tenant_id, last_event_hash, created_at) \
     SELECT r.id, r.tenant_id, r.head, c.at FROM unnest(",
    ", ",
    ", ",
    ") AS r(id, tenant_id, head) CROSS JOIN (SELECT ",
    "::timestamp AS at) c), \
     identifiers AS (INSERT INTO subject_identifiers (tenant_id, identifier, subject_id, created_at) \
     SELECT r.tenant_id, r.identifier, r.subject_id, c.at FROM unnest(",
    ", ",
    ", ",
    ") AS r(tenant_id, identifier, subject_id) CROSS JOIN (SELECT ",
    "::timestamp AS at) c), \
     heads AS (UPDATE data_subjects d SET last_event_hash = r.head FROM unnest(",
    ", ",
    ") AS r(id, head) WHERE d.id = r.id), \
     events AS (INSERT INTO consent_events (id, tenant_id, subject_id, purpose_key, decision, \
     policy_revision, source, region, site_id, occurred_at, recorded_at, prev_hash, hash, presentation_sha256) \
     SELECT r.id, r.tenant_id, r.subject_id, r.purpose_key, r.decision, r.policy_revision, r.source, \
     r.region, r.site_id, r.occurred_at, r.recorded_at, r.prev_hash, r.hash, r.presentation_sha256 FROM unnest(",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ") WITH ORDINALITY AS r(id, tenant_id, subject_id, purpose_key, decision, policy_revision, source, \
     region, site_id, occurred_at, recorded_at, prev_hash, hash, presentation_sha256, n) ORDER BY r.n), \
     states AS (INSERT INTO consent_states (tenant_id, subject_id, purpose_key, decision, event_id, \
     policy_revision, source, occurred_at, recorded_at) SELECT * FROM unnest(",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ") ON CONFLICT (tenant_id, subject_id, purpose_key) DO UPDATE SET decision = EXCLUDED.decision, \
     event_id = EXCLUDED.event_id, policy_revision = EXCLUDED.policy_revision, source = EXCLUDED.source, \
     occurred_at = EXCLUDED.occurred_at, recorded_at = EXCLUDED.recorded_at), \
     new_states AS (INSERT INTO consent_states (tenant_id, subject_id, purpose_key, decision, event_id, \
     policy_revision, source, occurred_at, recorded_at) SELECT * FROM unnest(",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ")), \
     responses AS (INSERT INTO idempotency_keys (tenant_id, scope, key, request_hash, status, response, \
     created_at, receipt_id) SELECT * FROM unnest(",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ")), receipts AS (INSERT INTO consent_receipts (id, tenant_id, subject_id, idempotency, event_ids, jws, \
     issued_at) SELECT * FROM unnest(",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ", ",
    ")) SELECT 1",
];

/// A stored first response and the JWS of the receipt it carried, if any (stored apart).
pub struct Stored {
    pub response: StoredResponse,
    pub receipt: Option<String>,
}

/// What a write batch reads before it plans, in the caller's transaction: see [`batch_reads`].
pub struct BatchReads {
    /// The stored response (with its receipt's JWS) of each idempotency key asked, in order.
    pub stored: Vec<Option<Stored>>,
    /// The subject of each identifier asked that is known: (tenant id, identifier) → subject id.
    pub known: HashMap<(String, String), String>,
    /// The webhooks of each tenant asked (none: absent), by id, held until the transaction
    /// ends (see [`webhooks_for_writing`]).
    pub hooks: HashMap<String, Vec<super::models::webhook::Webhook>>,
}

/// Reads what a write batch needs before it plans: the stored responses of its idempotency
/// keys, (tenant id, scope, key) each; the subjects of its identifiers, (tenant id, identifier)
/// each; and the webhooks of its tenants, locked as [`webhooks_for_writing`] locks them.
///
/// PostgreSQL: one statement, one round trip (a primary-key probe per key and identifier);
/// it was three. SQLite: cached statements per key and identifier, in process.
pub fn batch_reads(
    conn: &mut AnyConnection,
    keys: &[(&str, &str, &str)],
    identifiers: &[(&str, &str)],
    tenants: &[&str],
) -> QueryResult<BatchReads> {
    use super::models::webhook::Webhook;
    let mut reads = BatchReads {
        stored: keys.iter().map(|_| None).collect(),
        known: HashMap::with_capacity(identifiers.len()),
        hooks: HashMap::new(),
    };
    let AnyConnection::Postgresql(c) = conn else {
        for ((tenant, scope, key), slot) in keys.iter().zip(reads.stored.iter_mut()) {
            let Some(response) = StoredResponse::find(conn, tenant, scope, key)? else { continue };
            let receipt = match &response.receipt_id {
                Some(id) => ReceiptRow::jws_of(conn, id)?,
                None => None,
            };
            *slot = Some(Stored { response, receipt });
        }
        for (tenant, identifier) in identifiers {
            if let Some(subject) = super::models::subject::DataSubject::resolve(conn, tenant, identifier)? {
                reads.known.insert(((*tenant).to_owned(), (*identifier).to_owned()), subject);
            }
        }
        for tenant in tenants {
            reads.hooks.insert((*tenant).to_owned(), webhooks_for_writing(conn, tenant)?);
        }
        return Ok(reads);
    };
    let binds: Vec<PgBind<'_>> = vec![
        Box::new(tenants.into_sql::<Array<Text>>()),
        texts(keys, |k| k.0),
        texts(keys, |k| k.1),
        texts(keys, |k| k.2),
        texts(identifiers, |i| i.0),
        texts(identifiers, |i| i.1),
    ];
    let rows: Vec<BatchReadRow> = PgStatement::<_, BatchReadColumns>::new(BATCH_READS_SQL, binds).load(c)?;
    for (part, n, c1, c2, c3, c4, c5, c6, c7, c8, c9) in rows {
        match part {
            0 => {
                let (Some(request_hash), Some(status), Some(response), Some(created_at)) = (c4, c5, c6, c7) else {
                    return Err(Error::DeserializationError("a stored response without its columns".into()));
                };
                let response = StoredResponse {
                    tenant_id: c1,
                    scope: c2,
                    key: c3,
                    request_hash,
                    status,
                    response,
                    created_at,
                    receipt_id: c8,
                };
                if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| reads.stored.get_mut(i)) {
                    *slot = Some(Stored { response, receipt: c9 });
                }
            }
            1 => {
                reads.known.insert((c1, c2), c3);
            }
            _ => {
                let (Some(events), Some(secret), Some(created_at)) = (c4, c6, c7) else {
                    return Err(Error::DeserializationError("a webhook without its columns".into()));
                };
                let hook = Webhook { id: c1, tenant_id: c2, url: c3, events, secret, created_at };
                reads.hooks.entry(hook.tenant_id.clone()).or_default().push(hook);
            }
        }
    }
    for hooks in reads.hooks.values_mut() {
        hooks.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(reads)
}

/// A row of [`BATCH_READS_SQL`]: (part, n, then columns by part: 0 a stored response (tenant id,
/// scope, key, request hash, status, response, created at, receipt id, receipt JWS); 1 a known
/// identifier (tenant id, identifier, subject id); 2 a webhook (id, tenant id, url, events, -,
/// secret, created at)).
type BatchReadRow = (
    i32,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<chrono::NaiveDateTime>,
    Option<String>,
    Option<String>,
);

type BatchReadColumns = (
    diesel::sql_types::Integer,
    diesel::sql_types::BigInt,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<diesel::sql_types::Integer>,
    Nullable<Text>,
    Nullable<Timestamp>,
    Nullable<Text>,
    Nullable<Text>,
);

/// [`batch_reads`] on PostgreSQL: the SQL between its 6 bind parameters (tenants; keys'
/// tenant ids, scopes and keys; identifiers' tenant ids and identifiers). The webhooks are
/// locked in a CTE (a locking clause is not allowed beside `UNION`), in id order as
/// [`webhooks_for_writing`] locks them; the probes are `LATERAL` with `OFFSET 0`, as in
/// [`resolve_identifiers`].
const BATCH_READS_SQL: &[&str] = &[
    "WITH hooks AS (SELECT id, tenant_id, url, events, secret, created_at FROM webhooks \
     WHERE tenant_id = ANY(",
    ") ORDER BY id FOR KEY SHARE) \
     SELECT 0, q.n, k.tenant_id, k.scope, k.key, k.request_hash, k.status, k.response, k.created_at, \
     k.receipt_id, r.jws FROM unnest(",
    ", ",
    ", ",
    ") WITH ORDINALITY AS q(tenant_id, scope, key, n) CROSS JOIN LATERAL (SELECT tenant_id, scope, \
     key, request_hash, status, response, created_at, receipt_id FROM idempotency_keys \
     WHERE tenant_id = q.tenant_id AND scope = q.scope AND key = q.key OFFSET 0) k \
     LEFT JOIN consent_receipts r ON r.id = k.receipt_id \
     UNION ALL SELECT 1, 0, q.tenant_id, q.identifier, si.subject_id, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM unnest(",
    ", ",
    ") AS q(tenant_id, identifier) CROSS JOIN LATERAL (SELECT subject_id FROM subject_identifiers \
     WHERE tenant_id = q.tenant_id AND identifier = q.identifier OFFSET 0) si \
     UNION ALL SELECT 2, 0, id, tenant_id, url, events, NULL, secret, created_at, NULL, NULL FROM hooks",
];

/// Stores what a write batch answered, when it could not be stored with the batch's rows (a
/// batch whose finishes write after its events): the first responses of idempotency keys and the
/// signed receipts. [`write_batch_rows`] with no rows.
pub fn insert_responses(
    conn: &mut AnyConnection,
    responses: &[StoredResponse],
    receipts: &[ReceiptRow],
) -> QueryResult<()> {
    if responses.is_empty() && receipts.is_empty() {
        return Ok(());
    }
    write_batch_rows(conn, &BatchRows::default(), responses, receipts)
}

/// `f`, typed so that the values it makes borrow the row's strings, not the reference to the
/// row (a closure's own signature would tie them together).
fn row_values<'a, R>(f: impl Fn(&(&'a str, &'a str, &'a str)) -> R) -> impl Fn(&(&'a str, &'a str, &'a str)) -> R {
    f
}

/// Inserts new data subjects, (id, tenant id, chain head), and their identifiers, (tenant id,
/// identifier, subject id): one statement per 1,000 rows each on PostgreSQL, one cached
/// statement per row on SQLite. A concurrent writer that created the same identifier makes
/// this a unique violation (retryable).
pub fn insert_new_subjects(
    conn: &mut AnyConnection,
    subjects: &[(&str, &str, &str)],
    identifiers: &[(&str, &str, &str)],
    created_at: chrono::NaiveDateTime,
) -> QueryResult<()> {
    use super::schema::subject_identifiers as si;
    use data_subjects as ds;
    let subject = row_values(|(id, tenant, head)| {
        (ds::id.eq(*id), ds::tenant_id.eq(*tenant), ds::last_event_hash.eq(*head), ds::created_at.eq(created_at))
    });
    let identifier = row_values(|(tenant, identifier, subject)| {
        (
            si::tenant_id.eq(*tenant),
            si::identifier.eq(*identifier),
            si::subject_id.eq(*subject),
            si::created_at.eq(created_at),
        )
    });
    if let AnyConnection::Sqlite(c) = conn {
        for row in subjects {
            diesel::insert_into(ds::table).values(subject(row)).execute(c)?;
        }
        for row in identifiers {
            diesel::insert_into(si::table).values(identifier(row)).execute(c)?;
        }
        return Ok(());
    }
    for chunk in subjects.chunks(INSERT_CHUNK) {
        let values: Vec<_> = chunk.iter().map(&subject).collect();
        execute_on_either!(conn, diesel::insert_into(ds::table).values(&values))?;
    }
    for chunk in identifiers.chunks(INSERT_CHUNK) {
        let values: Vec<_> = chunk.iter().map(&identifier).collect();
        execute_on_either!(conn, diesel::insert_into(si::table).values(&values))?;
    }
    Ok(())
}

/// SQLite: copies the WAL into the database and truncates it to zero bytes
/// (`PRAGMA wal_checkpoint(TRUNCATE)`), so that pages written before a deletion (an erasure's
/// identifiers) no longer sit in the WAL; with `secure_delete` the database file holds none
/// either. Best effort: a reader still on an older snapshot for more than a second keeps the
/// checkpoint from finishing (the WAL is then overwritten by later transactions and truncated at
/// the next erasure), which is logged. PostgreSQL: nothing (its WAL and dead tuples are
/// vacuumed by the server).
pub fn truncate_wal(conn: &mut AnyConnection) {
    #[derive(diesel::QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        busy: i32,
    }
    if let AnyConnection::Sqlite(c) = conn {
        // A checkpoint under way (the pool's checkpointer, every 20 ms) makes this one answer
        // busy at once, without waiting: try again for up to a second.
        for attempt in 1..=50 {
            match diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result::<Checkpoint>(c) {
                Ok(r) if r.busy == 0 => return,
                Ok(_) if attempt < 50 => std::thread::sleep(std::time::Duration::from_millis(20)),
                Ok(_) => tracing::warn!("the WAL could not be truncated after an erasure: a reader is active"),
                Err(e) => return tracing::warn!(error = %e, "the WAL could not be truncated after an erasure"),
            }
        }
    }
}

/// SQLite: copies what the WAL holds into the database as far as no reader needs it
/// (`PRAGMA wal_checkpoint(PASSIVE)`: waits for no lock, blocks no one,
/// <https://sqlite.org/c3ref/wal_checkpoint_v2.html>). Run by the pool's checkpointer thread
/// (`db::spawn_checkpointer`). PostgreSQL: nothing.
pub fn checkpoint_wal(conn: &mut AnyConnection) -> QueryResult<()> {
    if let AnyConnection::Sqlite(c) = conn {
        diesel::connection::SimpleConnection::batch_execute(c, "PRAGMA wal_checkpoint(PASSIVE)")?;
    }
    Ok(())
}

/// Marks events as being pruned by the retention run (`ledger_pruning`, one statement per
/// 1,000): the database deletes no event without its mark. The run empties it again in the same
/// transaction ([`clear_pruning_marks`]).
pub fn insert_pruning_marks(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<()> {
    use super::schema::ledger_pruning;
    for chunk in ids.chunks(INSERT_CHUNK) {
        let values: Vec<_> = chunk.iter().map(|id| ledger_pruning::event_id.eq(id)).collect();
        execute_on_either!(conn, diesel::insert_into(ledger_pruning::table).values(&values))?;
    }
    Ok(())
}

/// Removes the marks [`insert_pruning_marks`] wrote, before the transaction commits.
pub fn clear_pruning_marks(conn: &mut AnyConnection) -> QueryResult<()> {
    diesel::delete(super::schema::ledger_pruning::table).execute(conn).map(|_| ())
}

/// Inserts events in order (so `seq` follows the order given): one statement per 1,000 on
/// PostgreSQL, one cached statement per row on SQLite.
pub fn insert_events(conn: &mut AnyConnection, rows: &[super::models::event::NewEvent]) -> QueryResult<()> {
    use super::schema::consent_events as ce;
    if let AnyConnection::Sqlite(c) = conn {
        for e in rows {
            diesel::insert_into(ce::table).values(e).execute(c)?;
        }
        return Ok(());
    }
    for chunk in rows.chunks(INSERT_CHUNK) {
        execute_on_either!(conn, diesel::insert_into(ce::table).values(chunk))?;
    }
    Ok(())
}

/// Compresses the full-page images that the caller's transaction writes to PostgreSQL's WAL
/// (`wal_compression`: lz4 where the server was built with it, else pglz), for bulk writes
/// (`consentry import`). Only when the server does not compress already and the role may set
/// it (a superuser); otherwise nothing changes (an operator can set it for the server).
///
/// After each checkpoint, the first change to a page writes the whole page to the WAL. A bulk
/// import touches random pages of the states, the subjects and the events-by-subject index, so
/// most of its WAL was page images: 35 GB for 3 M rows (12 kB a row). Compressed, with room
/// kept for in-place updates (migration `000065_bulk_writes`), 11 GB, and 42% more rows a
/// second. `set_config(…, true)` holds for this transaction only: pooled connections keep the
/// server's setting. SQLite: nothing to do.
pub fn compress_wal_in_transaction(conn: &mut AnyConnection) -> QueryResult<()> {
    if let AnyConnection::Postgresql(c) = conn {
        diesel::sql_query(
            "SELECT set_config('wal_compression', CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'lz4' ELSE 'pglz' END, true) \
             FROM pg_settings s WHERE s.name = 'wal_compression' AND s.setting = 'off' \
             AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)",
        )
        .execute(c)?;
    }
    Ok(())
}

/// Claims the keys of rows about to be imported (`consentry import`) in the caller's
/// transaction: inserts each key not yet in `import_keys` and returns those inserted. A key
/// left out was imported before (or is held by a concurrent import, which this then waits for).
///
/// PostgreSQL: one prepared statement (`INSERT … SELECT … FROM unnest(keys) ON CONFLICT DO
/// NOTHING RETURNING key`): the unique index checks each key once, where a lookup of the known
/// keys and then an insert probed it twice. SQLite: the same, 1,000 keys per statement.
pub fn claim_import_keys(
    conn: &mut AnyConnection,
    tenant_id: &str,
    keys: &[String],
    now: chrono::NaiveDateTime,
) -> QueryResult<Vec<String>> {
    use super::schema::import_keys as ik;
    match conn {
        AnyConnection::Postgresql(c) => PgStatement::<_, Text>::new(
            &[
                "INSERT INTO import_keys (tenant_id, key, created_at) SELECT ",
                ", k.key, ",
                "::timestamp FROM unnest(",
                ") AS k(key) ON CONFLICT DO NOTHING RETURNING key",
            ],
            (tenant_id.into_sql::<Text>(), now.into_sql::<Timestamp>(), keys.into_sql::<Array<Text>>()),
        )
        .load(c),
        AnyConnection::Sqlite(c) => {
            let mut claimed = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(INSERT_CHUNK) {
                let rows: Vec<_> = chunk
                    .iter()
                    .map(|k| (ik::tenant_id.eq(tenant_id), ik::key.eq(k), ik::created_at.eq(now)))
                    .collect();
                claimed.extend(
                    diesel::insert_into(ik::table)
                        .values(&rows)
                        .on_conflict_do_nothing()
                        .returning(ik::key)
                        .get_results::<String>(c)?,
                );
            }
            Ok(claimed)
        }
    }
}

/// Inserts or replaces consent states: `ON CONFLICT … DO UPDATE`, one statement per 1,000, on
/// PostgreSQL; `REPLACE`, one cached statement per row, on SQLite. Each (tenant, purpose,
/// subject) must appear once.
pub fn upsert_states(conn: &mut AnyConnection, rows: &[&super::models::state::StateRow]) -> QueryResult<()> {
    use super::schema::consent_states as cs;
    use diesel::upsert::excluded;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let chunk: Vec<&super::models::state::StateRow> = chunk.to_vec();
        let set = (
            cs::decision.eq(excluded(cs::decision)),
            cs::event_id.eq(excluded(cs::event_id)),
            cs::policy_revision.eq(excluded(cs::policy_revision)),
            cs::source.eq(excluded(cs::source)),
            cs::occurred_at.eq(excluded(cs::occurred_at)),
            cs::recorded_at.eq(excluded(cs::recorded_at)),
        );
        match conn {
            AnyConnection::Postgresql(c) => diesel::insert_into(cs::table)
                .values(chunk)
                .on_conflict((cs::tenant_id, cs::purpose_key, cs::subject_id))
                .do_update()
                .set(set)
                .execute(c),
            // SQLite: `REPLACE` (a state is the whole row; no trigger or foreign key refers to
            // it), one cached statement per row. Diesel never caches `ON CONFLICT … DO UPDATE`:
            // it was parsed again for every row.
            AnyConnection::Sqlite(c) => chunk
                .into_iter()
                .try_fold(0, |n, row| diesel::replace_into(cs::table).values(row).execute(c).map(|m| n + m)),
        }?;
    }
    Ok(())
}

/// The change feed's horizon: events of transactions with an id below it are all committed or
/// rolled back, so the feed may serve them without skipping one that commits later.
///
/// PostgreSQL: events carry `pg_current_xact_id()` as `tx_id`; the horizon is the id of the
/// oldest transaction still running in this database (`pg_stat_activity.backend_xid`, widened
/// to 64 bits against the snapshot's `xmax`), or the snapshot's `xmax` when none is. Only this
/// database's transactions count, so a long transaction elsewhere on the cluster does not hold
/// the feed back. A session's `backend_xid` is visible to its own role (and to
/// `pg_read_all_stats`): every instance must connect as the same role, as they do.
///
/// So that a reader sees every transaction committed before it asked (a client that got a 2xx
/// for a write, then reads the feed, finds the write), this waits, up to [`FEED_WAIT`], for the
/// transactions that were running when it was called to end; a transaction still running after
/// that holds the feed back (its later events are served once it ends, never skipped).
///
/// SQLite: one writer at a time commits in `seq` order and every `tx_id` is 0, so nothing is
/// held back.
pub fn feed_horizon(conn: &mut AnyConnection) -> QueryResult<i64> {
    horizon(conn, FEED_WAIT)
}

/// The feed's horizon as it is now, without waiting for the transactions running (see
/// [`feed_horizon`]): for a reader that comes back anyway (the analytics roll-up, every 250 ms),
/// which would otherwise ask `pg_stat_activity` every 5 ms while writes run.
pub fn feed_horizon_now(conn: &mut AnyConnection) -> QueryResult<i64> {
    horizon(conn, std::time::Duration::ZERO)
}

fn horizon(conn: &mut AnyConnection, wait: std::time::Duration) -> QueryResult<i64> {
    let AnyConnection::Postgresql(c) = conn else { return Ok(i64::MAX) };
    // On a streaming replica (a read served there, see `db::replica`) the primary's
    // transactions are not in pg_stat_activity; they are in the snapshot: its xmin is the
    // oldest still running there (in any database of the cluster, so it may hold back more).
    // age(x) counts from the next transaction id read after the snapshot was taken, so
    // xmax - age(x) is never above x's true 64-bit id: the horizon errs on the safe side.
    let mut read = || {
        diesel::select(diesel::dsl::sql::<(diesel::sql_types::BigInt, diesel::sql_types::BigInt)>(
            "s.xmax, CASE WHEN pg_is_in_recovery() THEN s.xmin ELSE \
             (SELECT COALESCE(min(s.xmax - age(a.backend_xid)), s.xmax) FROM pg_stat_activity a \
             WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL) END \
             FROM (SELECT pg_snapshot_xmax(snap)::text::bigint AS xmax, pg_snapshot_xmin(snap)::text::bigint AS xmin \
             FROM pg_current_snapshot() AS snap) s",
        ))
        .get_result::<(i64, i64)>(c)
    };
    let started = std::time::Instant::now();
    let (asked_at, mut horizon) = read()?;
    while horizon < asked_at && started.elapsed() < wait {
        std::thread::sleep(std::time::Duration::from_millis(5));
        horizon = read()?.1;
    }
    Ok(horizon)
}

/// How long a feed read waits for the transactions running when it was asked to end.
pub const FEED_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Serialises identity links of one tenant until the transaction ends, so that two merges
/// never work from stale views of who is linked to whom.
///
/// PostgreSQL: a transaction-scoped advisory lock keyed by the tenant (event writers do not take
/// it, so it adds no lock-order cycle with them). SQLite: the database's one write lock.
pub fn lock_tenant_links(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<()> {
    lock_tenant_for(conn, "links", tenant_id)
}

/// Serialises changes to one tenant's set of webhooks until the transaction ends (so that the
/// limit of webhooks per tenant holds under concurrent creates). Like [`lock_tenant_links`].
pub fn lock_tenant_webhooks(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<()> {
    lock_tenant_for(conn, "webhooks", tenant_id)
}

/// A transaction-scoped advisory lock on PostgreSQL keyed by `what` and the tenant; nothing on
/// SQLite, whose write transactions already exclude each other.
fn lock_tenant_for(conn: &mut AnyConnection, what: &str, tenant_id: &str) -> QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(c) => {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('consentry-' || $1 || ':' || $2))")
                .bind::<diesel::sql_types::Text, _>(what)
                .bind::<diesel::sql_types::Text, _>(tenant_id)
                .execute(c)
                .map(drop)
        }
        AnyConnection::Sqlite(_) => Ok(()),
    }
}

/// A tenant's webhooks, held until the transaction ends so none is deleted under a writer that
/// is adding deliveries for it (its deliveries would reference a deleted webhook).
///
/// PostgreSQL: `FOR KEY SHARE`, the lock the deliveries' foreign key takes anyway; a webhook
/// being deleted (see [`lock_webhook_for_delete`]) makes this wait, then is left out. SQLite:
/// the database's one write lock.
pub fn webhooks_for_writing(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> QueryResult<Vec<super::models::webhook::Webhook>> {
    use super::models::webhook::Webhook;
    use super::schema::webhooks as w;
    let query = w::table.filter(w::tenant_id.eq(tenant_id)).order(w::id.asc());
    match conn {
        AnyConnection::Postgresql(c) => query.select(Webhook::as_select()).for_key_share().load(c),
        AnyConnection::Sqlite(c) => query.select(Webhook::as_select()).load(c),
    }
}

/// Locks a webhook for deletion until the transaction ends: waits for writers adding its
/// deliveries to commit, and keeps new ones from starting (see [`webhooks_for_writing`]).
/// Returns whether it exists.
pub fn lock_webhook_for_delete(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> QueryResult<bool> {
    use super::schema::webhooks as w;
    let query = w::table.filter(w::tenant_id.eq(tenant_id)).filter(w::id.eq(id)).select(w::id);
    let found: Option<String> = match conn {
        AnyConnection::Postgresql(c) => query.for_update().first(c).optional()?,
        AnyConnection::Sqlite(c) => query.first(c).optional()?,
    };
    Ok(found.is_some())
}

/// (id, webhook id) of pending webhook deliveries due at `now`, oldest due first, except those
/// of `except_webhooks`, for one dispatcher to claim: at most one instance delivers a given
/// delivery at a time.
///
/// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so dispatchers of other instances claiming at the same
/// moment pass over these rows instead of waiting for them, and the claim (see
/// `Delivery::lease`) commits before any HTTP request is made. SQLite: the database's one
/// write lock.
pub fn lock_due_deliveries(
    conn: &mut AnyConnection,
    now: chrono::NaiveDateTime,
    limit: i64,
    except_webhooks: &[String],
) -> QueryResult<Vec<(String, String)>> {
    use super::schema::webhook_deliveries as d;
    let query = d::table
        .filter(d::status.eq("pending"))
        .filter(d::next_attempt_at.le(now))
        .filter(d::webhook_id.ne_all(except_webhooks))
        .order(d::next_attempt_at.asc())
        .limit(limit)
        .select((d::id, d::webhook_id));
    match conn {
        AnyConnection::Postgresql(c) => query.for_update().skip_locked().load(c),
        AnyConnection::Sqlite(c) => query.load(c),
    }
}

/// Inserts outbox rows in one statement. Diesel's `MultiConnection` has no multi-row insert
/// (its SQL dialect would need `DEFAULT` in SQLite), so each backend gets the rows itself; every
/// column has a value, which SQLite's multi-row `INSERT` needs.
pub fn insert_deliveries(conn: &mut AnyConnection, rows: &[super::models::webhook::Delivery]) -> QueryResult<()> {
    use super::schema::webhook_deliveries;
    execute_on_either!(conn, diesel::insert_into(webhook_deliveries::table).values(rows)).map(drop)
}

/// Errors after which the whole transaction may be run again: a concurrent insert of the
/// same key, or a PostgreSQL serialization failure.
pub fn is_retryable(err: &Error) -> bool {
    match err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure, _) => true,
        // Two batches that create the same identifiers in a different order (PostgreSQL 40P01).
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}
