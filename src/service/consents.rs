//! Consent use cases: record a submission, read a subject's state, check a purpose for many
//! subjects. Configuration comes from the directory (no query); each use case then takes one
//! pooled connection once (reads) or joins a batch (writes).

use crate::db::AnyConnection;
use crate::domain::{Purpose, RegionCode, SubjectKey};
use crate::error::ApiError;
use crate::ledger::{
    self, CheckResult, Finish, LedgerError, Outcome, RecordRequest, SubjectView, Submission, TenantRules,
};
use crate::state::AppState;

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
    state.writer.submit(submission).await
}

/// The state of the subject behind `stored_identifier` (all `not_asked` when unknown): one query.
pub async fn read_state(
    state: &AppState,
    rules: TenantRules,
    stored_identifier: String,
    region: Option<RegionCode>,
) -> Result<SubjectView, ApiError> {
    state
        .db(move |conn: &mut AnyConnection| {
            Ok(ledger::subject_view(conn, &rules, &stored_identifier, region.as_ref())?)
        })
        .await
}

/// Checks `purpose` for each subject, in request order: two queries per 5,000 subjects
/// (identifiers, then states by primary key; a join of the two let PostgreSQL's planner scan
/// every state of the purpose when its statistics were stale).
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
        ApiError::invalid("purpose", format!("no purpose '{}' is defined", crate::domain::truncate(purpose)))
    })?;
    state
        .db(move |conn| Ok(ledger::check_subjects(conn, &rules, &subject_key, &purpose, &subjects, region.as_ref())?))
        .await
}
