//! Consent use cases: record a submission, read a subject's state, check a purpose for many
//! subjects. Configuration comes from the directory (no query); each use case then joins a
//! batch (writes, single-subject reads) or takes one pooled connection once (bulk checks).

use super::reader::Lookup;
use super::receipts::{self, ReceiptContext};
use crate::domain::{Purpose, RegionCode, StoredChoice, SubjectKey};
use crate::error::ApiError;
use crate::ledger::{
    self, check, CheckResult, Finish, LedgerError, Outcome, RecordRequest, SubjectView, Submission, TenantRules,
};
use crate::state::AppState;
use std::collections::HashMap;

/// Records a submission: validated here (nothing invalid joins a batch), then written together
/// with concurrent ones (`service::writer`). Resolves once committed.
///
/// Errors: as [`Submission::new`] (400), [`LedgerError::IdempotencyKeyReused`] (422),
/// [`LedgerError::Unavailable`] (503).
pub async fn record(
    state: &AppState,
    rules: TenantRules,
    req: &RecordRequest<'_>,
    status: u16,
    finish: Finish,
) -> Result<Outcome, LedgerError> {
    let submission = Submission::new(rules, req, status, finish)?;
    counted(req, state.writer.submit(submission).await)
}

/// Counts the events of a committed submission (`consentry_events_recorded_total`).
fn counted<E>(req: &RecordRequest<'_>, outcome: Result<Outcome, E>) -> Result<Outcome, E> {
    if let Ok(Outcome::Fresh { recorded, .. }) = &outcome {
        crate::metrics::events_recorded(req.source, recorded.event_ids.len());
    }
    outcome
}

/// [`record`] for a submission that gets a signed receipt (a person's or a caller's choices,
/// an opt-out request): issued in the transaction that records it and added to the response
/// body as `receipt` ([`receipts::sealer`]).
///
/// `shown`: the subject as the response shows it when that is an email address or phone number
/// ([`crate::domain::SubjectIdentifier::shown_personal`]): the response kept for an `Idempotency-Key` holds its
/// keyed hash instead.
pub async fn record_with_receipt(
    state: &AppState,
    rules: TenantRules,
    req: &RecordRequest<'_>,
    shown: Option<String>,
    status: u16,
    finish: Finish,
) -> Result<Outcome, ApiError> {
    let seal = receipts::sealer(state, ReceiptContext::new(&rules, req));
    let submission = Submission::new(rules, req, status, finish)?.sealed_by(seal).showing(shown);
    Ok(counted(req, state.writer.submit(submission).await)?)
}

/// [`record`] for a visitor whom the site's backend identified as a user (a verified identity
/// token): the submission is checked first, then the visitor linked to the user, then written.
/// So a submission refused with 400 links nobody (a 4xx changes nothing).
pub async fn record_identified(
    state: &AppState,
    rules: TenantRules,
    req: &RecordRequest<'_>,
    user: String,
    status: u16,
    finish: Finish,
) -> Result<Outcome, ApiError> {
    let seal = receipts::sealer(state, ReceiptContext::new(&rules, req));
    let submission = Submission::new(rules.clone(), req, status, finish)?.sealed_by(seal);
    let visitor = req.subject.to_owned();
    state.db(move |conn| Ok(ledger::link_visitor_to_user(conn, &rules, &user, &visitor)?)).await?;
    Ok(counted(req, state.writer.submit(submission).await)?)
}

/// The state of the subject behind `stored_identifier` (all `not_asked` when unknown): one
/// lookup, read together with concurrent ones (`service::reader`).
pub async fn read_state(
    state: &AppState,
    rules: TenantRules,
    stored_identifier: String,
    region: Option<RegionCode>,
) -> Result<SubjectView, ApiError> {
    let lookup = Lookup { tenant_id: rules.tenant_id.clone(), identifier: stored_identifier, purpose: None };
    let states = state.read_states(lookup).await?;
    Ok(rules.view(&ledger::index(states), region.as_ref())?)
}

/// Checks `purpose` for each subject, in request order. One subject (a send-time check) is one
/// lookup, read together with concurrent ones (`service::reader`); a list is two queries per
/// 5,000 subjects ([`ledger::check::choices_by_identifier`]).
/// Errors: a purpose the tenant does not define, malformed subjects (400).
pub async fn check(
    state: &AppState,
    rules: TenantRules,
    subject_key: SubjectKey,
    purpose: &str,
    subjects: Vec<String>,
    region: Option<RegionCode>,
) -> Result<Vec<CheckResult>, ApiError> {
    let purpose: Purpose = rules.purpose(purpose).cloned().ok_or_else(|| {
        ApiError::invalid("purpose", format!("no purpose '{}' is defined", crate::domain::shown(purpose)))
    })?;
    let stored = check::stored_subjects(&subject_key, &subjects)?;
    crate::metrics::checked(stored.len());
    let (stored, choices): (Vec<String>, HashMap<String, StoredChoice>) = if let [only] = stored.as_slice() {
        let lookup = Lookup {
            tenant_id: rules.tenant_id.clone(),
            identifier: only.clone(),
            purpose: Some(purpose.key.to_string()),
        };
        let mut choices = HashMap::new();
        for row in state.read_states(lookup).await? {
            choices.insert(only.clone(), row.to_choice().map_err(LedgerError::from)?);
        }
        (stored, choices)
    } else {
        let (tenant_id, key) = (rules.tenant_id.clone(), purpose.key.to_string());
        let stored = std::sync::Arc::new(stored);
        let read = stored.clone();
        let choices =
            state.read_db(move |conn| Ok(check::choices_by_identifier(conn, &tenant_id, &key, &read)?)).await?;
        (std::sync::Arc::unwrap_or_clone(stored), choices)
    };
    Ok(check::answer(&rules, &purpose, region.as_ref(), subjects, &stored, &choices))
}
