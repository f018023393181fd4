//! The few places where PostgreSQL and SQLite need different statements, each one `match`.

use super::schema::data_subjects;
use super::AnyConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};

/// Whether the connection is inside a transaction (a pooled connection never should be).
pub fn in_transaction(conn: &mut AnyConnection) -> bool {
    let depth = match conn {
        AnyConnection::Postgresql(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        AnyConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
    };
    !matches!(depth, Ok(None))
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
    match conn {
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
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

/// [`write_transaction`], run again (at most 4 times in all) after an error that
/// [`is_retryable`]: e.g. two requests creating the same key at once, where the loser's second
/// run finds the winner's row.
pub fn write_transaction_retrying<T>(
    conn: &mut AnyConnection,
    mut f: impl FnMut(&mut AnyConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match write_transaction(conn, &mut f) {
            Err(e) if attempt < 4 && is_retryable(&e) => continue,
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

/// Orders a tenant's event writers until the transaction ends, so that the events of one
/// tenant commit in `seq` order and the change feed (`GET /v1/events`) never skips an event
/// that commits late: a writer takes this lock before it inserts events, after its subject lock.
///
/// PostgreSQL: `SELECT … FOR NO KEY UPDATE` on the tenant row (not `FOR UPDATE`, which would
/// conflict with the `KEY SHARE` locks that inserts referencing the tenant take, and deadlock).
/// SQLite: the database's one write lock.
pub fn lock_tenant_feed(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<()> {
    use super::schema::tenants;
    let query = tenants::table.find(tenant_id).select(tenants::id);
    match conn {
        AnyConnection::Postgresql(c) => query.for_no_key_update().first::<String>(c).map(drop),
        AnyConnection::Sqlite(_) => Ok(()),
    }
}

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
    match conn {
        AnyConnection::Postgresql(c) => diesel::insert_into(webhook_deliveries::table).values(rows).execute(c),
        AnyConnection::Sqlite(c) => diesel::insert_into(webhook_deliveries::table).values(rows).execute(c),
    }
    .map(drop)
}

/// Errors after which the whole transaction may be run again: a concurrent insert of the
/// same key, or a PostgreSQL serialization failure.
pub fn is_retryable(err: &Error) -> bool {
    matches!(err, Error::DatabaseError(DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure, _))
}
