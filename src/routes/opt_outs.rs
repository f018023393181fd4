//! CCPA requests to opt out of sale/sharing: `POST /v1/opt-outs`, `GET /v1/opt-outs`,
//! `POST /v1/opt-outs/{id}/complete`.

use crate::auth::{Caller, Scope};
use crate::db::models::opt_out::OptOutFilter;
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, OptionalJsonBody};
use crate::routes::consents::idempotency_claim;
use crate::service::opt_outs::{self, CompleteOptOut, CreateOptOut, OptOutList, OptOutResponse, OptOutStatus};
use crate::state::AppState;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_opt_out).service(list_opt_outs).service(complete_opt_out);
}

/// Records a request to opt out of the sale and sharing of personal information. Requires
/// `consents:write`. The opt-out takes effect at once: every purpose with `gpc_applies` is
/// denied for the person (source `opt_out_request`), in the same transaction as the request.
/// The request stays `open` until completed (`POST /v1/opt-outs/{id}/complete`), and is
/// `overdue` after `due_at`. Requests are never deleted (kept well beyond the 24 months of
/// 11 CCR §7101(a)).
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry return the first result")),
    request_body = CreateOptOut,
    responses(
        (status = 201, description = "Recorded; the opt-out is in effect", body = OptOutResponse),
        (status = 409, description = "The tenant defines no purpose with `gpc_applies`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-outs")]
pub async fn create_opt_out(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    JsonBody(body, raw): JsonBody<CreateOptOut>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let idempotency = idempotency_claim(&req, "api".into(), &raw)?;
    let (body, replayed) = opt_outs::request(&state, &caller.config, body, idempotency).await?;
    let mut res = HttpResponse::Created();
    res.content_type("application/json");
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.body(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptOutQuery {
    /// `open` (includes overdue ones), `overdue` or `completed`; absent: all.
    pub status: Option<OptOutStatus>,
}

/// Lists the tenant's opt-out requests, oldest first. Requires `consents:read`.
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(OptOutQuery),
    responses((status = 200, description = "The requests", body = OptOutList))
)]
#[get("/v1/opt-outs")]
pub async fn list_opt_outs(
    state: web::Data<AppState>,
    caller: Caller,
    query: crate::extract::Query<OptOutQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let filter = match query.status {
        None => OptOutFilter::All,
        Some(OptOutStatus::Open) => OptOutFilter::Open,
        Some(OptOutStatus::Overdue) => OptOutFilter::Overdue,
        Some(OptOutStatus::Completed) => OptOutFilter::Completed,
    };
    let opt_outs = opt_outs::list(&state, &caller.tenant_id, filter).await?;
    Ok(HttpResponse::Ok().json(OptOutList { opt_outs }))
}

/// Marks a request completed (the business has honoured it everywhere, e.g. notified the
/// third parties it sold or shared with, 11 CCR §7026(f)(2)). Requires `consents:write`. The
/// body is optional: `{"note": "…"}` keeps what was done with the request.
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id")),
    request_body(content = CompleteOptOut, description = "Optional: a note on what was done"),
    responses(
        (status = 200, description = "Completed", body = OptOutResponse),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already completed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-outs/{id}/complete")]
pub async fn complete_opt_out(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<CompleteOptOut>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let body = opt_outs::complete(&state, &caller.tenant_id, &id, body.unwrap_or_default()).await?;
    Ok(HttpResponse::Ok().json(body))
}
