//! Signed consent receipts: `GET /.well-known/jwks.json` (the public keys) and
//! `POST /v1/receipts/verify` (a check anyone may ask for).

use crate::domain::receipt::ReceiptClaims;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::receipts::{Jwks, Verification};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_jwks).service(verify_receipt);
}

/// The public keys that sign consent receipts (RFC 7517 JSON Web Key Set; Ed25519 keys, RFC
/// 8037): the signing key and retired keys until their `publish_until` date. Public.
#[utoipa::path(
    tag = "receipts",
    responses((status = 200, description = "The key set", body = Jwks))
)]
#[get("/.well-known/jwks.json")]
pub async fn get_jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(state.receipts.jwks(chrono::Utc::now().date_naive()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"receipt": "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJqdGkiOiIuLi4ifQ.c2ln"}))]
pub struct VerifyReceipt {
    /// A receipt as a write returned it: a compact JWS.
    #[schema(max_length = 65536)]
    pub receipt: String,
}

/// The longest receipt `verify` reads, in characters (the schema's `maxLength`); a receipt is a
/// few kilobytes.
const MAX_RECEIPT_CHARS: usize = 65_536;

/// Whether a receipt verifies.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptVerification {
    /// True when the signature holds under a published key and the claims are a receipt's.
    pub valid: bool,
    /// The key the header names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The verified claims (only when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<ReceiptClaims>,
    /// Why it does not verify (only when not valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Checks a consent receipt against this service's published keys. Public: whoever holds a
/// receipt (the person, an auditor, a regulator) may ask. A receipt that does not verify is a
/// 200 with `valid: false` and the reason.
#[utoipa::path(
    tag = "receipts",
    request_body = VerifyReceipt,
    responses(
        (status = 200, description = "The verdict", body = ReceiptVerification),
        (status = 400, description = "The body is not `{\"receipt\": \"<jws>\"}`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this client address; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/receipts/verify")]
pub async fn verify_receipt(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    JsonBody(body, _): JsonBody<VerifyReceipt>,
) -> Result<HttpResponse, ApiError> {
    state.limits.public(&req, None)?;
    if body.receipt.chars().count() > MAX_RECEIPT_CHARS {
        return Err(ApiError::invalid(
            "receipt",
            format!("is longer than {MAX_RECEIPT_CHARS} characters: not a receipt"),
        ));
    }
    let verdict = match crate::service::receipts::verify(&state, &body.receipt) {
        Verification::Valid { kid, claims } => {
            ReceiptVerification { valid: true, kid: Some(kid), claims: Some(*claims), reason: None }
        }
        Verification::Invalid { kid, reason } => {
            ReceiptVerification { valid: false, kid, claims: None, reason: Some(reason) }
        }
    };
    Ok(HttpResponse::Ok().json(verdict))
}
