//! Which database serves a read (issue 10: read replicas; see [`crate::db::replica`]).
//!
//! The reads that may be served by the replica (checks, state reads, the change feed, exports)
//! go through [`AppState::read_db`] or [`AppState::read_states`]; everything else, and every
//! write, uses the primary. A request's routing context (the `Consentry-Read-After` position
//! it sent, and where its reads were served) lives for the request's task: the HTTP layer sets
//! it ([`scope`]) and renders `Consentry-Served-By` from it, so services need not carry it.

use crate::db::models::state::StateRow;
use crate::db::replica::{Lsn, Target};
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::ledger::LedgerError;
use crate::service::reader::Lookup;
use crate::state::AppState;
use actix_web::web;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A request's routing context.
#[derive(Debug, Default)]
pub struct ReadContext {
    /// The request's `Consentry-Read-After`: a write's position its reads must see.
    after: Option<Lsn>,
    /// Every read on the primary, unrouted ([`on_primary`]).
    pinned: bool,
    /// Where its reads were served: 0 none yet, 1 primary, 2 replica (the primary wins when
    /// both served some).
    served_by: AtomicU8,
}

impl ReadContext {
    pub fn new(after: Option<Lsn>) -> Arc<Self> {
        Arc::new(Self { after, pinned: false, served_by: AtomicU8::new(0) })
    }

    /// Where the request's reads were served, if it made any routed read.
    pub fn served_by(&self) -> Option<Target> {
        match self.served_by.load(Ordering::SeqCst) {
            1 => Some(Target::Primary),
            2 => Some(Target::Replica),
            _ => None,
        }
    }

    fn served(&self, target: Target) {
        let code = match target {
            Target::Primary => 1,
            Target::Replica => 2,
        };
        // A request read partly from the primary says `primary`.
        let _ = self.served_by.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
            (now == 0 || (now == 2 && code == 1)).then_some(code)
        });
    }
}

tokio::task_local! {
    static CONTEXT: Arc<ReadContext>;
}

/// Runs `request` (a request's handling) with `context` as its routing context.
pub async fn scope<F: Future>(context: Arc<ReadContext>, request: F) -> F::Output {
    CONTEXT.scope(context, request).await
}

/// The routing context of the request running (a fresh one outside any request), for work
/// that goes on after its handler returned (a streamed body's pages: see [`scope`]).
pub fn current() -> Arc<ReadContext> {
    CONTEXT.try_with(Arc::clone).unwrap_or_else(|_| ReadContext::new(None))
}

/// Runs `read` with its reads on the primary, unrouted (no `Consentry-Served-By`, not counted):
/// for a reader that cannot send `Consentry-Read-After` back yet must see its own writes. The
/// SDK's visitor read is one: it takes the server's answer as the record of the visitor's
/// choices, so a replica's answer from before the visitor's last choice (a page loaded right
/// after it) would undo it on the page.
pub async fn on_primary<F: Future>(read: F) -> F::Output {
    let context = Arc::new(ReadContext { after: None, pinned: true, served_by: AtomicU8::new(0) });
    CONTEXT.scope(context, read).await
}

fn pinned() -> bool {
    CONTEXT.try_with(|c| c.pinned).unwrap_or(false)
}

fn after() -> Option<Lsn> {
    CONTEXT.try_with(|c| c.after).ok().flatten()
}

fn served(target: Target) {
    crate::metrics::read_served(target.as_str());
    let _ = CONTEXT.try_with(|c| c.served(target));
}

impl AppState {
    /// Where a read is served now (the primary when no replica is configured). A read-your-
    /// writes read (`Consentry-Read-After`) that the latest probe would send to the primary
    /// asks the replica for its replay position first: streaming replication usually replays a
    /// commit within a millisecond, well before the next probe.
    pub async fn read_target(&self) -> Target {
        let Some(replica) = self.replica.as_ref().filter(|_| !pinned()) else { return Target::Primary };
        let after = after();
        match replica.route(after) {
            Target::Primary if replica.short_of(after) => {
                let r = replica.clone();
                let now = web::block(move || r.replayed_now()).await.ok().flatten();
                match (now, after) {
                    (Some(now), Some(after)) if now >= after => Target::Replica,
                    _ => Target::Primary,
                }
            }
            target => target,
        }
    }

    /// [`AppState::db`] for a read that the replica may serve: run there when
    /// [`AppState::read_target`] says so, and again on the primary when it fails there for a
    /// server-side reason (the replica went down, a query cancelled by recovery); a 4xx answer
    /// stands. On the primary, a read whose connection was lost runs once more on another. `f`
    /// must only read.
    pub async fn read_db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: Fn(&mut AnyConnection) -> Result<T, ApiError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        if let (Target::Replica, Some(replica)) = (self.read_target().await, &self.replica) {
            let (r, g) = (replica.clone(), f.clone());
            let result = web::block(move || r.run(|conn| g(conn))).await.map_err(ApiError::from).and_then(|r| r);
            match result {
                Err(ApiError::Unavailable(e)) | Err(ApiError::Internal(e)) => {
                    tracing::debug!(error = %e, "a read failed on the replica; reading from the primary");
                    replica.note_failed();
                }
                done => {
                    served(Target::Replica);
                    return done;
                }
            }
        }
        // A read whose connection died runs once more on another (`Pool::read`).
        let pool = self.pool.clone();
        let result = web::block(move || pool.read(None, |conn| f(conn))).await.map_err(ApiError::from).and_then(|r| r);
        if !pinned() {
            served(Target::Primary);
        }
        result
    }

    /// The states `lookup` asks for ([`crate::service::reader::Reader::states`]), from the
    /// replica's reader when [`AppState::read_target`] says so, else (or when it fails there
    /// for want of the replica) from the primary's.
    pub async fn read_states(&self, lookup: Lookup) -> Result<Vec<StateRow>, LedgerError> {
        if let (Target::Replica, Some(replica), Some(reader)) =
            (self.read_target().await, &self.replica, &self.replica_reader)
        {
            match reader.states(lookup.clone()).await {
                Err(LedgerError::Unavailable(e)) => {
                    tracing::debug!(error = %e, "a state read failed on the replica; reading from the primary");
                    replica.note_failed();
                }
                Err(LedgerError::Db(e)) => {
                    tracing::debug!(error = %e, "a state read failed on the replica; reading from the primary");
                    replica.note_failed();
                }
                done => {
                    served(Target::Replica);
                    return done;
                }
            }
        }
        let result = self.reader.states(lookup).await;
        if !pinned() {
            served(Target::Primary);
        }
        result
    }
}
