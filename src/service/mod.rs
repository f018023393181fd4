//! The service layer: one function per use case, taking typed input and returning typed
//! output. Routes parse requests and render responses; services hold the rules, the
//! transactions and the caches; the domain holds pure rules; `db` holds the queries.

pub mod analytics;
pub mod audit;
pub mod batch;
pub mod config;
pub mod consents;
pub mod directory;
pub mod import;
pub mod opt_outs;
pub mod presentation;
pub mod proof;
pub mod read_route;
pub mod reader;
pub mod receipts;
pub mod retention;
pub mod subjects;
pub mod tokens;
pub mod writer;

/// Now, to the microsecond, as both databases store times: a response shows what a later read
/// shows.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    crate::domain::ledger::to_micros(chrono::Utc::now())
}
