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
