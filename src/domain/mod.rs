//! Pure consent rules: no HTTP, no SQL, no clock reads (time is always passed in).
//!
//! Every type here is parsed once at the edge ("parse, don't validate") and is valid
//! for as long as you hold it.

pub mod choices;
pub mod identifiers;
pub mod ledger;
pub mod policy;
pub mod purpose;
pub mod region;
pub mod status;

pub use choices::Choices;
pub use identifiers::{IdentifierError, SubjectIdentifier, SubjectKey};
pub use policy::{PolicyKey, Revision, RevisionDate};
pub(crate) use purpose::truncate;
pub use purpose::{
    ConsentModel, LegalBasis, Purpose, PurposeKey, PurposeKind, PurposeRule, RegionalModels,
};
pub use region::RegionCode;
pub use status::{ConsentSource, Decision, Evaluation, Reason, Status, StoredChoice};

/// A validation failure of one input field: which field, and why.
///
/// Routes turn it into an RFC 9457 problem body (400) whose `detail` is `"{field}: {message}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
