//! Grouped reads: the state lookups of concurrent single-subject checks and state reads (the
//! send-time check of a marketing system, the SDK's visitor read) are answered together, one
//! query per batch ([`backend::states_of_identifiers`]).
//!
//! A lone request is read at once; under load, the lookups that arrive while a reader thread
//! queries gather, and the next free reader takes them all (up to [`MAX_BATCH`]). How many
//! reader threads: `readers` (`startup::default_readers`). When a batch query fails, its
//! lookups are read again one by one, so each request gets its own answer or error.

use super::batch::{take_up_to, Batcher};
use crate::db::backend::{self, StateLookup};
use crate::db::models::state::StateRow;
use crate::db::{AnyConnection, DbError, Pool};
use crate::ledger::LedgerError;
use tokio::sync::oneshot;

/// The most lookups read in one query.
pub const MAX_BATCH: usize = 512;

/// The states of the subject behind `identifier` (a stored identifier) in `tenant_id`: of
/// `purpose`, or of every purpose when `None`.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub tenant_id: String,
    pub identifier: String,
    pub purpose: Option<String>,
}

impl Lookup {
    fn borrowed(&self) -> StateLookup<'_> {
        StateLookup { tenant_id: &self.tenant_id, identifier: &self.identifier, purpose: self.purpose.as_deref() }
    }
}

type Reply = oneshot::Sender<Result<Vec<StateRow>, LedgerError>>;

/// The handle requests read through.
pub struct Reader {
    batcher: Batcher<(Lookup, Reply)>,
}

impl Reader {
    /// Starts `threads` reader threads on `pool`.
    pub fn start(pool: Pool, threads: usize) -> Self {
        Self::start_waiting(pool, threads, None)
    }

    /// [`Reader::start`] whose batches wait at most `checkout` for a connection (the pool's
    /// own timeout otherwise): a replica's reader, which fails fast so its lookups are read
    /// from the primary.
    pub fn start_waiting(pool: Pool, threads: usize, checkout: Option<std::time::Duration>) -> Self {
        Self {
            batcher: Batcher::start("consentry-reader", threads, take_up_to::<_, MAX_BATCH>, move |batch| {
                read(&pool, checkout, batch)
            }),
        }
    }

    /// The states `lookup` asks for (empty for an unknown identifier). Errors: a database error,
    /// or [`LedgerError::Unavailable`] when no connection can be had or the server is stopping.
    pub async fn states(&self, lookup: Lookup) -> Result<Vec<StateRow>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        if self.batcher.push((lookup, reply)).is_err() {
            return Err(LedgerError::Unavailable("the server is stopping".into()));
        }
        answer.await.unwrap_or_else(|_| Err(LedgerError::Unavailable("the reader stopped".into())))
    }
}

fn read(pool: &Pool, checkout: Option<std::time::Duration>, batch: Vec<(Lookup, Reply)>) {
    let unavailable = |batch: Vec<(Lookup, Reply)>, e: &dyn std::fmt::Display| {
        for (_, reply) in batch {
            let _ = reply.send(Err(LedgerError::Unavailable(format!("no database connection: {e}"))));
        }
    };
    // A read whose connection died runs once more on another (`Pool::read`).
    let failed = match pool.read(checkout, |conn| read_all(conn, &batch).map_err(DbError::from)) {
        Ok(per_lookup) => {
            for ((_, reply), rows) in batch.into_iter().zip(per_lookup) {
                let _ = reply.send(Ok(rows));
            }
            return;
        }
        Err(DbError::Query(e)) => e,
        Err(e) => return unavailable(batch, &e),
    };
    if batch.len() == 1 {
        if let Some((_, reply)) = batch.into_iter().next() {
            let _ = reply.send(Err(LedgerError::Db(failed)));
        }
        return;
    }
    // One lookup may have failed the group: each on its own.
    tracing::debug!(error = %failed, size = batch.len(), "a read batch failed; reading its lookups one by one");
    match pool.get_waiting(checkout) {
        Ok(mut conn) => {
            for (lookup, reply) in batch {
                let _ = reply.send(read_one(&mut conn, &lookup));
            }
        }
        Err(e) => unavailable(batch, &e),
    }
}

/// The states of each lookup of `batch`, in order: one statement for them all (a lone lookup:
/// the single-identifier query).
fn read_all(conn: &mut AnyConnection, batch: &[(Lookup, Reply)]) -> diesel::QueryResult<Vec<Vec<StateRow>>> {
    if let [(lookup, _)] = batch {
        let l = lookup.borrowed();
        return Ok(vec![StateRow::for_identifier(conn, l.tenant_id, l.identifier, l.purpose)?]);
    }
    let lookups: Vec<StateLookup<'_>> = batch.iter().map(|(l, _)| l.borrowed()).collect();
    let mut per_lookup: Vec<Vec<StateRow>> = (0..batch.len()).map(|_| Vec::new()).collect();
    for (n, row) in backend::states_of_identifiers(conn, &lookups)? {
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| per_lookup.get_mut(i)) {
            slot.push(row);
        }
    }
    Ok(per_lookup)
}

fn read_one(conn: &mut AnyConnection, lookup: &Lookup) -> Result<Vec<StateRow>, LedgerError> {
    let l = lookup.borrowed();
    StateRow::for_identifier(conn, l.tenant_id, l.identifier, l.purpose).map_err(|e| {
        crate::db::note_lost_connection(&e);
        LedgerError::Db(e)
    })
}
