//! `POST /v1/sites`, `GET /v1/sites`: a tenant's websites and their allowed origins.

use crate::auth::{Caller, Scope};
use crate::db::backend::write_transaction;
use crate::db::models::purpose::PurposeRow;
use crate::db::models::site::Site;
use crate::db::models::{naive, utc};
use crate::domain::PurposeKey;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
use crate::state::AppState;
use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_site).service(list_sites).service(rotate_identity_secret);
}

/// The most origins one site may list.
const MAX_ORIGINS: usize = 50;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "www.example.com", "origins": ["https://www.example.com"], "purposes": ["necessary", "statistics", "social_media", "sale_sharing"]}))]
pub struct CreateSite {
    /// A label for people, 1–200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Origins (`scheme://host[:port]`, http or https, no path) allowed to call the public
    /// endpoints; 1–50.
    #[schema(min_items = 1, max_items = 50, value_type = Vec<Origin>)]
    pub origins: Vec<String>,
    /// The purposes this site's banner and preference centre present (defined purpose keys);
    /// absent: every purpose of the tenant. `needs_consent` of its visitors counts only these.
    #[serde(default)]
    #[schema(min_items = 1, value_type = Option<Vec<PurposeKey>>)]
    pub purposes: Option<Vec<String>>,
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

/// An origin as `POST /v1/sites` takes it: `http(s)://host[:port]`, an optional final `/`.
pub const ORIGIN_PATTERN: &str = concat!("^https?://[A-Za-z0-9.-]+(:", PORT_PATTERN!(), ")?/?$");

/// The longest origin accepted: a 253-character host (RFC 1035 §2.3.4), scheme and port.
pub const MAX_ORIGIN_LEN: usize = 270;

/// The schema of [`ORIGIN_PATTERN`] origins.
pub struct Origin;

impl utoipa::PartialSchema for Origin {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(ORIGIN_PATTERN))
            .max_length(Some(MAX_ORIGIN_LEN))
            .description(Some(
                "An origin: http or https, a host of letters, digits, dots and hyphens, an optional port.",
            ))
            .examples([serde_json::json!("https://www.example.com")])
            .into()
    }
}
impl ToSchema for Origin {}

/// Normalises an origin to `scheme://host[:port]` (lower case, default port dropped),
/// the serialisation browsers send in `Origin` (RFC 6454 §6.1).
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let bad = |why: &str| format!("'{}' is not an origin: {why}", crate::domain::truncate(raw));
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(ORIGIN_PATTERN).expect("a valid pattern"));
    if raw.len() > MAX_ORIGIN_LEN {
        return Err(bad(&format!("at most {MAX_ORIGIN_LEN} characters")));
    }
    if !re.is_match(raw) {
        let why = if raw.starts_with("http://") || raw.starts_with("https://") {
            "an origin is scheme://host[:port], with no path, query, fragment or credentials"
        } else {
            "use http:// or https://, e.g. https://www.example.com"
        };
        return Err(bad(why));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("use scheme://host[:port], e.g. https://www.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("an origin has no path, query, fragment or credentials"));
    }
    match url.origin() {
        url::Origin::Tuple(..) => Ok(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(bad("it has no host")),
    }
}

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
    let name = body.name;
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    if body.origins.is_empty() || body.origins.len() > MAX_ORIGINS {
        return Err(ApiError::invalid("origins", format!("list 1 to {MAX_ORIGINS} origins")));
    }
    let mut origins = Vec::with_capacity(body.origins.len());
    for (i, raw) in body.origins.iter().enumerate() {
        let origin = parse_origin(raw).map_err(|m| ApiError::invalid(format!("origins[{i}]"), m))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let purposes = match &body.purposes {
        None => None,
        Some(keys) if keys.is_empty() => {
            return Err(ApiError::invalid("purposes", "list at least one purpose, or leave it out for all"))
        }
        Some(keys) => Some(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    PurposeKey::parse(k)
                        .map(|k| k.to_string())
                        .map_err(|m| ApiError::invalid(format!("purposes[{i}]"), m))
                })
                .collect::<Result<Vec<String>, _>>()?
                .into_iter()
                .fold(Vec::new(), |mut unique, k| {
                    if !unique.contains(&k) {
                        unique.push(k);
                    }
                    unique
                }),
        ),
    };
    let site = Site::new(&caller.tenant_id, &name, &origins, purposes.as_deref(), naive(now()));
    let changed_tenant = caller.tenant_id.clone();
    let site = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                if let Some(keys) = &purposes {
                    let defined = PurposeRow::list(conn, &site.tenant_id)?;
                    for (i, k) in keys.iter().enumerate() {
                        if !defined.iter().any(|p| p.key.as_str() == k) {
                            return Err(ApiError::invalid(
                                format!("purposes[{i}]"),
                                format!("no purpose '{k}' is defined"),
                            ));
                        }
                    }
                }
                Ok(site.insert(conn)?)
            })?;
            Ok(site)
        })
        .await?;
    // This instance serves the change at once; the others within a poll.
    state.directory.invalidate(&changed_tenant);
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

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        assert_eq!(parse_origin("https://WWW.Example.com").unwrap(), "https://www.example.com");
        assert_eq!(parse_origin("https://www.example.com:443/").unwrap(), "https://www.example.com");
        assert_eq!(parse_origin("http://127.0.0.1:8000").unwrap(), "http://127.0.0.1:8000");
        for bad in
            ["www.example.com", "ftp://example.com", "https://example.com/path", "https://example.com?q=1", "null"]
        {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
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
    let s = secret.clone();
    let id = site_id.into_inner();
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
