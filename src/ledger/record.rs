//! Recording decisions: one event per changed purpose, in one transaction, exactly once per
//! `Idempotency-Key`, each linked into the subject's hash chain.

use super::events::describe_events;
use super::outbox::{self, ConsentChange};
use super::view::{index, SubjectView, TenantRules};
use super::LedgerError;
use crate::db::backend::{is_retryable, lock_subject, lock_tenant_feed, write_transaction};
use crate::db::models::event::NewEvent;
use crate::db::models::idempotency::StoredResponse;
use crate::db::models::state::StateRow;
use crate::db::models::subject::DataSubject;
use crate::db::models::{naive, new_id, utc};
use crate::db::AnyConnection;
use crate::domain::ledger::to_micros;
use crate::domain::webhook::WebhookEventType;
use crate::domain::{Choices, ConsentSource, Decision, FieldError, PurposeKey, RegionCode, RevisionDate, Status};
use chrono::{DateTime, Duration, Utc};
use diesel::QueryResult;
use std::collections::{BTreeMap, HashMap};

/// How far in the future an `occurred_at` may lie, for clock skew between systems.
const MAX_CLOCK_SKEW: Duration = Duration::seconds(60);

/// One submission of choices for one data subject.
pub struct RecordRequest<'a> {
    /// The subject's identifier in its stored form (`SubjectIdentifier::stored_form`).
    pub subject: &'a str,
    pub choices: &'a BTreeMap<String, bool>,
    /// The revision date the person saw (`YYYY-MM-DD`); must be a revision in force.
    pub policy_revision: Option<&'a str>,
    pub source: ConsentSource,
    pub region: Option<&'a RegionCode>,
    /// When the person decided; defaults to now. Not in the future.
    pub occurred_at: Option<DateTime<Utc>>,
    pub site_id: Option<&'a str>,
    /// The request carried `Sec-GPC: 1`: an opt-out of sale/sharing (11 CCR §7025).
    pub gpc: bool,
    pub idempotency: Option<IdempotencyClaim>,
}

/// An `Idempotency-Key` and what it was sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// `site:<id>` or `api`: keys of different callers never collide.
    pub scope: String,
    pub key: String,
    /// SHA-256 (hex) of the request's method, path and body.
    pub request_hash: String,
}

/// What a submission recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub subject_id: String,
    /// Ids of the events written, in the order written (empty when nothing changed).
    pub event_ids: Vec<String>,
    pub view: SubjectView,
    /// A GPC signal was present and honoured.
    pub gpc_honored: bool,
    /// Purposes granted while a GPC signal was present: recorded, but the opt-out stays in
    /// force (11 CCR §7025(c)(3)).
    pub gpc_conflicts: Vec<String>,
}

/// A fresh result with its response body, or the stored response of an earlier request with
/// the same key.
pub enum Outcome {
    Fresh { recorded: Recorded, body: String },
    Replay { status: u16, body: String },
}

/// Records the choices. `finish` runs inside the same transaction after the events are
/// written: it may write what belongs with them (e.g. an opt-out request) and returns the
/// response body, which is stored for idempotent replays. With `gpc` set, `choices` may be
/// empty: the request then only applies the signal.
///
/// Errors: [`LedgerError::Field`] for unknown purposes, refused `notice_only` purposes, a bad
/// `policy_revision`, `occurred_at` in the future; [`LedgerError::IdempotencyKeyReused`].
pub fn record_choices(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    req: &RecordRequest<'_>,
    status: u16,
    mut finish: impl FnMut(&mut AnyConnection, &Recorded) -> Result<String, LedgerError>,
) -> Result<Outcome, LedgerError> {
    let choices = if req.choices.is_empty() && req.gpc {
        Choices::none()
    } else {
        Choices::parse(req.choices, |k| rules.purpose(k.as_str()).map(|p| p.model_in(req.region)))?
    };
    let revision = validate_revision(rules, req.policy_revision)?;
    let occurred_at = req.occurred_at.map(to_micros);
    if occurred_at.is_some_and(|t| t > rules.now + MAX_CLOCK_SKEW) {
        return Err(FieldError::new("occurred_at", "is in the future: it is when the person decided").into());
    }
    if occurred_at.is_some_and(|t| t.timestamp() < 0) {
        return Err(FieldError::new("occurred_at", "is before 1970: not a decision this ledger can have seen").into());
    }
    if req.source.is_opt_out_signal() && choices.iter().any(|(_, d)| *d == Decision::Granted) {
        return Err(FieldError::new(
            "source",
            format!("'{}' records opt-outs: every choice must be false", req.source),
        )
        .into());
    }

    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = write_transaction(conn, |conn| {
            if let Some(claim) = &req.idempotency {
                if let Some(replay) = replay(conn, &rules.tenant_id, claim)? {
                    return Ok(replay);
                }
            }
            let recorded = write(conn, rules, req, &choices, revision, occurred_at)?;
            let body = finish(conn, &recorded)?;
            if let Some(claim) = &req.idempotency {
                StoredResponse {
                    tenant_id: rules.tenant_id.clone(),
                    scope: claim.scope.clone(),
                    key: claim.key.clone(),
                    request_hash: claim.request_hash.clone(),
                    status: i32::from(status),
                    response: body.clone(),
                    created_at: naive(rules.now),
                }
                .insert(conn)?;
            }
            Ok(Outcome::Fresh { recorded, body })
        });
        match result {
            Err(LedgerError::Db(e)) if attempt < 4 && is_retryable(&e) => continue,
            other => return other,
        }
    }
}

fn replay(conn: &mut AnyConnection, tenant_id: &str, claim: &IdempotencyClaim) -> Result<Option<Outcome>, LedgerError> {
    match StoredResponse::find(conn, tenant_id, &claim.scope, &claim.key)? {
        None => Ok(None),
        Some(stored) if stored.request_hash == claim.request_hash => {
            Ok(Some(Outcome::Replay { status: u16::try_from(stored.status).unwrap_or(201), body: stored.response }))
        }
        Some(_) => Err(LedgerError::IdempotencyKeyReused(claim.key.clone())),
    }
}

/// The revision the person saw must be published and in force.
fn validate_revision(rules: &TenantRules, raw: Option<&str>) -> Result<Option<RevisionDate>, LedgerError> {
    let Some(raw) = raw else { return Ok(None) };
    let date = RevisionDate::parse(raw).map_err(|m| FieldError::new("policy_revision", m))?;
    if rules.revisions.iter().any(|r| r.revision_date == date) {
        return Ok(Some(date));
    }
    let in_force: Vec<String> =
        rules.revision_rows.iter().map(|r| format!("{} {}", r.policy_key, r.revision_date)).collect();
    Err(FieldError::new(
        "policy_revision",
        if in_force.is_empty() {
            format!("no revision dated {date} is in force: no policy revision is in force yet")
        } else {
            format!("no revision dated {date} is in force (in force: {})", in_force.join(", "))
        },
    )
    .into())
}

struct Pending {
    purpose: PurposeKey,
    decision: Decision,
    source: ConsentSource,
    /// Record the event but leave the state as it is (a grant against a GPC opt-out).
    state_unchanged: bool,
}

fn write(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    req: &RecordRequest<'_>,
    choices: &Choices,
    revision: Option<RevisionDate>,
    explicit_occurred_at: Option<DateTime<Utc>>,
) -> Result<Recorded, LedgerError> {
    let tenant_id = &rules.tenant_id;
    let stored_identifier = req.subject;
    let subject_id = DataSubject::resolve_or_create(conn, tenant_id, stored_identifier, naive(rules.now))?;
    let mut head = lock_subject(conn, &subject_id)?;
    // Read the clock only now, holding the subject's lock: decisions of one subject then get
    // times in the order they commit, and the newest decision is the last one written.
    let now = to_micros(Utc::now());
    let occurred_at = explicit_occurred_at.unwrap_or(now);
    let mut states = index(StateRow::for_subject(conn, tenant_id, &subject_id)?);

    let mut pending: Vec<Pending> = Vec::new();
    let mut gpc_conflicts = Vec::new();
    if req.gpc {
        // GPC comes first: a denial for every purpose it applies to, unless already denied.
        for p in rules.purposes.iter().filter(|p| p.gpc_applies) {
            let denied = states.get(p.key.as_str()).is_some_and(|s| s.decision == Decision::Denied.as_str());
            if !denied {
                pending.push(Pending {
                    purpose: p.key.clone(),
                    decision: Decision::Denied,
                    source: ConsentSource::Gpc,
                    state_unchanged: false,
                });
            }
        }
    }
    for (key, decision) in choices.iter() {
        let purpose = rules.purpose(key.as_str()).ok_or(diesel::result::Error::NotFound)?;
        let gpc_conflict = req.gpc && purpose.gpc_applies && *decision == Decision::Granted;
        if gpc_conflict {
            gpc_conflicts.push(key.to_string());
        }
        let after_gpc = pending.iter().any(|p| &p.purpose == key);
        // Unchanged: the same decision under the same revision, still valid. A stale or
        // expired grant given again is a renewal and is recorded.
        let unchanged = !after_gpc
            && states.get(key.as_str()).is_some_and(|s| {
                s.to_choice().is_ok_and(|c| {
                    let lapsed =
                        matches!(rules.evaluate(purpose, Some(&c), req.region).status, Status::Stale | Status::Expired);
                    c.decision == *decision && c.policy_revision == revision && !lapsed
                })
            });
        let same_as_gpc = after_gpc && *decision == Decision::Denied;
        if !unchanged && !same_as_gpc {
            pending.push(Pending {
                purpose: key.clone(),
                decision: *decision,
                source: req.source,
                state_unchanged: gpc_conflict,
            });
        }
    }

    if !pending.is_empty() {
        lock_tenant_feed(conn, tenant_id)?;
    }
    let mut written: Vec<NewEvent> = Vec::with_capacity(pending.len());
    for p in pending {
        let mut event = NewEvent {
            id: new_id(),
            tenant_id: tenant_id.clone(),
            subject_id: subject_id.clone(),
            purpose_key: p.purpose.to_string(),
            decision: p.decision.as_str().to_owned(),
            policy_revision: revision.map(|r| r.to_string()),
            source: p.source.as_str().to_owned(),
            region: req.region.map(|r| r.to_string()),
            site_id: req.site_id.map(str::to_owned),
            occurred_at: naive(occurred_at),
            recorded_at: naive(now),
            prev_hash: head.clone(),
            hash: String::new(),
        };
        event.hash = event.content().hash();
        event.insert(conn)?;
        head = event.hash.clone();

        // The state follows the newest decision by occurred_at; an older decision recorded
        // later (an import with its own occurred_at) is kept as an event but does not
        // override a newer one. A live decision (no occurred_at) is always the newest.
        let current = states.get(event.purpose_key.as_str());
        let newer = explicit_occurred_at.is_none() || current.is_none_or(|s| utc(s.occurred_at) <= occurred_at);
        if newer && !p.state_unchanged {
            let exists = current.is_some();
            let row = StateRow {
                tenant_id: tenant_id.clone(),
                purpose_key: event.purpose_key.clone(),
                subject_id: subject_id.clone(),
                decision: event.decision.clone(),
                event_id: event.id.clone(),
                policy_revision: event.policy_revision.clone(),
                source: event.source.clone(),
                occurred_at: event.occurred_at,
                recorded_at: event.recorded_at,
            };
            row.save(conn, exists)?;
            states.insert(row.purpose_key.clone(), row);
        }
        written.push(event);
    }
    let event_ids: Vec<String> = written.iter().map(|e| e.id.clone()).collect();
    if !written.is_empty() {
        DataSubject::set_chain_head(conn, &subject_id, &head)?;
        enqueue_consent_changes(conn, rules, &states, req.region, written, now)?;
    }
    let view = rules.view(&states, req.region)?;
    Ok(Recorded { subject_id, event_ids, view, gpc_honored: req.gpc, gpc_conflicts })
}

/// A `consent.changed` webhook delivery per event written, in the events' transaction.
fn enqueue_consent_changes(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    states: &HashMap<String, StateRow>,
    region: Option<&RegionCode>,
    written: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    outbox::enqueue(conn, &rules.tenant_id, WebhookEventType::ConsentChanged, now, |conn| {
        describe_events(conn, &rules.tenant_id, written)?
            .into_iter()
            .map(|event| {
                let purpose = rules.purpose(&event.event.purpose).ok_or(diesel::result::Error::NotFound)?;
                let choice = states.get(purpose.key.as_str()).map(StateRow::to_choice).transpose()?;
                Ok(ConsentChange { state: rules.evaluate(purpose, choice.as_ref(), region), event })
            })
            .collect()
    })
}
