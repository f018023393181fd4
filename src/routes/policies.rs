//! `POST /v1/policies/{policy_key}/revisions`, `GET /v1/policies/{policy_key}/revisions`.

use crate::auth::{Caller, Scope};
use crate::db::models::revision::RevisionRow;
use crate::db::models::utc;
use crate::domain::PolicyKey;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
use crate::service::config::{self, CreateRevision};
use crate::state::AppState;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_revision).service(list_revisions).service(preview_reconsent);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevisionResponse {
    pub id: String,
    pub policy_key: String,
    pub revision_date: String,
    pub effective_at: DateTime<Utc>,
    pub url: String,
    pub sha256: Option<String>,
    pub requires_reconsent: bool,
    /// The purposes it changes; null: all.
    pub purposes: Option<Vec<String>>,
    /// Whether it has taken effect.
    pub in_force: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevisionList {
    pub policy_key: String,
    /// Oldest first.
    pub revisions: Vec<RevisionResponse>,
}

impl RevisionResponse {
    pub fn from_row(r: &RevisionRow, now: DateTime<Utc>) -> Self {
        Self {
            id: r.id.clone(),
            policy_key: r.policy_key.clone(),
            revision_date: r.revision_date.clone(),
            effective_at: r.effective_at_utc(),
            url: r.url.clone(),
            sha256: r.sha256.clone(),
            requires_reconsent: r.requires_reconsent,
            purposes: r.purposes.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            in_force: r.effective_at_utc() <= now,
            created_at: utc(r.created_at),
        }
    }
}

/// Publishes a revision of a policy. Requires `admin`. Revisions are immutable: publishing
/// the same `revision_date` twice is a 409.
#[utoipa::path(
    tag = "policies",
    security(("bearer" = [])),
    params(("policy_key" = PolicyKey, Path, description = "Policy key, e.g. `privacy` or `cookies`", example = "privacy")),
    request_body = CreateRevision,
    responses(
        (status = 201, description = "Published", body = RevisionResponse),
        (status = 400, description = "Invalid revision", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A revision with this date exists", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/policies/{policy_key}/revisions")]
pub async fn create_revision(
    state: web::Data<AppState>,
    caller: Caller,
    policy_key: web::Path<String>,
    JsonBody(body, _): JsonBody<CreateRevision>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let now = now();
    let revision = config::revision(&caller.tenant_id, &policy_key, body, now)?;
    let row = config::publish_revision(&state, revision).await?;
    Ok(HttpResponse::Created().json(RevisionResponse::from_row(&row, now)))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconsentQuery {
    /// Comma-separated purpose keys the revision would name; absent: all purposes.
    #[param(pattern = "^[a-z0-9_,-]{1,2000}$")]
    pub purposes: Option<String>,
}

/// How many people a revision of this policy that requires reconsent would ask again if
/// published now: the grants in force of its purposes, and their data subjects. Requires
/// `admin`. Reads `consent_states` (one row per subject and purpose), never the events.
#[utoipa::path(
    tag = "policies",
    security(("bearer" = [])),
    params(("policy_key" = PolicyKey, Path, description = "Policy key", example = "privacy"), ReconsentQuery),
    responses(
        (status = 200, description = "The counts", body = crate::service::analytics::ReconsentPreview),
    )
)]
#[get("/v1/policies/{policy_key}/reconsent-preview")]
pub async fn preview_reconsent(
    state: web::Data<AppState>,
    caller: Caller,
    policy_key: web::Path<String>,
    query: crate::extract::Query<ReconsentQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let policy_key = config::policy_key(&policy_key)?.to_string();
    let purposes: Vec<String> = match query.purposes.as_deref() {
        None => Vec::new(),
        Some(list) => list.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
    };
    if query.purposes.is_some() && purposes.is_empty() {
        return Err(ApiError::invalid("purposes", "name at least one purpose key, or leave purposes out for all"));
    }
    let preview = crate::service::analytics::reconsent_preview(&state, &caller.config, policy_key, purposes).await?;
    Ok(HttpResponse::Ok().json(preview))
}

/// Lists a policy's revisions, oldest first, with whether each is in force. Any valid token.
#[utoipa::path(
    tag = "policies",
    security(("bearer" = [])),
    params(("policy_key" = PolicyKey, Path, description = "Policy key", example = "privacy")),
    responses(
        (status = 200, description = "The revisions (empty for an unknown policy)", body = RevisionList),
        (status = 400, description = "Malformed policy key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/policies/{policy_key}/revisions")]
pub async fn list_revisions(
    state: web::Data<AppState>,
    caller: Caller,
    policy_key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let policy_key = config::policy_key(&policy_key)?;
    let key = policy_key.to_string();
    let rows = state.db(move |conn| Ok(RevisionRow::list_for_policy(conn, &caller.tenant_id, &key)?)).await?;
    let now = now();
    Ok(HttpResponse::Ok().json(RevisionList {
        policy_key: policy_key.to_string(),
        revisions: rows.iter().map(|r| RevisionResponse::from_row(r, now)).collect(),
    }))
}
