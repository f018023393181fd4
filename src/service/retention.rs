//! Retention: `consentry retention run` and the retention worker ([`run`]).
//!
//! Events of a purpose with `retention_days` are pruned once they occurred longer ago than
//! that, per data subject, in one transaction per group of subjects: the subject's chain (from
//! its checkpoint, if any) is verified first, a subject whose chain does not verify is left
//! alone and reported; then a new checkpoint (see `domain::retention`), signed with the receipt
//! key, replaces the old one and the pruned events are deleted: marked in `ledger_pruning`
//! first, in the same transaction, as the database refuses to delete an event without a mark,
//! one no checkpoint covers, one a state rests on and a chain head (migration 000061). Never
//! pruned: the event a current state rests on (the decision in force is never lost) and the
//! subject's last event (its chain head). Receipts are kept: they still verify by their
//! signature, and a proof bundle carries the checkpoint that accounts for the events they name
//! that are gone. Checkpoints are checked against the ledger's key history
//! (`ledger::keys`), so those signed by a retired receipt key still verify.
//!
//! Completed opt-out requests are deleted after `retention.opt_out_requests_days` (at least 731
//! days, 24 months, 11 CCR §7101; unset: kept for ever); open ones never are.

use crate::db::backend::{
    clear_pruning_marks, insert_pruning_marks, lock_subjects, write_transaction, write_transaction_with, Plans,
};
use crate::db::models::event::Event;
use crate::db::models::purpose::PurposeRow;
use crate::db::models::tenant::Tenant;
use crate::db::models::{naive, utc};
use crate::db::schema::{consent_events, consent_states, ledger_checkpoints, opt_out_requests, pruned_feed_positions};
use crate::db::AnyConnection;
use crate::domain::retention::{bridges, effective_retention_days, CheckpointClaims, Link, CHECKPOINT_SCHEMA};
use crate::ledger::verify::{Chains, CheckpointRow};
use crate::receipts::ReceiptKeys;
use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Candidate events read per page while looking for subjects to prune.
const SCAN_PAGE: i64 = 10_000;
/// Subjects pruned per transaction.
const SUBJECTS_PER_TX: usize = 100;

/// What a run pruned (printed by `consentry retention run`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct RetentionSummary {
    pub started_at: DateTime<Utc>,
    /// Events deleted, in all.
    pub events_pruned: u64,
    /// Subjects whose checkpoint was written or extended.
    pub checkpoints: u64,
    /// Events past their retention kept because a current state rests on them or they are
    /// their subject's last event (its chain head): every such event of the tenants' purposes
    /// kept for a limited time, counted once after each tenant's pruning, whether or not its
    /// subject had anything to prune.
    pub kept_in_force: u64,
    /// Tenant slug → purpose → events deleted.
    pub by_purpose: BTreeMap<String, BTreeMap<String, u64>>,
    /// Subjects left alone because their chain does not verify (run `consentry ledger verify`).
    pub broken_chains: Vec<String>,
    /// Completed opt-out requests deleted (11 CCR §7101: only after 24 months at least).
    pub opt_out_requests_pruned: u64,
    pub seconds: f64,
}

/// What the run needs besides the database.
pub struct Retention<'a> {
    /// Signs the checkpoints and checks the existing ones.
    pub keys: &'a ReceiptKeys,
    /// Days completed opt-out requests are kept (validated: at least 731); `None`: for ever.
    pub opt_out_requests_days: Option<u32>,
}

/// Prunes every tenant's expired events and completed opt-out requests as of `now`.
pub fn run(conn: &mut AnyConnection, retention: &Retention<'_>, now: DateTime<Utc>) -> QueryResult<RetentionSummary> {
    let started = std::time::Instant::now();
    let mut summary = RetentionSummary { started_at: now, ..Default::default() };
    for tenant in Tenant::list(conn)? {
        prune_tenant(conn, retention, &tenant, now, &mut summary)?;
    }
    if let Some(days) = retention.opt_out_requests_days {
        let days = days.max(crate::domain::retention::CCPA_RECORD_DAYS);
        let cutoff = naive(now - Duration::days(i64::from(days)));
        let deleted = write_transaction(conn, |conn| {
            diesel::delete(
                opt_out_requests::table
                    .filter(opt_out_requests::completed_at.is_not_null())
                    .filter(opt_out_requests::completed_at.lt(cutoff)),
            )
            .execute(conn)
        })?;
        summary.opt_out_requests_pruned = deleted as u64;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn prune_tenant(
    conn: &mut AnyConnection,
    retention: &Retention<'_>,
    tenant: &Tenant,
    now: DateTime<Utc>,
    summary: &mut RetentionSummary,
) -> QueryResult<()> {
    let cutoffs: HashMap<String, NaiveDateTime> = PurposeRow::list(conn, &tenant.id)?
        .iter()
        .filter_map(|p| {
            effective_retention_days(p).map(|d| (p.key.to_string(), naive(now - Duration::days(i64::from(d)))))
        })
        .collect();
    if cutoffs.is_empty() {
        return Ok(());
    }
    // One scan per purpose kept for a limited time (few): its expired events, by log position,
    // name the subjects to prune; each subject is pruned once, of every purpose at once.
    let mut done: HashSet<String> = HashSet::new();
    let mut purposes: Vec<(&String, &NaiveDateTime)> = cutoffs.iter().collect();
    purposes.sort();
    for (purpose, cutoff) in purposes {
        // Keyset pagination over (occurred_at, seq), the order of the index
        // `consent_events_retention` (tenant_id, purpose_key, occurred_at, seq): each page is a
        // range of it, read in order up to the limit, with no sort. Starts before any event.
        let mut after = (earliest(), 0i64);
        loop {
            let page: Vec<(NaiveDateTime, i64, String)> = consent_events::table
                .filter(consent_events::tenant_id.eq(&tenant.id))
                .filter(consent_events::purpose_key.eq(purpose))
                .filter(consent_events::occurred_at.lt(*cutoff))
                .filter(consent_events::occurred_at.ge(after.0))
                .filter(consent_events::occurred_at.gt(after.0).or(consent_events::seq.gt(after.1)))
                // Not the event a state rests on (probed by the states' primary key): subjects
                // whose only expired events are in force are not visited on every run.
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    consent_states::table
                        .filter(consent_states::tenant_id.eq(consent_events::tenant_id))
                        .filter(consent_states::subject_id.eq(consent_events::subject_id))
                        .filter(consent_states::purpose_key.eq(consent_events::purpose_key))
                        .filter(consent_states::event_id.eq(consent_events::id)),
                )))
                .order((consent_events::occurred_at.asc(), consent_events::seq.asc()))
                .limit(SCAN_PAGE)
                .select((consent_events::occurred_at, consent_events::seq, consent_events::subject_id))
                .load(conn)?;
            let Some(&(at, seq, _)) = page.last() else { break };
            after = (at, seq);
            let mut subjects: Vec<String> = Vec::new();
            for (_, _, subject) in page {
                if done.insert(subject.clone()) {
                    subjects.push(subject);
                }
            }
            for group in subjects.chunks(SUBJECTS_PER_TX) {
                // Planned as the ledger's writes are (`Plans::Generic`): every statement of it
                // is keyed by subject, and it shares the subject lock's statement with them. A
                // plan PostgreSQL cached for that statement here, in its own mode, is the plan
                // the next write batch on this connection would reuse (`SET LOCAL` does not
                // replan a cached statement): a whole-table scan for every lock, had it been
                // made while `data_subjects` was small.
                write_transaction_with(conn, Plans::Generic, |conn| {
                    prune_subjects(conn, retention, tenant, &cutoffs, group, now, summary)
                })?;
            }
        }
        summary.kept_in_force += count_kept_in_force(conn, &tenant.id, purpose, *cutoff)?;
    }
    // The places of pruned events that are now before every remaining one become one.
    write_transaction(conn, |conn| Event::compact_pruned_positions(conn, &tenant.id))?;
    Ok(())
}

/// Before every event's `occurred_at`: 0001-01-01 (writes and imports refuse one before 1970).
fn earliest() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default()
}

/// The events of `purpose` that occurred before `cutoff` and are kept all the same: a state
/// rests on them (probed by the states' primary key) or no later event of their subject exists
/// (the chain head, probed by `consent_events_subject`); a range of `consent_events_retention`.
/// Counted apart from the pruning, whose
/// scan skips subjects whose only expired events are in force: counting there missed them.
fn count_kept_in_force(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purpose: &str,
    cutoff: NaiveDateTime,
) -> QueryResult<u64> {
    let later = diesel::alias!(consent_events as later);
    let in_force = diesel::dsl::exists(
        consent_states::table
            .filter(consent_states::tenant_id.eq(consent_events::tenant_id))
            .filter(consent_states::subject_id.eq(consent_events::subject_id))
            .filter(consent_states::purpose_key.eq(consent_events::purpose_key))
            .filter(consent_states::event_id.eq(consent_events::id)),
    );
    let head = diesel::dsl::not(diesel::dsl::exists(
        later
            .filter(later.field(consent_events::tenant_id).eq(consent_events::tenant_id))
            .filter(later.field(consent_events::subject_id).eq(consent_events::subject_id))
            .filter(later.field(consent_events::seq).gt(consent_events::seq)),
    ));
    let n: i64 = consent_events::table
        .filter(consent_events::tenant_id.eq(tenant_id))
        .filter(consent_events::purpose_key.eq(purpose))
        .filter(consent_events::occurred_at.lt(cutoff))
        .filter(in_force.or(head))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Prunes the expired events of `subjects` (one transaction, the subjects locked).
fn prune_subjects(
    conn: &mut AnyConnection,
    retention: &Retention<'_>,
    tenant: &Tenant,
    cutoffs: &HashMap<String, NaiveDateTime>,
    subjects: &[String],
    now: DateTime<Utc>,
    summary: &mut RetentionSummary,
) -> QueryResult<()> {
    let mut ids: Vec<&str> = subjects.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let heads: HashMap<String, String> =
        lock_subjects(conn, &ids)?.into_iter().map(|s| (s.id, s.last_event_hash)).collect();
    // Checkpoints signed by a retired key, published or not any more, still verify.
    let jwks = crate::ledger::keys::history(conn, retention.keys)?;
    // Everything of the group in a few statements: their events, checkpoints and states.
    let mut chains_of: HashMap<String, Vec<Event>> = HashMap::new();
    for e in Event::list_for_subject(conn, &tenant.id, subjects, i64::MAX)? {
        chains_of.entry(e.row.subject_id.clone()).or_default().push(e);
    }
    let mut checkpoints: HashMap<String, CheckpointRow> = CheckpointRow::list_for_subjects(conn, &tenant.id, subjects)?
        .into_iter()
        .map(|c| (c.subject_id.clone(), c))
        .collect();
    let in_force: HashSet<String> = consent_states::table
        .filter(consent_states::tenant_id.eq(&tenant.id))
        .filter(consent_states::subject_id.eq_any(subjects))
        .select(consent_states::event_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let mut rows: Vec<CheckpointRow> = Vec::new();
    let mut doomed: Vec<String> = Vec::new();
    for subject in subjects {
        let events = chains_of.remove(subject).unwrap_or_default();
        let old = checkpoints.remove(subject);
        // The chain must verify before anything of it goes: pruning never launders a break.
        let mut chains = Chains::default();
        let old_claims = match old.as_ref().map(|row| row.verified(&jwks)).transpose() {
            Ok(claims) => claims,
            Err(_) => {
                summary.broken_chains.push(subject.clone());
                continue;
            }
        };
        if let Some(claims) = &old_claims {
            chains.start_from(claims);
        }
        let whole = events.iter().all(|e| chains.link(&e.row))
            && chains.unused_bridges().is_empty()
            && chains.heads.get(subject) == heads.get(subject);
        if !whole {
            summary.broken_chains.push(subject.clone());
            continue;
        }
        let last_id = events.last().map(|e| e.row.id.clone());
        let mut pruned: Vec<&Event> = Vec::new();
        for e in &events {
            let expired = cutoffs.get(&e.row.purpose_key).is_some_and(|c| e.row.occurred_at < *c);
            if !expired {
                continue;
            }
            if !in_force.contains(&e.row.id) && last_id.as_ref() != Some(&e.row.id) {
                pruned.push(e);
            }
        }
        let Some(last_pruned) = pruned.last() else { continue };
        let gone: HashSet<&str> = pruned.iter().map(|e| e.row.id.as_str()).collect();
        let kept = events.iter().filter(|e| !gone.contains(e.row.id.as_str())).map(|e| Link {
            id: &e.row.id,
            prev_hash: &e.row.prev_hash,
            hash: &e.row.hash,
        });
        let mut first = pruned.iter().map(|e| e.row.occurred_at).min().unwrap_or(last_pruned.row.occurred_at);
        let mut latest = pruned.iter().map(|e| e.row.occurred_at).max().unwrap_or(last_pruned.row.occurred_at);
        let mut count = pruned.len() as u64;
        let mut through = last_pruned.seq;
        if let Some(old) = &old {
            first = first.min(old.first_occurred_at);
            latest = latest.max(old.last_occurred_at);
            count += u64::try_from(old.events).unwrap_or(0);
            through = through.max(old.through_seq);
        }
        let micros = |t: NaiveDateTime| utc(t).to_rfc3339_opts(SecondsFormat::Micros, true);
        let claims = CheckpointClaims {
            schema: CHECKPOINT_SCHEMA.into(),
            iss: retention.keys.issuer.clone(),
            iat: now.timestamp(),
            tenant: tenant.id.clone(),
            sub: subject.clone(),
            events: count,
            first_occurred_at: micros(first),
            last_occurred_at: micros(latest),
            last_hash: last_pruned.row.hash.clone(),
            through_seq: through,
            bridges: bridges(kept),
        };
        let jws = retention
            .keys
            .sign_claims(&claims)
            .map_err(|e| diesel::result::Error::QueryBuilderError(format!("cannot sign a checkpoint: {e}").into()))?;
        let row = CheckpointRow {
            tenant_id: tenant.id.clone(),
            subject_id: subject.clone(),
            events: i64::try_from(count).unwrap_or(i64::MAX),
            first_occurred_at: first,
            last_occurred_at: latest,
            last_hash: claims.last_hash.clone(),
            through_seq: through,
            jws,
            created_at: naive(now),
        };
        rows.push(row);
        doomed.extend(gone.iter().map(|id| (*id).to_owned()));
        summary.events_pruned += pruned.len() as u64;
        summary.checkpoints += 1;
        let per = summary.by_purpose.entry(tenant.slug.clone()).or_default();
        for e in &pruned {
            *per.entry(e.row.purpose_key.clone()).or_default() += 1;
        }
    }
    // The new checkpoints first: the database deletes only events a checkpoint covers.
    let replaced: Vec<&str> = rows.iter().map(|r| r.subject_id.as_str()).collect();
    for chunk in replaced.chunks(500) {
        diesel::delete(
            ledger_checkpoints::table
                .filter(ledger_checkpoints::tenant_id.eq(&tenant.id))
                .filter(ledger_checkpoints::subject_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    if !rows.is_empty() {
        crate::ledger::keys::record_signing_key(conn, retention.keys, naive(now))?;
    }
    for row in &rows {
        diesel::insert_into(ledger_checkpoints::table).values(row).execute(conn)?;
    }
    // Marked first: the database deletes only the events this run prunes (and a checkpoint
    // covers); the marks go before the transaction commits.
    insert_pruning_marks(conn, &doomed)?;
    for chunk in doomed.chunks(500) {
        // Their places in the change feed are kept: a reader's cursor may name one of them.
        diesel::insert_into(pruned_feed_positions::table)
            .values(consent_events::table.filter(consent_events::id.eq_any(chunk)).select((
                consent_events::tenant_id,
                consent_events::seq,
                consent_events::tx_id,
            )))
            .into_columns((pruned_feed_positions::tenant_id, pruned_feed_positions::seq, pruned_feed_positions::tx_id))
            .execute(conn)?;
        diesel::delete(consent_events::table.filter(consent_events::id.eq_any(chunk))).execute(conn)?;
    }
    clear_pruning_marks(conn)
}
