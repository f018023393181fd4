//! Consent checks: "may I do this for these people now?", answered in bulk.

use super::view::TenantRules;
use super::LedgerError;
use crate::db::models::state::StateRow;
use crate::db::models::subject::DataSubject;
use crate::db::AnyConnection;
use crate::domain::{FieldError, Purpose, Reason, RegionCode, Status, SubjectIdentifier, SubjectKey};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// The most subjects one check may name.
pub const MAX_CHECK_SUBJECTS: usize = 10_000;

/// The most malformed subjects one error response lists.
const MAX_REPORTED_ERRORS: usize = 100;

/// Rows per `IN (…)` list: below SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const CHUNK: usize = 5_000;

/// The answer for one subject of a check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    /// The subject as given in the request.
    pub subject: String,
    pub allowed: bool,
    pub status: Status,
    pub reason: Reason,
}

/// Checks `purpose` for each subject, in request order, from a constant number of queries
/// per 5,000 subjects (one to resolve identifiers, one for states). Unknown subjects are
/// `not_asked`. Errors: the malformed subjects, each named by its index (`subjects[3]`), at
/// most 100.
pub fn check_subjects(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    subject_key: &SubjectKey,
    purpose: &Purpose,
    subjects: &[String],
    region: Option<&RegionCode>,
) -> Result<Vec<CheckResult>, LedgerError> {
    let mut stored: Vec<String> = Vec::with_capacity(subjects.len());
    let mut errors = Vec::new();
    for (i, raw) in subjects.iter().enumerate() {
        match SubjectIdentifier::parse(raw) {
            Ok(id) => stored.push(id.stored_form(subject_key)),
            Err(e) if errors.len() < MAX_REPORTED_ERRORS => {
                errors.push(FieldError::new(format!("subjects[{i}]"), e.to_string()))
            }
            Err(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(LedgerError::Fields(errors));
    }

    let mut unique: Vec<&str> = stored.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut subject_of: HashMap<String, String> = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        subject_of.extend(DataSubject::resolve_many(conn, &rules.tenant_id, chunk)?);
    }
    let mut subject_ids: Vec<&str> = subject_of.values().map(String::as_str).collect();
    subject_ids.sort_unstable();
    subject_ids.dedup();
    let mut state_of: HashMap<String, StateRow> = HashMap::with_capacity(subject_ids.len());
    for chunk in subject_ids.chunks(CHUNK) {
        for row in StateRow::for_purpose(conn, &rules.tenant_id, purpose.key.as_str(), chunk)? {
            state_of.insert(row.subject_id.clone(), row);
        }
    }

    subjects
        .iter()
        .zip(&stored)
        .map(|(raw, stored)| {
            let row = subject_of.get(stored).and_then(|id| state_of.get(id));
            let choice = row.map(StateRow::to_choice).transpose()?;
            let state = rules.evaluate(purpose, choice.as_ref(), region);
            Ok(CheckResult { subject: raw.clone(), allowed: state.allowed, status: state.status, reason: state.reason })
        })
        .collect()
}
