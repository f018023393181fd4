//! `POST /v1/imports`: the bulk import of historical consents over HTTP, the code of
//! `consentry import` (`service::import`).

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Problem};
use crate::service::import::{self, Format};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(post_import);
}

/// How long the body of an import may take to arrive.
const IMPORT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// What an import did: the summary `consentry import` prints, with the refused rows.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    /// Rows read (a CSV header not counted).
    pub rows: u64,
    /// Rows written now.
    pub imported: u64,
    /// Events those rows wrote (a row repeating the decision in force writes none).
    pub events: u64,
    /// Rows written by an earlier import of the same rows (or repeated in this body).
    pub already_imported: u64,
    /// Rows refused.
    pub failed: u64,
    /// The refused rows, `line N: <reason>` (lines of the body, from 1, the CSV header
    /// included), at most 1,000.
    pub errors: Vec<String>,
    pub seconds: f64,
}

fn format_of(req: &HttpRequest) -> Result<Format, ApiError> {
    let raw = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut params = raw.split(';');
    let essence = params.next().unwrap_or("").trim().to_ascii_lowercase();
    let utf8 = params.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    match essence.as_str() {
        "text/csv" if utf8 => Ok(Format::Csv),
        "application/x-ndjson" | "application/ndjson" if utf8 => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be text/csv or application/x-ndjson (UTF-8), not {}",
            if raw.is_empty() { "absent" } else { raw }
        ))),
    }
}

/// Imports historical consents into the caller's tenant: CSV with a header line
/// (`Content-Type: text/csv`) or one JSON object a line (`application/x-ndjson`), with the
/// columns `subject`, `purpose`, `decision` (`granted`/`denied`), `occurred_at` (RFC 3339) and
/// optional `policy_revision` and `region`, as `consentry import` reads them. Requires
/// `consents:write`.
///
/// Events keep their original times and have source `import`. Bad rows are refused, each named
/// as `line N: <reason>` in `errors`, and the good rows kept (200 either way). Idempotent: rows
/// imported before, by this endpoint or the command, are counted in `already_imported` and
/// add nothing, so a failed or interrupted import can be sent again whole. Rows commit in
/// batches of 1,000: after a 5xx, the batches before it are kept. The body is limited by the
/// setting `max_import_bytes` (default 256 MiB).
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    request_body(
        content(
            (String = "text/csv", example = "subject,purpose,decision,occurred_at,policy_revision,region\nemail:ada@example.com,marketing_email,granted,2023-04-01T10:00:00Z,2021-02-01,FR\n"),
            (String = "application/x-ndjson", example = "{\"subject\":\"user:7\",\"purpose\":\"analytics\",\"decision\":\"denied\",\"occurred_at\":\"2024-05-01T00:00:00Z\"}\n"),
        ),
        description = "The rows, CSV with a header or NDJSON"
    ),
    responses(
        (status = 200, description = "Imported; refused rows are listed in `errors`", body = ImportResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `consents:write`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than `max_import_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither CSV nor NDJSON", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/imports")]
pub async fn post_import(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let format = format_of(&req)?;
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?");
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding '{enc}' is not accepted; send the body unencoded"
            )));
        }
    }
    let limit = state.max_import_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body exceeds the import limit of {limit} bytes (setting max_import_bytes); split the file"
        ))
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::MalformedBody(format!("the body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = actix_web::rt::time::timeout(IMPORT_BODY_TIMEOUT, read).await.map_err(|_| {
        ApiError::RequestTimeout(format!("the body did not arrive within {} seconds", IMPORT_BODY_TIMEOUT.as_secs()))
    })??;
    let (summary, errors) = import::import_body(&state, caller.config.clone(), format, body).await?;
    Ok(HttpResponse::Ok().json(ImportResponse {
        rows: summary.rows,
        imported: summary.imported,
        events: summary.events,
        already_imported: summary.already_imported,
        failed: summary.failed,
        errors,
        seconds: summary.seconds,
    }))
}
