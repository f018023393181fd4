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

/// The distinct stored identifiers of a check, sorted (PostgreSQL then walks its indexes in
/// order), in at most `parts` runs of at least [`MIN_PART`] each, to be read on as many
/// connections at once.
pub fn partition(stored: &[String], parts: usize) -> Vec<Vec<String>> {
    let mut unique: Vec<&str> = stored.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let parts = parts.min(unique.len() / MIN_PART).max(1);
    let size = unique.len().div_ceil(parts).max(1);
    unique.chunks(size).map(|run| run.iter().map(|s| (*s).to_owned()).collect()).collect()
}

/// The fewest identifiers worth a connection of their own (see [`partition`]): below this,
/// taking and waking a second connection costs about what it saves.
pub const MIN_PART: usize = 2_000;

/// The choice in force for `purpose_key` of each known stored identifier of `identifiers`
/// (distinct), by identifier: one query per 5,000 identifiers, which resolves each and reads
/// its state in one snapshot ([`backend::choices_of_identifiers`]). Each row is read into its
/// [`StoredChoice`] at once.
/// Errors: the database's, and a stored value that does not parse.
pub fn choices_by_identifier(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purpose_key: &str,
    identifiers: &[String],
) -> QueryResult<HashMap<String, StoredChoice>> {
    let mut choice_of: HashMap<String, StoredChoice> = HashMap::with_capacity(identifiers.len());
    for chunk in identifiers.chunks(CHUNK) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for (n, row) in backend::choices_of_identifiers(conn, tenant_id, purpose_key, &names)? {
            let identifier = usize::try_from(n - 1).ok().and_then(|i| chunk.get(i));
            let identifier = identifier.ok_or_else(|| corrupt_position(n))?;
            choice_of.insert(identifier.clone(), row.to_choice()?);
        }
    }
    Ok(choice_of)
}

/// A row that names a position its query was not given: the database answered another question.
fn corrupt_position(n: i64) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(
        format!("a check's row names identifier {n}, which it did not ask for").into(),
    )
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
            let state = rules.status(purpose, choices.get(stored), region);
            CheckResult { subject, allowed: state.allowed, status: state.status, reason: state.reason }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("user:{n:05}")).collect()
    }

    #[test]
    fn a_check_is_read_in_sorted_distinct_parts_of_at_least_min_part() {
        // Named in reverse and twice: read once each, in order, split evenly.
        let mut stored: Vec<String> = ids(0..6_000).into_iter().rev().collect();
        stored.extend(ids(0..100));
        let parts = partition(&stored, 2);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [3_000, 3_000]);
        assert_eq!(parts.concat(), ids(0..6_000));
        // More cores than parts of MIN_PART: as many parts as there are MIN_PARTs.
        assert_eq!(partition(&ids(0..6_000), 8).iter().map(Vec::len).collect::<Vec<_>>(), [2_000, 2_000, 2_000]);
        // Fewer than two MIN_PARTs: one part, whatever the cores.
        assert_eq!(partition(&ids(0..3_999), 2).len(), 1);
        assert_eq!(partition(&ids(0..2), 2), [ids(0..2)]);
        assert_eq!(partition(&ids(0..4_001), 1).len(), 1);
    }
}
