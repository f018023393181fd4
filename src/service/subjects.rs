//! The data subject's rights over their record: the state at a past instant, the export of
//! everything held about them (GDPR Art. 15 and 20; CCPA right to know) and erasure (GDPR
//! Art. 17) that keeps the pseudonymous proof.

use crate::db::backend::write_transaction;
use crate::db::models::event::{Event, NewEvent};
use crate::db::models::opt_out::OptOutRequest;
use crate::db::models::receipt::ReceiptRow;
use crate::db::models::revision::RevisionRow;
use crate::db::models::state::StateRow;
use crate::db::models::subject::DataSubject;
use crate::db::schema::{data_subjects, idempotency_keys, subject_identifiers};
use crate::db::AnyConnection;
use crate::domain::{ConsentSource, RegionCode, SubjectIdentifier};
use crate::error::ApiError;
use crate::ledger::{self, Finish, Outcome, RecordRequest, SubjectView, Submission, TenantRules};
use crate::service::directory::TenantConfig;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// A person as stored: the subject an identifier names and every subject merged into it.
pub struct Person {
    pub subject_id: String,
    /// `subject_id` and the subjects merged into it (identity linking).
    pub subject_ids: Vec<String>,
}

/// The person behind a stored identifier, `None` when nobody is.
pub fn find_person(conn: &mut AnyConnection, tenant_id: &str, stored: &str) -> QueryResult<Option<Person>> {
    let Some(id) = DataSubject::resolve(conn, tenant_id, stored)? else { return Ok(None) };
    let subject_ids = DataSubject::with_merged(conn, tenant_id, &id)?;
    Ok(Some(Person { subject_id: id, subject_ids }))
}

/// Every event of the person, in recorded order.
fn events_of(conn: &mut AnyConnection, tenant_id: &str, person: &Person) -> QueryResult<Vec<NewEvent>> {
    Ok(Event::list_for_subject(conn, tenant_id, &person.subject_ids, i64::MAX)?.into_iter().map(|e| e.row).collect())
}

/// The decision in force per purpose after `events` (in recorded order): each event replaces
/// the one before unless it was decided earlier (an import with its own `occurred_at`), the
/// rule the ledger applies when it writes.
pub fn fold_states(events: &[NewEvent]) -> HashMap<String, StateRow> {
    let mut states: HashMap<String, StateRow> = HashMap::new();
    for e in events {
        let newer = states.get(&e.purpose_key).is_none_or(|s| s.occurred_at <= e.occurred_at);
        if newer {
            states.insert(
                e.purpose_key.clone(),
                StateRow {
                    tenant_id: e.tenant_id.clone(),
                    purpose_key: e.purpose_key.clone(),
                    subject_id: e.subject_id.clone(),
                    decision: e.decision.clone(),
                    event_id: e.id.clone(),
                    policy_revision: e.policy_revision.clone(),
                    source: e.source.clone(),
                    occurred_at: e.occurred_at,
                    recorded_at: e.recorded_at,
                },
            );
        }
    }
    states
}

/// `GET /v1/subjects/{subject}/consents?as_of=`: the state at `as_of` from the events decided
/// by then (`occurred_at`; an import's history counts from when the person decided), evaluated
/// at `as_of` with the revisions in force then (`effective_at`). The purposes are today's: their
/// configuration has no history. Returns the view and the revisions in force (latest per policy).
///
/// That is the state as now known ("valid time"): a revision published later with an earlier
/// date counts from its date, and history imported later counts. With `as_recorded`, the state
/// as the service held it at `as_of` ("transaction time", what a check answered then): only
/// events recorded by then (`recorded_at`) and revisions published by then (`created_at`).
pub async fn state_as_of(
    state: &AppState,
    config: &TenantConfig,
    stored: String,
    region: Option<RegionCode>,
    as_of: DateTime<Utc>,
    as_recorded: bool,
) -> Result<(SubjectView, Vec<RevisionRow>), ApiError> {
    let mut rules = TenantRules::from_config(config, as_of)?;
    if as_recorded {
        rules = rules.as_published_at(as_of)?;
    }
    let tenant_id = rules.tenant_id.clone();
    let events = state
        .read_db(move |conn| {
            Ok(match find_person(conn, &tenant_id, &stored)? {
                Some(person) => events_of(conn, &tenant_id, &person)?,
                None => Vec::new(),
            })
        })
        .await?;
    let cut = crate::db::models::naive(as_of);
    let known: Vec<NewEvent> =
        events.into_iter().filter(|e| e.occurred_at <= cut && (!as_recorded || e.recorded_at <= cut)).collect();
    let view = rules.view(&fold_states(&known), region.as_ref())?;
    let in_force = RevisionRow::current(&rules.revision_rows).into_iter().cloned().collect();
    Ok((view, in_force))
}

/// Everything held about a person, for the export.
pub struct Holdings {
    pub person: Option<Person>,
    /// The person's stored identifiers (email and phone as keyed hashes), by subject.
    pub identifiers: Vec<(String, String)>,
    pub events: Vec<NewEvent>,
    pub receipts: Vec<ReceiptRow>,
    pub opt_outs: Vec<OptOutRequest>,
}

/// Reads everything held about the person behind `stored` (empty when nobody is).
pub async fn holdings(state: &AppState, tenant_id: &str, stored: String) -> Result<Holdings, ApiError> {
    let tenant_id = tenant_id.to_owned();
    state
        .read_db(move |conn| {
            let Some(person) = find_person(conn, &tenant_id, &stored)? else {
                return Ok(Holdings {
                    person: None,
                    identifiers: Vec::new(),
                    events: Vec::new(),
                    receipts: Vec::new(),
                    opt_outs: Vec::new(),
                });
            };
            let ids: Vec<&str> = person.subject_ids.iter().map(String::as_str).collect();
            let identifiers = DataSubject::identifiers_of(conn, &tenant_id, &ids)?;
            let events = events_of(conn, &tenant_id, &person)?;
            let receipts = ReceiptRow::list_for_subjects(conn, &tenant_id, &person.subject_ids)?;
            let opt_outs = OptOutRequest::list_for_subjects(conn, &tenant_id, &person.subject_ids)?;
            Ok(Holdings { person: Some(person), identifiers, events, receipts, opt_outs })
        })
        .await
}

/// What an erasure removed and kept.
#[derive(Debug, Clone)]
pub struct Erased {
    /// The pseudonymous subject ids whose identifiers were removed (their events stay).
    pub subject_ids: Vec<String>,
    /// The identifiers removed, in stored form (email and phone as keyed hashes).
    pub identifiers: Vec<String>,
    /// Links between subjects removed (subjects that had been merged into the person).
    pub links: usize,
    /// Stored idempotent responses removed (they may repeat the identifier in clear).
    pub stored_responses: usize,
    /// Suppression entries kept: (stored identifier, purposes denied), each a new subject
    /// holding only the opt-out.
    pub suppressed: Vec<(String, Vec<String>)>,
    /// Events kept under the pseudonymous ids (chains and receipts still verify).
    pub events_kept: usize,
}

/// `DELETE /v1/subjects/{subject}`: removes the person's identifiers (keyed hashes, user and
/// visitor ids) and links so they can no longer be found by them, and keeps the pseudonymous
/// events, receipts and opt-out requests (11 CCR §7101: kept 24 months). When `keep_opt_out`,
/// an opt-out in force is kept as a suppression entry: a denial of a purpose with
/// `gpc_applies` (sale/sharing) or whose consent model is `opt_out` by default or in any region
/// (allowed until refused there: an objection, GDPR Art. 21(2)-(3), e.g. to direct marketing on
/// legitimate interest) — [`crate::domain::Purpose::records_opt_outs`], as retention uses it. Each email
/// or phone identifier then names a new subject holding only those denials (source
/// `opt_out_request`), so an erasure restarts neither selling nor what the person objected to;
/// a denial of an `opt_in` purpose needs no entry (without one it is `not_asked`, not allowed). All in one
/// transaction; then, with SQLite, the WAL is truncated (see `backend::truncate_wal`). `None`
/// when the identifier names nobody.
pub fn erase(
    conn: &mut AnyConnection,
    rules: TenantRules,
    subject: &SubjectIdentifier,
    stored: &str,
    keep_opt_out: bool,
) -> Result<Option<Erased>, ApiError> {
    let tenant_id = rules.tenant_id.clone();
    let erased = write_transaction(conn, |conn| {
        let Some(person) = find_person(conn, &tenant_id, stored)? else { return Ok(None) };
        let ids: Vec<&str> = person.subject_ids.iter().map(String::as_str).collect();
        let identifiers: Vec<String> =
            DataSubject::identifiers_of(conn, &tenant_id, &ids)?.into_iter().map(|(_, i)| i).collect();
        let events = events_of(conn, &tenant_id, &person)?;
        let suppress: Vec<String> = if keep_opt_out {
            let states = fold_states(&events);
            let mut keys: Vec<String> = rules
                .purposes
                .iter()
                .filter(|p| p.records_opt_outs())
                .filter(|p| states.get(p.key.as_str()).is_some_and(|s| s.decision == "denied"))
                .map(|p| p.key.to_string())
                .collect();
            keys.sort();
            keys
        } else {
            Vec::new()
        };

        diesel::delete(
            subject_identifiers::table
                .filter(subject_identifiers::tenant_id.eq(&tenant_id))
                .filter(subject_identifiers::subject_id.eq_any(&person.subject_ids)),
        )
        .execute(conn)?;
        let links = diesel::update(
            data_subjects::table
                .filter(data_subjects::tenant_id.eq(&tenant_id))
                .filter(data_subjects::merged_into.eq_any(&person.subject_ids)),
        )
        .set(data_subjects::merged_into.eq(None::<String>))
        .execute(conn)?;
        // A kept response shows the subject it was for ("subject": …): a visitor or user id in
        // clear, an email or phone as its keyed hash (put back in clear on replay). Every one of
        // the person's identifiers, in the form kept.
        let mut shown_forms = vec![subject.to_string()];
        shown_forms.extend(identifiers.iter().cloned());
        shown_forms.sort();
        shown_forms.dedup();
        let mut stored_responses = 0;
        for form in &shown_forms {
            let shown = serde_json::to_string(form).map_err(ApiError::internal)?;
            stored_responses +=
                diesel::delete(idempotency_keys::table.filter(idempotency_keys::tenant_id.eq(&tenant_id)).filter(
                    idempotency_keys::response.like(format!("%\"subject\":{}%", like_escape(&shown))).escape('\\'),
                ))
                .execute(conn)?;
        }

        let mut suppressed = Vec::new();
        if !suppress.is_empty() {
            let choices: BTreeMap<String, bool> = suppress.iter().map(|k| (k.clone(), false)).collect();
            for identifier in identifiers.iter().filter(|i| i.starts_with("email:") || i.starts_with("phone:")) {
                let req = RecordRequest::new(identifier, &choices, ConsentSource::OptOutRequest);
                let mut job = Submission::new(rules.clone(), &req, 200, Finish::empty())?;
                match ledger::write_batch(conn, std::slice::from_mut(&mut job))?.pop() {
                    Some(Ok(Outcome::Fresh { .. })) => suppressed.push((identifier.clone(), suppress.clone())),
                    Some(Err(e)) => return Err(e.into()),
                    _ => return Err(ApiError::internal(diesel::result::Error::NotFound)),
                }
            }
        }
        Ok(Some(Erased {
            subject_ids: person.subject_ids.clone(),
            identifiers,
            links,
            stored_responses,
            suppressed,
            events_kept: events.len(),
        }))
    })?;
    // SQLite: the erased identifiers' old pages leave the WAL too (secure_delete zeroes them
    // in the database file).
    if erased.is_some() {
        crate::db::backend::truncate_wal(conn);
    }
    Ok(erased)
}

/// Escapes `%` and `_` for a LIKE pattern with `\` as the escape character.
fn like_escape(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
