//! `consentry ledger verify`: recomputes every event's hash and each subject's chain, starting a
//! chain whose events were pruned from its verified checkpoint (see `domain::retention`).

use crate::db::models::event::{Event, NewEvent};
use crate::db::schema::{data_subjects, ledger_checkpoints};
use crate::db::AnyConnection;
use crate::domain::ledger::GENESIS_HASH;
use crate::domain::retention::{Bridge, CheckpointClaims, CHECKPOINT_SCHEMA};
use crate::receipts::{verify_with_jwks, Jwks};
use diesel::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the verification found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub subjects: usize,
    /// Checkpoints that stand in for pruned events, each verified.
    pub checkpoints: usize,
    /// Event ids (or `subject:<id>` for a chain head, `checkpoint:<subject id>` for a
    /// checkpoint) whose link, hash or signature does not hold.
    pub broken: Vec<String>,
}

const PAGE: i64 = 10_000;

/// Checks one event against its subject's chain so far (`heads`: subject id → hash of its last
/// event, absent for none) and moves the head to it. True when its `prev_hash` is that head
/// (or [`GENESIS_HASH`] for a subject's first event) and its `hash` is the SHA-256 of its
/// canonical content. Events must come in recorded order. Chains with pruned events need
/// [`Chains`].
pub fn link(heads: &mut HashMap<String, String>, row: &NewEvent) -> bool {
    let expected_prev = heads.get(&row.subject_id).map_or(GENESIS_HASH, String::as_str);
    let holds = row.prev_hash == expected_prev && row.content().hash() == row.hash;
    heads.insert(row.subject_id.clone(), row.hash.clone());
    holds
}

/// Hash chains being walked, with the checkpoints of subjects whose events were pruned. Used
/// by `consentry ledger verify`, by the pruning (which checks a chain before it prunes) and by
/// the offline check of a proof bundle (`consentry proof verify`).
#[derive(Debug, Default)]
pub struct Chains {
    /// Subject id → hash of its last event seen.
    pub heads: HashMap<String, String>,
    bridges: HashMap<String, BTreeMap<String, Bridge>>,
    used: HashSet<String>,
}

impl Chains {
    /// Starts the chain of `claims.sub` from a checkpoint whose signature was verified.
    pub fn start_from(&mut self, claims: &CheckpointClaims) {
        self.bridges.insert(claims.sub.clone(), claims.bridges.clone());
    }

    /// Checks one event (in recorded order) and moves its subject's head to it: its hash must be
    /// the SHA-256 of its content, and its `prev_hash` the subject's head, or, for an event
    /// whose predecessor was pruned, what its checkpoint's bridge says (the head being the
    /// bridge's `after`).
    pub fn link(&mut self, row: &NewEvent) -> bool {
        let head = self.heads.get(&row.subject_id).map_or(GENESIS_HASH, String::as_str);
        let linked = match self.bridges.get(&row.subject_id).and_then(|b| b.get(&row.id)) {
            Some(bridge) => {
                self.used.insert(row.id.clone());
                bridge.after == head && bridge.prev_hash == row.prev_hash
            }
            None => row.prev_hash == head,
        };
        let holds = linked && row.content().hash() == row.hash;
        self.heads.insert(row.subject_id.clone(), row.hash.clone());
        holds
    }

    /// `(subject id, event id)` of each bridge no event used: a kept event that is missing.
    pub fn unused_bridges(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (subject, bridges) in &self.bridges {
            for id in bridges.keys().filter(|id| !self.used.contains(*id)) {
                out.push((subject.clone(), id.clone()));
            }
        }
        out.sort();
        out
    }
}

/// A stored checkpoint row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger_checkpoints)]
pub struct CheckpointRow {
    pub tenant_id: String,
    pub subject_id: String,
    pub events: i64,
    pub first_occurred_at: chrono::NaiveDateTime,
    pub last_occurred_at: chrono::NaiveDateTime,
    pub last_hash: String,
    pub through_seq: i64,
    pub jws: String,
    pub created_at: chrono::NaiveDateTime,
}

impl CheckpointRow {
    /// The checkpoint of one subject, if its events were ever pruned.
    pub fn find(conn: &mut AnyConnection, tenant_id: &str, subject_id: &str) -> QueryResult<Option<Self>> {
        ledger_checkpoints::table.find((tenant_id, subject_id)).select(Self::as_select()).first(conn).optional()
    }

    /// The checkpoints of subjects (a person and the subjects merged into it).
    pub fn list_for_subjects(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[String],
    ) -> QueryResult<Vec<Self>> {
        ledger_checkpoints::table
            .filter(ledger_checkpoints::tenant_id.eq(tenant_id))
            .filter(ledger_checkpoints::subject_id.eq_any(subject_ids))
            .order(ledger_checkpoints::subject_id.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// Checks the row: its JWS against `jwks`, of the checkpoint schema, and its columns equal
    /// to what is signed. Returns the signed claims, or why not.
    pub fn verified(&self, jwks: &Jwks) -> Result<CheckpointClaims, String> {
        let claims = verify_checkpoint(&self.jws, jwks)?;
        let micros = |t| crate::db::models::utc(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let same = claims.tenant == self.tenant_id
            && claims.sub == self.subject_id
            && i64::try_from(claims.events).ok() == Some(self.events)
            && claims.last_hash == self.last_hash
            && claims.through_seq == self.through_seq
            && claims.first_occurred_at == micros(self.first_occurred_at)
            && claims.last_occurred_at == micros(self.last_occurred_at);
        if same {
            Ok(claims)
        } else {
            Err("its columns differ from what it signs".into())
        }
    }
}

/// Checks a checkpoint's JWS against a key set and decodes its claims.
pub fn verify_checkpoint(jws: &str, jwks: &Jwks) -> Result<CheckpointClaims, String> {
    let (_, claims) = verify_with_jwks::<CheckpointClaims>(jws, jwks)?;
    if claims.schema != CHECKPOINT_SCHEMA {
        return Err(format!("schema '{}' is not {CHECKPOINT_SCHEMA}", claims.schema));
    }
    Ok(claims)
}

/// The stored checkpoints, and the subject ids of those whose row cannot be read (a column
/// that does not parse, such as a timestamp made malformed by hand: on SQLite any text, on
/// PostgreSQL `infinity`): such a checkpoint is reported as broken, not an end to the walk.
/// All rows are read at once; only when that fails on a value are they read one by one, to
/// tell which.
fn readable_checkpoints(conn: &mut AnyConnection) -> QueryResult<(Vec<CheckpointRow>, Vec<String>)> {
    use diesel::result::Error::DeserializationError;
    match ledger_checkpoints::table.select(CheckpointRow::as_select()).load(conn) {
        Err(DeserializationError(_)) => {}
        all => return all.map(|rows| (rows, Vec::new())),
    }
    let keys: Vec<(String, String)> = ledger_checkpoints::table
        .select((ledger_checkpoints::tenant_id, ledger_checkpoints::subject_id))
        .order((ledger_checkpoints::tenant_id.asc(), ledger_checkpoints::subject_id.asc()))
        .load(conn)?;
    let (mut rows, mut unreadable) = (Vec::with_capacity(keys.len()), Vec::new());
    for (tenant_id, subject_id) in keys {
        match CheckpointRow::find(conn, &tenant_id, &subject_id) {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => {}
            Err(DeserializationError(e)) => {
                tracing::warn!(subject_id, error = %e, "a ledger checkpoint row cannot be read");
                unreadable.push(subject_id);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((rows, unreadable))
}

/// Walks all events in recorded order, 10,000 at a time, starting the chains of subjects with
/// pruned events from their checkpoints, each checked against `jwks` (the receipt keys).
pub fn verify(conn: &mut AnyConnection, jwks: &Jwks) -> QueryResult<VerifyReport> {
    let mut chains = Chains::default();
    let mut broken = Vec::new();
    let (stored, unreadable) = readable_checkpoints(conn)?;
    broken.extend(unreadable.into_iter().map(|subject| format!("checkpoint:{subject}")));
    let mut checkpoints = 0;
    for row in &stored {
        match row.verified(jwks) {
            Ok(claims) => {
                chains.start_from(&claims);
                checkpoints += 1;
            }
            Err(_) => broken.push(format!("checkpoint:{}", row.subject_id)),
        }
    }
    let mut events = 0u64;
    let mut after = 0i64;
    loop {
        let page = Event::all_by_subject(conn, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            events += 1;
            if !chains.link(&event.row) {
                broken.push(event.row.id.clone());
            }
        }
    }
    for (subject, _) in chains.unused_bridges() {
        broken.push(format!("checkpoint:{subject}"));
    }
    let heads: Vec<(String, String)> =
        data_subjects::table.select((data_subjects::id, data_subjects::last_event_hash)).load(conn)?;
    for (id, head) in heads {
        if chains.heads.get(&id).map_or(GENESIS_HASH, String::as_str) != head {
            broken.push(format!("subject:{id}"));
        }
    }
    broken.dedup();
    Ok(VerifyReport { events, subjects: chains.heads.len(), checkpoints, broken })
}
