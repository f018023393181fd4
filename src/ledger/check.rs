//! Consent checks: "may I do this for these people now?", answered in bulk.

use super::view::TenantRules;
use super::LedgerError;
use crate::db::backend;
use crate::db::AnyConnection;
use crate::domain::{FieldError, Purpose, Reason, RegionCode, Status, StoredChoice, SubjectIdentifier, SubjectKey};
use diesel::QueryResult;
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

/// The stored form of each subject of a check, in request order. Errors: the malformed
/// subjects, each named by its index (`subjects[3]`), at most 100.
pub fn stored_subjects(subject_key: &SubjectKey, subjects: &[String]) -> Result<Vec<String>, LedgerError> {
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
    if errors.is_empty() {
        Ok(stored)
    } else {
        Err(LedgerError::Fields(errors))
    }
}

/// The choice in force for `purpose_key` of each known stored identifier, by identifier: two
/// queries per 5,000 distinct identifiers (one to resolve them, one for the states). Each state
/// row is read into its [`StoredChoice`] at once: a check of 10,000 subjects holds 10,000 small
/// values, not 10,000 rows of nine strings, twice.
/// Errors: the database's, and a stored value that does not parse.
pub fn choices_by_identifier(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purpose_key: &str,
    stored: &[String],
) -> QueryResult<HashMap<String, StoredChoice>> {
    let mut unique: Vec<&str> = stored.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let mut subject_of: HashMap<String, String> = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        subject_of.extend(backend::resolve_identifiers(conn, tenant_id, chunk)?);
    }
    let mut subject_ids: Vec<&str> = subject_of.values().map(String::as_str).collect();
    subject_ids.sort_unstable();
    subject_ids.dedup();
    let mut choice_of: HashMap<String, StoredChoice> = HashMap::with_capacity(subject_ids.len());
    for chunk in subject_ids.chunks(CHUNK) {
        for row in backend::states_of(conn, tenant_id, Some(purpose_key), chunk)? {
            let choice = row.to_choice()?;
            choice_of.insert(row.subject_id, choice);
        }
    }
    Ok(subject_of.into_iter().filter_map(|(identifier, id)| Some((identifier, choice_of.get(&id)?.clone()))).collect())
}

/// The answer for each subject, in request order, from the states of their stored forms
/// (`stored[i]` is `subjects[i]`'s). Subjects without a choice are `not_asked`.
pub fn answer(
    rules: &TenantRules,
    purpose: &Purpose,
    region: Option<&RegionCode>,
    subjects: Vec<String>,
    stored: &[String],
    choices: &HashMap<String, StoredChoice>,
) -> Vec<CheckResult> {
    subjects
        .into_iter()
        .zip(stored)
        .map(|(subject, stored)| {
            let state = rules.evaluate(purpose, choices.get(stored), region);
            CheckResult { subject, allowed: state.allowed, status: state.status, reason: state.reason }
        })
        .collect()
}
