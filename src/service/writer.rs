//! Group commit: concurrent submissions are written together, in one transaction per batch.
//!
//! Requests put validated [`Submission`]s on a queue and wait. Writer threads (two on
//! PostgreSQL, so one batch is gathered while another commits; one on SQLite, which has one
//! writer anyway) take everything queued, up to [`MAX_BATCH`], write it with
//! [`ledger::write_batch`] and answer each request only after the commit is durable: a 2xx
//! still means committed. When a batch fails, its submissions are written again one by one
//! ([`ledger::record_one`], with its retries), so one bad submission never fails another.
//! Submissions that share an idempotency key never share a batch (the second must see the
//! first's stored response).
//!
//! On SQLite set to sync every commit (the default), the writer thread commits its batches
//! without waiting for the disk (`synchronous = NORMAL` while it holds the connection) and
//! hands the replies to a sync thread, which syncs the write-ahead log once for every batch
//! committed meanwhile and only then answers them ([`crate::db::WalLog::sync`]): what
//! `synchronous = FULL` would make durable before the commit returned is durable before the
//! reply, and the writer thread, SQLite's one writer, goes on with the next batch while the
//! disk works (it waited on the sync of each commit a third of its time; bench/ write
//! workload). Readers may see a batch a moment before it is durable, as they may on PostgreSQL
//! with `synchronous_commit = off`; no request is told it was written before it is.

use super::batch::{take_up_to, Batcher};
use crate::db::backend::{set_commit_sync, write_transaction_with, Plans};
use crate::db::{Pool, Synchronous};
use crate::ledger::{self, outbox, LedgerError, Outcome, Submission};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The most submissions written in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Outcome, LedgerError>>;

/// Replies with their outcomes, ready to be sent.
type Answers = Vec<(Reply, Result<Outcome, LedgerError>)>;

struct Job {
    submission: Submission,
    reply: Reply,
}

/// The handle requests submit through. Dropping the last one lets the writer threads finish
/// what is queued and end.
pub struct Writer {
    batcher: Batcher<Job>,
}

impl Writer {
    /// Starts `threads` writer threads on `pool`; each batch that wrote webhook deliveries
    /// ([`outbox::enqueued`] moved) wakes `webhook_wake` (the webhook dispatcher sends them).
    /// On SQLite that syncs every commit, also the sync thread ([`crate::db::WalLog::sync`]).
    pub fn start(pool: Pool, threads: usize, webhook_wake: Arc<tokio::sync::Notify>) -> Self {
        let sync = pool.deferred_sync_log().map(|wal| -> SyncFn { Arc::new(move || wal.sync()) });
        Self::start_syncing_with(pool, threads, webhook_wake, sync)
    }

    /// [`Writer::start`], making deferred commits durable with `sync` (on SQLite, the commits
    /// of the writer's batches are deferred while `sync` is `Some`; on PostgreSQL nothing is
    /// deferred, and the replies still wait for `sync`). `None`: every commit syncs as the pool's
    /// connections are set to, and replies go out at once. For tests that hold a sync back.
    pub fn start_syncing_with(
        pool: Pool,
        threads: usize,
        webhook_wake: Arc<tokio::sync::Notify>,
        sync: Option<SyncFn>,
    ) -> Self {
        let syncer = sync.map(|sync| Syncer::start(sync, webhook_wake.clone()));
        let batcher = Batcher::start("consentry-writer", threads, take_batch, move |mut batch| {
            let enqueued = outbox::enqueued();
            let (answers, deferred) = write(&pool, &mut batch, syncer.is_some());
            let wake = outbox::enqueued() != enqueued;
            match syncer.as_ref().filter(|_| deferred) {
                Some(syncer) => syncer.answer_once_synced(answers, wake),
                None => {
                    send(answers);
                    if wake {
                        webhook_wake.notify_one();
                    }
                }
            }
        });
        Self { batcher }
    }

    /// Writes `submission` with whatever else is queued; resolves once its batch committed (or
    /// failed). Errors: the submission's own ([`LedgerError::IdempotencyKeyReused`], a database
    /// error after retries), or [`LedgerError::Unavailable`] when the writer is stopping.
    pub async fn submit(&self, submission: Submission) -> Result<Outcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        if self.batcher.push(Job { submission, reply }).is_err() {
            return Err(LedgerError::Unavailable("the server is stopping".into()));
        }
        answer.await.unwrap_or_else(|_| Err(LedgerError::Unavailable("the writer stopped".into())))
    }
}

/// Makes every commit made before the call durable.
pub type SyncFn = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// The thread that syncs deferred commits, then answers their requests and wakes the webhook
/// dispatcher for the deliveries they wrote: nothing leaves the server about a write before it
/// is durable.
struct Syncer {
    batcher: Batcher<(Answers, bool)>,
}

impl Syncer {
    fn start(sync: SyncFn, webhook_wake: Arc<tokio::sync::Notify>) -> Self {
        let batcher = Batcher::start(
            "consentry-wal-sync",
            1,
            take_up_to::<_, { usize::MAX }>,
            move |batches: Vec<(Answers, bool)>| {
                // One sync for every batch committed before it started.
                let synced = sync();
                if let Err(e) = &synced {
                    tracing::error!(error = %e, "the write-ahead log could not be synced: its writes are answered 500 not-durable");
                }
                let mut wake = false;
                for (answers, wrote_deliveries) in batches {
                    wake |= wrote_deliveries;
                    for (reply, outcome) in answers {
                        let outcome = match &synced {
                            Ok(()) => outcome,
                            // Committed and visible, but perhaps not on disk: said as such,
                            // not as "unavailable, retry", which would record it twice.
                            Err(e) if outcome.is_ok() => Err(LedgerError::NotDurable(e.to_string())),
                            Err(_) => outcome,
                        };
                        let _ = reply.send(outcome);
                    }
                }
                if wake {
                    webhook_wake.notify_one();
                }
            },
        );
        Self { batcher }
    }

    /// Sends `answers` once a sync that started after this call returned; `wake`: their batch
    /// wrote webhook deliveries.
    fn answer_once_synced(&self, answers: Answers, wake: bool) {
        if let Err((answers, _)) = self.batcher.push((answers, wake)) {
            for (reply, _) in answers {
                let _ = reply.send(Err(LedgerError::Unavailable("the server is stopping".into())));
            }
        }
    }
}

fn send(answers: Answers) {
    for (reply, outcome) in answers {
        let _ = reply.send(outcome);
    }
}

/// Takes up to [`MAX_BATCH`] jobs from the front, stopping before one whose idempotency key is
/// already in the batch.
fn take_batch(jobs: &mut VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::new();
    let mut keys: HashSet<(String, String, String)> = HashSet::new();
    while batch.len() < MAX_BATCH {
        let Some(next) = jobs.front() else { break };
        if let Some((t, s, k)) = next.submission.idempotency_slot() {
            if !keys.insert((t.to_owned(), s.to_owned(), k.to_owned())) {
                break;
            }
        }
        batch.extend(jobs.pop_front());
    }
    batch
}

/// Writes a batch on a pooled connection; returns each job's reply with its outcome, and
/// whether the commits were deferred. With `defer_sync`, the connection's commits do not wait
/// for the disk while it writes, and it is set back to syncing every commit before it returns to
/// the pool ([`SyncRestored`]); if that setting cannot be made, the commits sync as usual.
fn write(pool: &Pool, batch: &mut Vec<Job>, defer_sync: bool) -> (Answers, bool) {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => return (unavailable(batch, &e), false),
    };
    if !defer_sync || set_commit_sync(&mut conn, Synchronous::Normal).is_err() {
        return (write_on(&mut conn, batch), false);
    }
    let mut conn = SyncRestored(conn);
    (write_on(&mut conn.0, batch), true)
}

/// A pooled connection whose commits do not wait for the disk: set back to syncing every commit
/// when this is dropped, also when the batch panicked (a bug), before the connection goes back
/// to the pool; discarded instead when that fails.
struct SyncRestored(crate::db::PooledConnection);

impl Drop for SyncRestored {
    fn drop(&mut self) {
        if set_commit_sync(&mut self.0, Synchronous::Full).is_err() {
            crate::db::discard_connection();
        }
    }
}

fn unavailable(batch: &mut Vec<Job>, e: &r2d2::Error) -> Answers {
    batch
        .drain(..)
        .map(|job| (job.reply, Err(LedgerError::Unavailable(format!("no database connection: {e}")))))
        .collect()
}

/// Writes a batch in one transaction; when that fails, its jobs one by one.
fn write_on(conn: &mut crate::db::AnyConnection, batch: &mut Vec<Job>) -> Answers {
    crate::metrics::write_batch(batch.len());
    if batch.len() > 1 {
        let mut submissions: Vec<Submission> = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            submissions.push(job.submission);
            replies.push(job.reply);
        }
        match write_transaction_with(conn, Plans::Generic, |conn| ledger::write_batch(conn, &mut submissions)) {
            Ok(outcomes) => return replies.into_iter().zip(outcomes).collect(),
            Err(e) => {
                tracing::debug!(error = %e, size = submissions.len(), "a batch failed; writing its submissions one by one");
                if let LedgerError::Db(db) = &e {
                    crate::db::note_lost_connection(db);
                }
                if crate::db::backend::in_transaction(conn) {
                    return fail_all(replies, &e);
                }
                batch.extend(submissions.into_iter().zip(replies).map(|(submission, reply)| Job { submission, reply }));
            }
        }
    }
    batch
        .drain(..)
        .map(|mut job| {
            let outcome = ledger::record_one(conn, &mut job.submission);
            if let Err(LedgerError::Db(db)) = &outcome {
                crate::db::note_lost_connection(db);
            }
            (job.reply, outcome)
        })
        .collect()
}

fn fail_all(replies: Vec<Reply>, e: &LedgerError) -> Answers {
    replies
        .into_iter()
        .map(|reply| (reply, Err(LedgerError::Unavailable(format!("the database failed: {e}")))))
        .collect()
}
