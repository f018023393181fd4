//! Errors of the HTTP layer and their RFC 9457 problem bodies.
//!
//! Every 4xx and 5xx answer is `application/problem+json` with `type`, `title`, `status` and
//! `detail`; validation problems name the field in `detail` and in `errors[].field`.
//! Server-side causes are logged with their source chain and never sent to the client.

use crate::ledger::LedgerError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Base of the `type` URIs of Consentry's problem types.
pub const PROBLEM_BASE: &str = "https://consentry.dev/problems/";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "https://consentry.dev/problems/invalid-request",
    "title": "The request is invalid",
    "status": 400,
    "detail": "choices.necessary: 'necessary' is strictly necessary (notice_only) and cannot be refused",
    "errors": [{"field": "choices.necessary", "message": "'necessary' is strictly necessary (notice_only) and cannot be refused"}]
}))]
pub struct Problem {
    /// A URI naming the problem type (RFC 9457 §3.1.1).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the problem type, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, precisely.
    pub detail: String,
    /// For validation problems: each field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldProblem>,
    /// The request's id (its `X-Request-Id`, given or generated), to find it in the logs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// One field at fault.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldProblem {
    /// The field's path in the request, e.g. `choices.analytics`, `subjects[3]`, `region`.
    pub field: String,
    pub message: String,
}

/// An error of a request, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields at fault; `detail` names the first and counts the rest.
    #[error("{}", describe_fields(.0))]
    Invalid(Vec<FieldProblem>),
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("{0}")]
    RequestTimeout(String),
    /// A rate limit was reached (see [`crate::limits`]): 429 with `Retry-After`, `RateLimit`
    /// and `RateLimit-Policy`.
    #[error("{0}")]
    TooManyRequests(Box<crate::limits::Throttled>),
    #[error("the database is unavailable or busy; retry shortly")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A write committed whose sync to disk failed ([`LedgerError::NotDurable`]): not a 2xx, and
    /// not "retry shortly" either, which would record it twice without an `Idempotency-Key`.
    #[error("{0}")]
    NotDurable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldProblem { field: field.into(), message: message.into() }])
    }

    /// A server-side failure: 503 when the database is only unavailable for now (see
    /// [`crate::db::transient`]), else 500.
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        if crate::db::transient(&e).is_some() {
            return Self::Unavailable(Box::new(e));
        }
        Self::Internal(Box::new(e))
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Invalid(_) => (S::BAD_REQUEST, "invalid-request", "The request is invalid"),
            Self::RequestTimeout(_) => {
                (S::REQUEST_TIMEOUT, "request-timeout", "The request body did not arrive in time")
            }
            Self::MalformedBody(_) => {
                (S::BAD_REQUEST, "malformed-body", "The request body is not valid JSON of the expected shape")
            }
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Authentication is required"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "The request is not allowed"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "The resource does not exist"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "The request conflicts with the current state"),
            Self::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload-too-large", "The request is too large"),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The request body is not of a type this endpoint takes",
            ),
            Self::IdempotencyKeyReused(_) => {
                (S::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "The Idempotency-Key was used for another request")
            }
            Self::TooManyRequests(..) => (S::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests"),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable"),
            Self::NotDurable(_) => {
                (S::INTERNAL_SERVER_ERROR, "not-durable", "The write was recorded but may not be on disk")
            }
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let errors = match self {
            Self::Invalid(fields) => fields.clone(),
            _ => Vec::new(),
        };
        Problem {
            type_uri: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
            request_id: crate::telemetry::request_id(),
        }
    }
}

fn describe_fields(fields: &[FieldProblem]) -> String {
    match fields {
        [] => "the request is invalid".into(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, rest @ ..] => {
            format!("{}: {} (and {} more field(s), see errors)", first.field, first.message, rest.len())
        }
    }
}

impl ApiError {
    /// Several fields at fault at once.
    pub fn invalid_fields(fields: Vec<crate::domain::FieldError>) -> Self {
        Self::Invalid(fields.into_iter().map(|f| FieldProblem { field: f.field, message: f.message }).collect())
    }
}

/// Builds a problem response for a status without an [`ApiError`] (e.g. an unknown route).
pub fn problem_response(status: StatusCode, slug: &str, title: &str, detail: String) -> HttpResponse {
    let problem = Problem {
        type_uri: format!("{PROBLEM_BASE}{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
        request_id: crate::telemetry::request_id(),
    };
    HttpResponse::build(status).content_type("application/problem+json").json(problem)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(e) => tracing::error!(error = %e, source = ?e.source(), "request failed"),
            // A condition that passes: the client is told to retry shortly. While it lasts,
            // every request meets it: one line a second, with how many were answered so since.
            Self::Unavailable(e) => {
                static THROTTLE: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
                if let Some(held) = THROTTLE.pass() {
                    let condition = match crate::db::transient(e.as_ref()) {
                        Some(crate::db::Transient::ConnectionLost) => "connection lost",
                        Some(crate::db::Transient::ReadOnly) => "read-only",
                        Some(crate::db::Transient::Unavailable) | None => "unavailable",
                    };
                    tracing::warn!(
                        error = %e,
                        condition,
                        also_answered_503 = held.count,
                        since_previous_secs = held.since_previous_secs,
                        "request answered 503: the database is unavailable for now ({condition})"
                    )
                }
            }
            Self::NotDurable(why) => tracing::error!(error = %why, "request failed"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        if matches!(self, Self::Unauthorized(_)) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"consentry\""));
        }
        if matches!(self, Self::Unavailable(_)) {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Self::TooManyRequests(t) = self {
            res.insert_header((header::RETRY_AFTER, t.retry_after_secs.to_string()));
            res.insert_header(("RateLimit-Policy", t.policy_field()));
            res.insert_header(("RateLimit", t.limit_field()));
        }
        res.json(self.problem())
    }
}

impl From<crate::domain::FieldError> for ApiError {
    fn from(e: crate::domain::FieldError) -> Self {
        Self::invalid(e.field, e.message)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        // PostgreSQL text cannot hold U+0000 (SQLite can): the input is at fault, not the server.
        if let diesel::result::Error::DatabaseError(_, info) = &e {
            if info.message().contains("invalid byte sequence") && info.message().contains("0x00") {
                return Self::MalformedBody(NUL_MESSAGE.into());
            }
        }
        Self::internal(e)
    }
}

/// Why input with a NUL character is refused.
pub const NUL_MESSAGE: &str = "the request contains a NUL character (U+0000, %00), which no text here may hold";

impl From<r2d2::Error> for ApiError {
    fn from(e: r2d2::Error) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Query(q) => q.into(),
            crate::db::DbError::Pool(p) => p.into(),
            other => Self::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::internal(e)
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Field(f) => f.into(),
            LedgerError::Fields(fields) => Self::invalid_fields(fields),
            LedgerError::IdempotencyKeyReused(_) => Self::IdempotencyKeyReused(e.to_string()),
            LedgerError::Db(db) => db.into(),
            LedgerError::Unavailable(why) => Self::Unavailable(why.into()),
            LedgerError::NotDurable(_) => Self::NotDurable(e.to_string()),
        }
    }
}
