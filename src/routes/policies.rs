//! `POST /v1/policies/{policy_key}/revisions`, `GET /v1/policies/{policy_key}/revisions`.

use crate::auth::{Caller, Scope};
use crate::db::backend::write_transaction;
use crate::db::models::purpose::PurposeRow;
use crate::db::models::revision::RevisionRow;
use crate::db::models::{naive, new_id, utc};
use crate::domain::{PolicyKey, PurposeKey, RevisionDate};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
use crate::state::AppState;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_revision).service(list_revisions);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "revision_date": "2021-02-01",
    "url": "https://www.example.com/privacy-policy",
    "sha256": "3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8",
    "requires_reconsent": false
}))]
pub struct CreateRevision {
    /// The date the revision carries, `YYYY-MM-DD`; unique per policy.
    #[schema(value_type = RevisionDate)]
    pub revision_date: String,
    /// When it takes effect (RFC 3339); default: 00:00 UTC on `revision_date`. A revision
    /// that takes effect in the future is stored but changes nothing until then.
    #[serde(default)]
    #[schema(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub effective_at: Option<DateTime<Utc>>,
    /// Where the text of this revision is published: an http or https URL with a host.
    #[schema(value_type = HttpUrl)]
    pub url: String,
    /// SHA-256 of the published text, 64 hex digits: proof of which text people saw.
    #[serde(default)]
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    pub sha256: Option<String>,
    /// Whether grants given before this revision must be asked for again (they become `stale`).
    pub requires_reconsent: bool,
    /// The purposes this revision changes; absent: all purposes.
    #[serde(default)]
    #[schema(min_items = 1, value_type = Option<Vec<PurposeKey>>)]
    pub purposes: Option<Vec<String>>,
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

/// An absolute `http(s)://host[:port][path]` URL of visible ASCII, as the schema says.
pub const HTTP_URL_PATTERN: &str =
    concat!("^https?://[A-Za-z0-9.-]+(:", crate::routes::sites::PORT_PATTERN!(), ")?([/?#][!-~]*)?$");

/// The schema of [`HTTP_URL_PATTERN`] URLs.
pub struct HttpUrl;

impl utoipa::PartialSchema for HttpUrl {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(HTTP_URL_PATTERN))
            .max_length(Some(2000))
            .examples([serde_json::json!("https://www.example.com/privacy-policy")])
            .into()
    }
}
impl ToSchema for HttpUrl {}

fn parse_http_url(raw: &str) -> Option<url::Url> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(HTTP_URL_PATTERN).expect("a valid pattern"));
    if raw.len() > 2000 || !re.is_match(raw) {
        return None;
    }
    url::Url::parse(raw).ok()
}

fn parse_policy_key(raw: &str) -> Result<PolicyKey, ApiError> {
    PolicyKey::parse(raw).map_err(|m| ApiError::invalid("policy_key", m))
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
    let policy_key = parse_policy_key(&policy_key)?;
    let date = RevisionDate::parse(&body.revision_date).map_err(|m| ApiError::invalid("revision_date", m))?;
    let url = parse_http_url(&body.url)
        .ok_or_else(|| ApiError::invalid("url", "must be an absolute http or https URL with a host"))?;
    let sha256 = match body.sha256.as_deref() {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
        Some(_) => return Err(ApiError::invalid("sha256", "must be 64 hexadecimal digits (SHA-256 of the text)")),
    };
    let purposes = match body.purposes {
        None => None,
        Some(keys) => {
            let mut parsed: Vec<PurposeKey> = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                parsed.push(PurposeKey::parse(k).map_err(|m| ApiError::invalid(format!("purposes[{i}]"), m))?);
            }
            if parsed.is_empty() {
                return Err(ApiError::invalid(
                    "purposes",
                    "list at least one purpose, or leave it out for all purposes",
                ));
            }
            Some(parsed)
        }
    };
    let earliest = date.start_of_day_utc() - chrono::Duration::days(1);
    if body.effective_at.is_some_and(|t| t < earliest) {
        return Err(ApiError::invalid(
            "effective_at",
            "is more than a day before revision_date: a revision cannot take effect before it was written",
        ));
    }
    let now = now();
    let row = RevisionRow {
        id: new_id(),
        tenant_id: caller.tenant_id.clone(),
        policy_key: policy_key.to_string(),
        revision_date: date.to_string(),
        effective_at: naive(body.effective_at.unwrap_or_else(|| date.start_of_day_utc())),
        url: url.to_string(),
        sha256,
        requires_reconsent: body.requires_reconsent,
        purposes: purposes
            .as_ref()
            .map(|p| serde_json::Value::from(p.iter().map(|k| k.to_string()).collect::<Vec<_>>()).to_string()),
        created_at: naive(now),
    };
    let changed_tenant = caller.tenant_id.clone();
    let row = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                if let Some(keys) = &purposes {
                    let defined = PurposeRow::list(conn, &row.tenant_id)?;
                    for (i, k) in keys.iter().enumerate() {
                        if !defined.iter().any(|p| &p.key == k) {
                            return Err(ApiError::invalid(
                                format!("purposes[{i}]"),
                                format!("no purpose '{k}' is defined"),
                            ));
                        }
                    }
                }
                match row.insert(conn) {
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                        Err(ApiError::Conflict(format!(
                            "policy '{}' already has a revision dated {}; revisions are immutable, publish a new date",
                            row.policy_key, row.revision_date
                        )))
                    }
                    other => Ok(other?),
                }
            })?;
            Ok(row)
        })
        .await?;
    // This instance serves the change at once; the others within a poll.
    state.directory.invalidate(&changed_tenant);
    Ok(HttpResponse::Created().json(RevisionResponse::from_row(&row, now)))
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
    let policy_key = parse_policy_key(&policy_key)?;
    let key = policy_key.to_string();
    let rows = state.db(move |conn| Ok(RevisionRow::list_for_policy(conn, &caller.tenant_id, &key)?)).await?;
    let now = now();
    Ok(HttpResponse::Ok().json(RevisionList {
        policy_key: policy_key.to_string(),
        revisions: rows.iter().map(|r| RevisionResponse::from_row(r, now)).collect(),
    }))
}
