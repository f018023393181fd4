//! Liveness and readiness probes.

use crate::error::{ApiError, Problem};
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(healthz).service(readyz);
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Prometheus metrics (see [`crate::metrics`]), for `Authorization: Bearer <metrics.token>`:
/// 404 while `metrics.token` is unset, 401 for another token. Not in the OpenAPI document: an
/// operator's endpoint, not the API.
pub async fn metrics(state: web::Data<AppState>, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    use sha2::{Digest, Sha256};
    let Some(token) = &state.metrics_token else {
        return Err(ApiError::NotFound("/metrics is off: set metrics.token (CONSENTRY__METRICS__TOKEN)".into()));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    // compared as digests: the time taken says nothing of how much of the token matched
    if given.map(|g| Sha256::digest(g.as_bytes())) != Some(Sha256::digest(token.expose().as_bytes())) {
        return Err(ApiError::Unauthorized("send Authorization: Bearer <metrics.token>".into()));
    }
    let snapshot = crate::metrics::snapshot(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(crate::metrics::render(&snapshot)))
}

/// Readiness: the database answers a query and takes writes (not a replica, not read-only).
/// Answers 503 at once while the database is known to be down, and while the server drains
/// after a stop signal (`shutdown_grace`).
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer or takes no writes", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(crate::error::problem_response(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service is temporarily unavailable",
            "the server is stopping".to_owned(),
        ));
    }
    let writable = state
        .db(|conn| crate::db::backend::accepts_writes(conn).map_err(|e| ApiError::Unavailable(Box::new(e))))
        .await?;
    if !writable {
        return Err(ApiError::Unavailable("the database is read-only: writes cannot succeed".into()));
    }
    Ok(HttpResponse::Ok().json(Health { status: "ok" }))
}
