//! One file per entity: a struct, pure helpers, then its queries (each taking
//! `&mut AnyConnection` and returning `QueryResult`).

pub mod analytics;
pub mod event;
pub mod idempotency;
pub mod instance_key;
pub mod observation;
pub mod opt_out;
pub mod presentation;
pub mod purpose;
pub mod receipt;
pub mod revision;
pub mod site;
pub mod state;
pub mod subject;
pub mod tenant;
pub mod token;
pub mod webhook;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Both databases keep `TIMESTAMP` without zone; Consentry stores UTC.
pub fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// A stored value that no longer parses: corrupt data, reported as a query error.
pub fn corrupt(what: &str, value: &str) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("stored {what} '{value}' does not parse").into())
}

/// A fresh random id: UUIDv7 (time-ordered, RFC 9562 §5.7) in canonical text form; its random
/// bits from the thread's generator (uuid's `fast-rng`), not a system call each.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
