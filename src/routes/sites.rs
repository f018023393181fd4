//! `POST /v1/sites`, `GET /v1/sites`: a tenant's websites and their allowed origins.

use crate::auth::{Caller, Scope};
use crate::db::backend::write_transaction;
use crate::db::models::site::Site;
use crate::db::models::{naive, utc};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
use crate::service::config::{self, CreateSite};
use crate::state::AppState;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_site).service(list_sites).service(rotate_identity_secret);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteResponse {
    pub id: String,
    /// The public key that pages embed; names the site in public URLs.
    pub site_key: String,
    pub name: String,
    pub origins: Vec<String>,
    /// The purposes the site presents; null: all.
    pub purposes: Option<Vec<String>>,
    /// The share of page views (0 to 1) on which the SDK runs the tracker audit.
    pub audit_sample_rate: f64,
    pub created_at: DateTime<Utc>,
    /// The secret with which the site's backend signs identity tokens for the public endpoints:
    /// HS256 JWTs with `sub` = user id and `exp`, keyed with this string as given (its 64
    /// characters, not hex-decoded). Shown once, when the site is created
    /// or the secret rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteList {
    pub sites: Vec<SiteResponse>,
}

impl From<&Site> for SiteResponse {
    fn from(s: &Site) -> Self {
        Self {
            id: s.id.clone(),
            site_key: s.site_key.clone(),
            name: s.name.clone(),
            origins: s.origins(),
            purposes: s.purposes(),
            audit_sample_rate: s.audit_sample_rate,
            created_at: utc(s.created_at),
            identity_secret: None,
        }
    }
}

/// Ports 0–65535, as a regular expression (a macro so that patterns can `concat!` it).
#[macro_export]
macro_rules! PORT_PATTERN {
    () => {
        "([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    };
}
pub use crate::PORT_PATTERN;

/// Creates a site. Requires `admin`.
#[utoipa::path(
    tag = "sites",
    security(("bearer" = [])),
    request_body = CreateSite,
    responses(
        (status = 201, description = "Created", body = SiteResponse),
        (status = 400, description = "Invalid name or origins", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `admin`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/sites")]
pub async fn create_site(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body, _): JsonBody<CreateSite>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let site = config::site(&caller.tenant_id, body, naive(now()))?;
    let site = config::create_site(&state, site).await?;
    let mut body = SiteResponse::from(&site);
    body.identity_secret = site.identity_secret.clone();
    Ok(HttpResponse::Created().json(body))
}

/// Lists the tenant's sites, oldest first. Any valid token.
#[utoipa::path(
    tag = "sites",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sites", body = SiteList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/sites")]
pub async fn list_sites(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let sites = state.db(move |conn| Ok(Site::list(conn, &caller.tenant_id)?)).await?;
    Ok(HttpResponse::Ok().json(SiteList { sites: sites.iter().map(SiteResponse::from).collect() }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentitySecret {
    /// The new secret (hex); identity tokens signed with the old one are refused from now on.
    pub identity_secret: String,
}

/// Replaces a site's identity secret and shows the new one, once. Requires `admin`.
#[utoipa::path(
    tag = "sites",
    security(("bearer" = [])),
    params(("site_id" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "The new secret", body = IdentitySecret),
        (status = 404, description = "No such site", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/sites/{site_id}/identity-secret")]
pub async fn rotate_identity_secret(
    state: web::Data<AppState>,
    caller: Caller,
    site_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let secret = Site::new_identity_secret();
    let id = site_id.into_inner();
    let s = state.secrets.seal(&crate::secrets::identity_secret_context(&id), &secret);
    let changed_tenant = caller.tenant_id.clone();
    let found = state
        .db(move |conn| {
            Ok(write_transaction(conn, |conn| Site::set_identity_secret(conn, &caller.tenant_id, &id, &s))?)
        })
        .await?;
    // This instance serves the change at once; the others within a poll.
    state.directory.invalidate(&changed_tenant);
    if !found {
        return Err(ApiError::NotFound("no such site".into()));
    }
    Ok(HttpResponse::Ok().json(IdentitySecret { identity_secret: secret }))
}
