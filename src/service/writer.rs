//! Group commit: concurrent submissions are written together, in one transaction per batch.
//!
//! Requests put validated [`Submission`]s on a queue and wait. Writer threads (two on
//! PostgreSQL, so one batch is gathered while another commits; one on SQLite, which has one
//! writer anyway) take everything queued, up to [`MAX_BATCH`], write it with
//! [`ledger::write_batch`] and answer each request only after the commit: a 2xx still means
//! committed. When a batch fails, its submissions are written again one by one
//! ([`ledger::record_one`], with its retries), so one bad submission never fails another.
//! Submissions that share an idempotency key never share a batch (the second must see the
//! first's stored response).

use super::batch::Batcher;
use crate::db::backend::{write_transaction_with, Plans};
use crate::db::Pool;
use crate::ledger::{self, outbox, LedgerError, Outcome, Submission};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The most submissions written in one transaction.
pub const MAX_BATCH: usize = 256;

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Outcome, LedgerError>>,
}

/// The handle requests submit through. Dropping the last one lets the writer threads finish
/// what is queued and end.
pub struct Writer {
    batcher: Batcher<Job>,
}

impl Writer {
    /// Starts `threads` writer threads on `pool`; each batch that wrote webhook deliveries
    /// ([`outbox::enqueued`] moved) wakes `webhook_wake` (the webhook dispatcher sends them).
    pub fn start(pool: Pool, threads: usize, webhook_wake: Arc<tokio::sync::Notify>) -> Self {
        let batcher = Batcher::start("consentry-writer", threads, take_batch, move |mut batch| {
            let enqueued = outbox::enqueued();
            write(&pool, &mut batch);
            if outbox::enqueued() != enqueued {
                webhook_wake.notify_one();
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

/// Writes a batch and answers its jobs.
fn write(pool: &Pool, batch: &mut Vec<Job>) {
    crate::metrics::write_batch(batch.len());
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(LedgerError::Unavailable(format!("no database connection: {e}"))));
            }
            return;
        }
    };
    if batch.len() > 1 {
        let mut submissions: Vec<Submission> = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            submissions.push(job.submission);
            replies.push(job.reply);
        }
        match write_transaction_with(&mut conn, Plans::Generic, |conn| ledger::write_batch(conn, &mut submissions)) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, size = submissions.len(), "a batch failed; writing its submissions one by one");
                if let LedgerError::Db(db) = &e {
                    crate::db::note_lost_connection(db);
                }
                if crate::db::backend::in_transaction(&mut conn) {
                    return fail_all(replies, &e);
                }
                batch.extend(submissions.into_iter().zip(replies).map(|(submission, reply)| Job { submission, reply }));
            }
        }
    }
    for mut job in batch.drain(..) {
        let outcome = ledger::record_one(&mut conn, &mut job.submission);
        if let Err(LedgerError::Db(db)) = &outcome {
            crate::db::note_lost_connection(db);
        }
        let _ = job.reply.send(outcome);
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<Outcome, LedgerError>>>, e: &LedgerError) {
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Unavailable(format!("the database failed: {e}"))));
    }
}
