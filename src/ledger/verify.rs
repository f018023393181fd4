//! `consentry ledger verify`: recomputes every event's hash and each subject's chain.

use crate::db::models::event::{Event, NewEvent};
use crate::db::schema::data_subjects;
use crate::db::AnyConnection;
use crate::domain::ledger::GENESIS_HASH;
use diesel::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// What the verification found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub subjects: usize,
    /// Event ids (or `subject:<id>` for a chain head) whose link or hash does not match.
    pub broken: Vec<String>,
}

const PAGE: i64 = 10_000;

/// Checks one event against its subject's chain so far (`heads`: subject id → hash of its last
/// event, absent for none) and moves the head to it. True when its `prev_hash` is that head
/// (or [`GENESIS_HASH`] for a subject's first event) and its `hash` is the SHA-256 of its
/// canonical content. Events must come in recorded order. Used by `consentry ledger verify` and
/// by the offline check of a proof bundle (`consentry proof verify`).
pub fn link(heads: &mut HashMap<String, String>, row: &NewEvent) -> bool {
    let expected_prev = heads.get(&row.subject_id).map_or(GENESIS_HASH, String::as_str);
    let holds = row.prev_hash == expected_prev && row.content().hash() == row.hash;
    heads.insert(row.subject_id.clone(), row.hash.clone());
    holds
}

/// Walks all events in recorded order, 10,000 at a time.
pub fn verify(conn: &mut AnyConnection) -> QueryResult<VerifyReport> {
    let mut heads: HashMap<String, String> = HashMap::new();
    let mut broken = Vec::new();
    let mut events = 0u64;
    let mut after = 0i64;
    loop {
        let page = Event::all_by_subject(conn, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            events += 1;
            if !link(&mut heads, &event.row) {
                broken.push(event.row.id.clone());
            }
        }
    }
    let stored: Vec<(String, String)> =
        data_subjects::table.select((data_subjects::id, data_subjects::last_event_hash)).load(conn)?;
    for (id, head) in stored {
        if heads.get(&id).map_or(GENESIS_HASH, String::as_str) != head {
            broken.push(format!("subject:{id}"));
        }
    }
    Ok(VerifyReport { events, subjects: heads.len(), broken })
}
