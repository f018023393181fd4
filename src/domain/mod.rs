//! Pure consent rules: no HTTP, no SQL, no clock reads (time is always passed in).
//!
//! Every type here is parsed once at the edge ("parse, don't validate") and is valid
//! for as long as you hold it.

/// Implements `utoipa::ToSchema` for a parsed string type: the OpenAPI schema carries the same
/// pattern and length bounds as the type's `parse`, and a unit test holds the two together.
macro_rules! string_schema {
    ($t:ty, pattern: $pattern:expr, min: $min:expr, max: $max:expr, $desc:literal, example: $example:literal) => {
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .min_length(Some($min))
                    .max_length(Some($max))
                    .description(Some($desc))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $t {}
    };
}
pub(crate) use string_schema;

pub mod analytics;
pub mod audit;
pub mod choices;
pub mod deadline;
pub mod identifiers;
pub mod ledger;
pub mod policy;
pub mod presentation;
pub mod purpose;
pub mod receipt;
pub mod region;
pub mod retention;
pub mod status;
pub mod webhook;

pub use choices::Choices;
pub use identifiers::{IdentifierError, SubjectIdentifier, SubjectKey};
pub use policy::{PolicyKey, Revision, RevisionDate};
pub(crate) use purpose::shown;
pub use purpose::{ConsentModel, LegalBasis, Purpose, PurposeKey, PurposeKind, PurposeRule, RegionalModels};
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
        Self { field: field.into(), message: message.into() }
    }
}
