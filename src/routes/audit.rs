//! The tracker audit: `POST /v1/sites/{site_key}/observations` (public, for the SDK's audit
//! module), `GET /v1/sites/{site_id}/inventory` and `GET /v1/sites/{site_id}/violations`.

use crate::auth::{Caller, PublicSite};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::service::audit::{self, Inventory, ObservationBatch, Violations};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(record_observations).service(get_inventory).service(list_violations);
}

/// Records what a sampled page view saw: cookie names and hosts, each with the purposes
/// allowed at that moment. Sent by the SDK's audit module with `navigator.sendBeacon`, so
/// `text/plain` is taken as JSON too; at most 16 KiB. The `Origin` must be one of the site's
/// origins; at most 60 reports a minute per site and client address by default
/// (`limits.observations_per_minute`; 429 with `Retry-After`). Nothing
/// identifying is stored: no visitor id, no address, no cookie value, no query string.
#[utoipa::path(
    tag = "audit",
    security(("origin" = [])),
    params(("site_key" = String, Path, description = "The site's public key")),
    request_body(content = ObservationBatch, description = "JSON; `text/plain` is taken as JSON too (what `navigator.sendBeacon` sends for a string)"),
    responses(
        (status = 204, description = "Counted (committed)"),
        (status = 400, description = "A malformed item, page or report", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin missing or not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown site key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reports from this client; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/sites/{site_key}/observations")]
pub async fn record_observations(
    state: web::Data<AppState>,
    site: PublicSite,
    req: HttpRequest,
    // After the site and origin are known, so that a refusal carries CORS headers.
    body: Result<JsonBody<ObservationBatch, true>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    state.limits.observations(&req, &site.entry.site.id)?;
    let JsonBody(batch, _) = body?;
    audit::record_observations(&state, &site.config, &site.entry, batch).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceQuery {
    /// The first day counted, `YYYY-MM-DD` (UTC, inclusive); absent: from the start.
    #[param(value_type = Option<crate::domain::RevisionDate>)]
    pub since: Option<String>,
}

/// Everything the tracker audit saw on a site: each cookie name and host with the purpose that
/// declares it (or `unclassified`, for the privacy team to assign), first and last seen, counts
/// (also without consent and with GPC), days and example page paths. Any valid token of the
/// site's tenant.
#[utoipa::path(
    tag = "audit",
    security(("bearer" = [])),
    params(("site_id" = String, Path, description = "The site's id"), SinceQuery),
    responses(
        (status = 200, description = "The inventory", body = Inventory),
        (status = 404, description = "No such site", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/sites/{site_id}/inventory")]
pub async fn get_inventory(
    state: web::Data<AppState>,
    caller: Caller,
    site_id: web::Path<String>,
    query: crate::extract::Query<SinceQuery>,
) -> Result<HttpResponse, ApiError> {
    let since = audit::since(query.since.as_deref())?;
    let body = audit::inventory(&state, audit::tenant_site(&caller.config, &site_id)?, since).await?;
    Ok(no_store(body))
}

/// The items seen on a site while the purpose that declares them was not allowed: counts,
/// whether GPC was on, days and example page paths. Any valid token of the site's tenant.
#[utoipa::path(
    tag = "audit",
    security(("bearer" = [])),
    params(("site_id" = String, Path, description = "The site's id"), SinceQuery),
    responses(
        (status = 200, description = "The violations", body = Violations),
        (status = 404, description = "No such site", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/sites/{site_id}/violations")]
pub async fn list_violations(
    state: web::Data<AppState>,
    caller: Caller,
    site_id: web::Path<String>,
    query: crate::extract::Query<SinceQuery>,
) -> Result<HttpResponse, ApiError> {
    let since = audit::since(query.since.as_deref())?;
    let body = audit::violations(&state, audit::tenant_site(&caller.config, &site_id)?, since).await?;
    Ok(no_store(body))
}

/// 200 with `body`, not to be cached (it changes with every report).
fn no_store(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}
