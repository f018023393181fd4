//! `PUT /v1/purposes/{key}`, `GET /v1/purposes`, `GET /v1/purposes/{key}`.

use crate::auth::{Caller, Scope};
use crate::db::models::purpose::PurposeRow;
use crate::db::models::utc;
use crate::domain::audit::{CookiePattern, HostPattern};
use crate::domain::{ConsentModel, LegalBasis, Purpose, PurposeKey, PurposeKind};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::service::config::{self, PutPurpose};
use crate::state::AppState;
use actix_web::{get, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(put_purpose).service(list_purposes).service(get_purpose);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurposeResponse {
    pub key: String,
    pub title: String,
    pub description: String,
    pub kind: PurposeKind,
    pub consent_model: ConsentModel,
    pub legal_basis: LegalBasis,
    pub gpc_applies: bool,
    pub max_age_days: Option<u32>,
    /// Days its events are kept after they occurred; null: for ever.
    pub retention_days: Option<u32>,
    #[schema(value_type = BTreeMap<String, ConsentModel>)]
    pub regions: BTreeMap<String, ConsentModel>,
    /// Cookie names and `prefix*` patterns its vendors set (deleted by the SDK on refusal).
    #[schema(value_type = Vec<CookiePattern>)]
    pub cookies: Vec<String>,
    /// Hosts and `*.domain` patterns its vendors load from.
    #[schema(value_type = Vec<HostPattern>)]
    pub hosts: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurposeList {
    pub purposes: Vec<PurposeResponse>,
}

fn response(p: &Purpose, created_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> PurposeResponse {
    PurposeResponse {
        key: p.key.to_string(),
        title: p.title.clone(),
        description: p.description.clone(),
        kind: p.kind,
        consent_model: p.consent_model,
        legal_basis: p.legal_basis,
        gpc_applies: p.gpc_applies,
        max_age_days: p.max_age_days,
        retention_days: p.retention_days,
        regions: p.regions.as_map().iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        cookies: p.cookies.iter().map(ToString::to_string).collect(),
        hosts: p.hosts.iter().map(ToString::to_string).collect(),
        created_at,
        updated_at,
    }
}

/// Creates or replaces a purpose: 201 when created, 200 when replaced. Requires `admin`.
///
/// Changing a purpose never rewrites recorded decisions; a stricter consent model applies to
/// checks from now on.
#[utoipa::path(
    tag = "purposes",
    security(("bearer" = [])),
    params(("key" = PurposeKey, Path, description = "Purpose key, `[a-z0-9_]{1,64}`", example = "statistics")),
    request_body = PutPurpose,
    responses(
        (status = 200, description = "Replaced", body = PurposeResponse),
        (status = 201, description = "Created", body = PurposeResponse),
        (status = 400, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `admin`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/purposes/{key}")]
pub async fn put_purpose(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
    JsonBody(body, _): JsonBody<PutPurpose>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let purpose = config::purpose(&key, body)?;
    let (created, created_at, updated_at) = config::put_purpose(&state, &caller.tenant_id, &purpose).await?;
    let body = response(&purpose, created_at, updated_at);
    Ok(if created { HttpResponse::Created().json(body) } else { HttpResponse::Ok().json(body) })
}

/// Lists the tenant's purposes by key. Any valid token.
#[utoipa::path(
    tag = "purposes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The purposes", body = PurposeList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/purposes")]
pub async fn list_purposes(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let rows = state.db(move |conn| Ok(PurposeRow::list_rows(conn, &caller.tenant_id)?)).await?;
    let purposes = rows
        .iter()
        .map(|r| Ok(response(&r.to_domain()?, utc(r.created_at), utc(r.updated_at))))
        .collect::<Result<Vec<_>, diesel::result::Error>>()?;
    Ok(HttpResponse::Ok().json(PurposeList { purposes }))
}

/// One purpose. Any valid token.
#[utoipa::path(
    tag = "purposes",
    security(("bearer" = [])),
    params(("key" = PurposeKey, Path, description = "Purpose key", example = "statistics")),
    responses(
        (status = 200, description = "The purpose", body = PurposeResponse),
        (status = 400, description = "Malformed key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such purpose", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/purposes/{key}")]
pub async fn get_purpose(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = config::purpose_key(&key)?;
    let k = key.clone();
    let found = state.db(move |conn| Ok(PurposeRow::find(conn, &caller.tenant_id, k.as_str())?)).await?;
    match found {
        Some((p, created_at, updated_at)) => {
            Ok(HttpResponse::Ok().json(response(&p, utc(created_at), utc(updated_at))))
        }
        None => Err(ApiError::NotFound(format!("no purpose '{key}' is defined"))),
    }
}
