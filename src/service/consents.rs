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
/// lookup, read together with concurrent ones (`service::reader`); a list is one query per
/// 5,000 distinct subjects ([`ledger::check::choices_by_identifier`]), its parts read on up to
/// one connection per core at once ([`ledger::check::partition`]).
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
    let choices: HashMap<String, StoredChoice> = if let [only] = stored.as_slice() {
        let lookup = Lookup {
            tenant_id: rules.tenant_id.clone(),
            identifier: only.clone(),
            purpose: Some(purpose.key.to_string()),
        };
        let mut choices = HashMap::new();
        for row in state.read_states(lookup).await? {
            choices.insert(only.clone(), row.to_choice().map_err(LedgerError::from)?);
        }
        choices
    } else {
        // Parts of the list are read on as many connections at once as there are cores: a bulk
        // check is a marketing send waiting on its answer, and most of its time is the
        // database's index probes, one per subject.
        let reads = check::partition(&stored, cores()).into_iter().map(|part| {
            let (tenant_id, key) = (rules.tenant_id.clone(), purpose.key.to_string());
            state.read_db(move |conn| Ok(check::choices_by_identifier(conn, &tenant_id, &key, &part)?))
        });
        let mut choices = HashMap::with_capacity(stored.len());
        for part in futures_util::future::try_join_all(reads).await? {
            choices.extend(part);
        }
        choices
    };
    Ok(check::answer(&rules, &purpose, region.as_ref(), subjects, &stored, &choices))
}

/// The cores this process may run on (1 when the system does not say).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}
