//! `consentry ledger verify`: recomputes every event's hash and each subject's chain.

use crate::db::models::event::Event;
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
            let row = &event.row;
            let expected_prev = heads.get(&row.subject_id).map_or(GENESIS_HASH, String::as_str);
            if row.prev_hash != expected_prev || row.content().hash() != row.hash {
                broken.push(row.id.clone());
            }
            heads.insert(row.subject_id.clone(), row.hash.clone());
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
