//! `PUT /v1/purposes/{key}`, `GET /v1/purposes`, `GET /v1/purposes/{key}`.

use crate::auth::{Caller, Scope};
use crate::db::backend::write_transaction_retrying;
use crate::db::models::purpose::PurposeRow;
use crate::db::models::{naive, utc};
use crate::domain::{ConsentModel, LegalBasis, Purpose, PurposeKey, PurposeKind, RegionCode, RegionalModels};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
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

/// The longest `max_age_days` accepted: 10 years.
const MAX_AGE_DAYS_LIMIT: u32 = 3_650;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Statistics cookies",
    "description": "Compile statistical data on the use and performance of our website (privacy policy §8).",
    "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent",
    "gpc_applies": false, "max_age_days": 395, "regions": {"US": "opt_out"}
}))]
pub struct PutPurpose {
    /// Shown to people, 1–200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Shown to people, at most 5,000 characters.
    #[schema(max_length = 5000)]
    pub description: String,
    pub kind: PurposeKind,
    /// The default consent model, where no entry of `regions` applies.
    pub consent_model: ConsentModel,
    pub legal_basis: LegalBasis,
    /// Whether a Global Privacy Control signal opts the person out (11 CCR §7025).
    pub gpc_applies: bool,
    /// How long a grant stays valid, in days (1–3650); absent or null: until withdrawn.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub max_age_days: Option<u32>,
    /// Region code (ISO 3166-1 alpha-2 or ISO 3166-2, e.g. `US-CA`) → consent model there;
    /// the most specific code wins.
    #[serde(default, deserialize_with = "crate::extract::unique_keys_opt")]
    #[schema(value_type = Option<BTreeMap<RegionCode, ConsentModel>>)]
    pub regions: Option<BTreeMap<String, ConsentModel>>,
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
    #[schema(value_type = BTreeMap<String, ConsentModel>)]
    pub regions: BTreeMap<String, ConsentModel>,
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
        regions: p.regions.as_map().iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        created_at,
        updated_at,
    }
}

fn parse_key(raw: &str) -> Result<PurposeKey, ApiError> {
    PurposeKey::parse(raw).map_err(|m| ApiError::invalid("key", m))
}

/// Parses a purpose definition (`key` from the path).
pub fn parse_purpose(key: PurposeKey, body: PutPurpose) -> Result<Purpose, ApiError> {
    let title = body.title;
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("title", "must be 1 to 200 characters"));
    }
    if body.description.chars().count() > 5_000 {
        return Err(ApiError::invalid("description", "must be at most 5000 characters"));
    }
    if let Some(days) = body.max_age_days {
        if days == 0 || days > MAX_AGE_DAYS_LIMIT {
            return Err(ApiError::invalid("max_age_days", format!("must be 1 to {MAX_AGE_DAYS_LIMIT} days")));
        }
    }
    let mut regions = BTreeMap::new();
    for (code, model) in body.regions.unwrap_or_default() {
        let region = RegionCode::parse(&code).map_err(|m| ApiError::invalid(format!("regions.{code}"), m))?;
        regions.insert(region, model);
    }
    let any_notice_only =
        body.consent_model == ConsentModel::NoticeOnly || regions.values().any(|m| *m == ConsentModel::NoticeOnly);
    if body.gpc_applies && any_notice_only {
        return Err(ApiError::invalid(
            "gpc_applies",
            "a GPC opt-out cannot apply to a notice_only (strictly necessary) purpose, which cannot be refused",
        ));
    }
    Ok(Purpose {
        key,
        title,
        description: body.description,
        kind: body.kind,
        consent_model: body.consent_model,
        legal_basis: body.legal_basis,
        gpc_applies: body.gpc_applies,
        max_age_days: body.max_age_days,
        regions: RegionalModels::new(regions),
    })
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
    let purpose = parse_purpose(parse_key(&key)?, body)?;
    let row = PurposeRow::from_domain(&caller.tenant_id, &purpose, naive(now()));
    let changed_tenant = caller.tenant_id.clone();
    let (created, created_at, updated_at) = state
        .db(move |conn| {
            write_transaction_retrying(conn, |conn| {
                let created = row.upsert(conn)?;
                let (_, created_at, updated_at) =
                    PurposeRow::find(conn, &row.tenant_id, &row.key)?.ok_or(diesel::result::Error::NotFound)?;
                Ok((created, utc(created_at), utc(updated_at)))
            })
            .map_err(ApiError::from)
        })
        .await?;
    // This instance serves the change at once; the others within a poll.
    state.directory.invalidate(&changed_tenant);
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
    let key = parse_key(&key)?;
    let k = key.clone();
    let found = state.db(move |conn| Ok(PurposeRow::find(conn, &caller.tenant_id, k.as_str())?)).await?;
    match found {
        Some((p, created_at, updated_at)) => {
            Ok(HttpResponse::Ok().json(response(&p, utc(created_at), utc(updated_at))))
        }
        None => Err(ApiError::NotFound(format!("no purpose '{key}' is defined"))),
    }
}
