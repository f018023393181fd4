//! The consent ledger: recording decisions and reading consent state, on top of the domain
//! rules and the database. No HTTP here: routes parse requests and render responses.

pub mod check;
mod events;
pub mod keys;
mod link;
pub mod outbox;
mod record;
pub mod verify;
mod view;

pub use check::{CheckResult, MAX_CHECK_SUBJECTS};
pub use events::{describe_events, EventResponse, FeedEvent};
pub use link::{link_identifiers, link_visitor_to_user, Linked};
pub use record::{
    record_choices, record_one, write_batch, Finish, IdempotencyClaim, Outcome, RecordRequest, Recorded, Seal,
    Submission,
};
pub use view::{index, PurposeState, SubjectView, TenantRules};

use crate::domain::FieldError;

/// What can go wrong in the ledger; routes map each to a problem body.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Input that is well-formed but not acceptable (400), naming the field.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// Several fields at fault (400), e.g. every malformed subject of a check.
    #[error("{} fields are invalid", .0.len())]
    Fields(Vec<FieldError>),
    /// An `Idempotency-Key` reused for a different request (422); the key as error messages
    /// quote a caller's value (`domain::shown`).
    #[error("the Idempotency-Key '{0}' was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    /// The database cannot be reached, or the server is stopping (503).
    #[error("{0}")]
    Unavailable(String),
    /// The write was committed, but syncing the database's log to disk failed, so it may not
    /// survive a power loss (500; see `service::writer`).
    #[error(
        "the write was recorded, but the database could not confirm it is on disk ({0}): send it again with \
         the same Idempotency-Key to get its answer; without one, read the subject's state before sending it again"
    )]
    NotDurable(String),
}

impl crate::db::backend::Retryable for LedgerError {
    fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Db(e) if crate::db::backend::is_retryable(e))
    }
}
