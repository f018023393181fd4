//! Authentication: management tokens (JWT bearer) and public site requests (site key + Origin).

use crate::db::models::tenant::Tenant;
use crate::db::models::token::ApiToken;
use crate::db::models::{naive, new_id, utc};
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::service::directory::{SiteEntry, TenantConfig};
use crate::state::{AppState, TokenKeys};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What a management token may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    /// Manage sites, purposes and policy revisions, and everything below.
    #[serde(rename = "admin")]
    Admin,
    /// Read consent state and events of data subjects.
    #[serde(rename = "consents:read")]
    ConsentsRead,
    /// Record decisions server-to-server.
    #[serde(rename = "consents:write")]
    ConsentsWrite,
    /// Ask whether a purpose is allowed for subjects.
    #[serde(rename = "consents:check")]
    ConsentsCheck,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::ConsentsRead, Scope::ConsentsWrite, Scope::ConsentsCheck];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ConsentsRead => "consents:read",
            Self::ConsentsWrite => "consents:write",
            Self::ConsentsCheck => "consents:check",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            format!("'{raw}' is not a scope: use admin, consents:read, consents:write or consents:check")
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a management token (RFC 7519).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// `tenant:<slug>`.
    pub sub: String,
    /// The tenant id.
    pub tenant: String,
    pub scopes: Vec<Scope>,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expiry, seconds since the Unix epoch; absent: does not expire (revoke it instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The token id, used to revoke it.
    pub jti: String,
}

/// Issues a token for `tenant` and records it (so that it can be revoked).
/// Returns `(token id, JWT)`.
pub fn issue_token(
    conn: &mut AnyConnection,
    keys: &TokenKeys,
    tenant: &Tenant,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    label: Option<&str>,
) -> Result<(String, String), ApiError> {
    let now = Utc::now();
    let claims = Claims {
        sub: format!("tenant:{}", tenant.slug),
        tenant: tenant.id.clone(),
        scopes: scopes.to_vec(),
        iat: now.timestamp(),
        exp: expires_at.map(|t| t.timestamp()),
        jti: new_id(),
    };
    let jwt =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).map_err(ApiError::internal)?;
    ApiToken {
        id: claims.jti.clone(),
        tenant_id: tenant.id.clone(),
        scopes: scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        created_at: naive(now),
        expires_at: expires_at.map(naive),
        revoked_at: None,
        label: label.map(str::to_owned),
    }
    .insert(conn)?;
    Ok((claims.jti, jwt))
}

/// An authenticated management caller: `Authorization: Bearer <JWT>`, signed by this
/// installation, not expired, not revoked, and within its rate limit
/// (`limits.token_per_minute`; 429 otherwise).
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub token_id: String,
    pub scopes: Vec<Scope>,
    /// The caller's tenant configuration (cached).
    pub config: Arc<TenantConfig>,
}

impl Caller {
    /// 403 unless the token carries `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this token lacks the scope '{scope}'")))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req.headers().get(header::AUTHORIZATION).map(|h| h.to_str().map(str::to_owned));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(std::io::Error::other("no app state")))?;
            let token = match header {
                None => return Err(ApiError::Unauthorized("send Authorization: Bearer <token>".into())),
                Some(Err(_)) => return Err(ApiError::Unauthorized("the Authorization header is not ASCII".into())),
                Some(Ok(h)) => match h.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                        token.trim().to_owned()
                    }
                    _ => {
                        return Err(ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()))
                    }
                },
            };
            let mut validation = Validation::new(Algorithm::HS256);
            validation.required_spec_claims.clear();
            validation.leeway = 0;
            let claims = jsonwebtoken::decode::<Claims>(&token, &state.keys.decoding, &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        ApiError::Unauthorized("the token has expired".into())
                    }
                    _ => ApiError::Unauthorized("the token is not valid for this installation".into()),
                })?
                .claims;
            let mut config = state.tenant_config(&claims.tenant).await?;
            if config.as_ref().is_some_and(|c| !c.tokens.contains_key(&claims.jti)) {
                // Signed by this installation but unknown here: issued since the tenant was
                // cached (by the CLI, say). Read the tenant again once.
                let (directory, id) = (state.directory.clone(), claims.tenant.clone());
                config = web::block(move || directory.reload(&id)).await??;
            }
            let record = config.as_ref().and_then(|c| c.tokens.get(&claims.jti));
            match (record, config.clone()) {
                (Some(t), _) if t.revoked_at.is_some() => {
                    Err(ApiError::Unauthorized("the token has been revoked".into()))
                }
                (Some(t), _) if t.expires_at.is_some_and(|e| utc(e) <= Utc::now()) => {
                    Err(ApiError::Unauthorized("the token has expired".into()))
                }
                (Some(t), Some(config)) if t.tenant_id == claims.tenant => {
                    state.limits.token(&t.id)?;
                    Ok(Caller { tenant_id: t.tenant_id.clone(), token_id: t.id.clone(), scopes: claims.scopes, config })
                }
                _ => Err(ApiError::Unauthorized("the token is not valid for this installation".into())),
            }
        })
    }
}

/// The origin allowed for this response, set by [`PublicSite`] and turned into CORS headers
/// by the middleware in `startup`.
#[derive(Debug, Clone)]
pub struct CorsOrigin(pub String);

/// A public request for the site in the path (`{site_key}`), with its tenant.
///
/// The `Origin` header, when present, must be one of the site's origins (403 otherwise);
/// write requests must carry it. Browsers always send it on cross-origin requests and on
/// POST (Fetch standard, "append a request `Origin` header"). Counted against
/// `limits.public_per_minute` per site and client address (429 otherwise).
#[derive(Debug, Clone)]
pub struct PublicSite {
    /// The site as cached, with its origins and purposes parsed.
    pub entry: Arc<SiteEntry>,
    /// Its tenant's configuration (cached).
    pub config: Arc<TenantConfig>,
}

impl FromRequest for PublicSite {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::internal(std::io::Error::other("no app state")))?;
            let site_key = req.match_info().get("site_key").unwrap_or_default().to_owned();
            let origin = req.headers().get(header::ORIGIN).map(|o| o.to_str().unwrap_or("<non-ASCII>").to_owned());
            let Some((entry, config)) = state.site(&site_key).await? else {
                return Err(ApiError::NotFound(format!(
                    "no site has the key '{}'",
                    crate::domain::truncate(&site_key)
                )));
            };
            let public = PublicSite { entry, config };
            match origin {
                Some(o) if public.entry.allows_origin(&o) => {
                    req.extensions_mut().insert(CorsOrigin(o));
                }
                Some(o) => {
                    return Err(ApiError::Forbidden(format!("the origin '{o}' is not one of this site's origins")));
                }
                None if req.method() != actix_web::http::Method::GET => {
                    return Err(ApiError::Forbidden("send the Origin header of one of this site's origins".into()));
                }
                None => {}
            }
            // After the origin is known, so that a refusal carries CORS headers.
            state.limits.public(&req, Some(&public.entry.site.id))?;
            Ok(public)
        })
    }
}
