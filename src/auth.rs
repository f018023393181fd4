//! Authentication: management tokens (JWT bearer) and public site requests (site key + Origin).

use crate::db::models::instance_key::InstanceKey;
use crate::db::models::tenant::Tenant;
use crate::db::models::token::ApiToken;
use crate::db::models::{naive, new_id, utc};
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::secrets::{SecretBox, SecretsError};
use crate::service::directory::{SiteEntry, TenantConfig};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
    /// Not before, seconds since the Unix epoch: the token is refused until then (RFC 7519
    /// §4.1.5; no leeway, as for `exp`). Tokens issued here carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token id, used to revoke it.
    pub jti: String,
}

/// The name of the first HS256 key of management tokens in `instance_keys`; keys added by
/// `consentry tokens rotate-key` are named `management_token_hs256:<kid>`.
pub const TOKEN_KEY: &str = "management_token_hs256";

/// The `kid` of the first key ([`TOKEN_KEY`]); tokens without a `kid` (issued before key
/// rotation existed) are checked with it.
pub const FIRST_KID: &str = "initial";

/// How often an instance re-reads the keys when a token names a `kid` it does not know (a key
/// added by `rotate-key` since it started): at most once per this.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The HS256 keys of management tokens, from `instance_keys` (shared by all instances): the
/// newest signs (its `kid` in the JWT header), every one verifies the tokens that name it, so
/// tokens issued before a rotation stay valid until they expire or are revoked.
pub struct ManagementKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: RwLock<HashMap<String, DecodingKey>>,
    last_reload: Mutex<Option<Instant>>,
    /// Tokens whose signature verified, by the SHA-256 of the whole token (see
    /// [`ManagementKeys::verified`]).
    verified: RwLock<HashMap<[u8; 32], Arc<Claims>>>,
}

/// The most verified tokens an instance remembers; when full it starts over. Only tokens with a
/// valid signature get in, so no caller can fill it with forgeries.
const VERIFIED_TOKENS: usize = 4_096;

fn kid_of(name: &str) -> &str {
    name.strip_prefix(TOKEN_KEY).and_then(|rest| rest.strip_prefix(':')).unwrap_or(FIRST_KID)
}

fn read_keys(conn: &mut AnyConnection, secrets: &SecretBox) -> Result<Vec<(String, String)>, SecretsError> {
    InstanceKey::get_or_create(conn, TOKEN_KEY, secrets)?;
    let keys = InstanceKey::family(conn, TOKEN_KEY, secrets)?;
    Ok(keys.into_iter().map(|(name, secret, _)| (kid_of(&name).to_owned(), secret)).collect())
}

impl ManagementKeys {
    /// Loads every key (creating the first on first start); the newest signs.
    pub fn load(conn: &mut AnyConnection, secrets: &SecretBox) -> Result<Self, SecretsError> {
        let keys = read_keys(conn, secrets)?;
        let (kid, secret) = keys.last().cloned().ok_or(diesel::result::Error::NotFound)?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()).map_err(bad_key)?,
            kid,
            decoding: RwLock::new(decoding_keys(keys)?),
            last_reload: Mutex::new(None),
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// The claims of `token` when this instance verified its signature before and its times
    /// need no new look: `exp` more than a second away and `nbf` more than a second past, by
    /// `now` (seconds since the epoch). Otherwise `None`, and the caller verifies it in full
    /// (which gives the precise error at the edges). Verifying a management token's signature and
    /// decoding its parts was a tenth of the HTTP threads' CPU on checks; the token's
    /// revocation and stored scopes are still read on every request.
    fn verified(&self, token: &str, now: i64) -> Option<Arc<Claims>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = self.verified.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned()?;
        let fresh = claims.exp.is_none_or(|exp| now < exp - 1) && claims.nbf.is_none_or(|nbf| now > nbf + 1);
        fresh.then_some(claims)
    }

    /// Remembers that `token` verified with `claims` (see [`ManagementKeys::verified`]).
    fn remember(&self, token: &str, claims: Arc<Claims>) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(key, claims);
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with the newest key, naming it in the header's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// The key that verifies tokens naming `kid` (`None` in the header: the first key).
    pub fn decoding(&self, kid: Option<&str>) -> Option<DecodingKey> {
        self.decoding.read().unwrap_or_else(|e| e.into_inner()).get(kid.unwrap_or(FIRST_KID)).cloned()
    }

    /// Whether an unknown `kid` may be looked up in the database now (at most once per
    /// [`KEY_RELOAD_INTERVAL`], so forged `kid`s cannot make every request read it).
    fn may_reload(&self) -> bool {
        let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < KEY_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Reads the keys again (a key added by `rotate-key` elsewhere); blocking.
    fn reload(&self, conn: &mut AnyConnection, secrets: &SecretBox) -> Result<(), SecretsError> {
        let keys = decoding_keys(read_keys(conn, secrets)?)?;
        *self.decoding.write().unwrap_or_else(|e| e.into_inner()) = keys;
        // A key gone from the database verifies nothing any more, remembered tokens included.
        self.verified.write().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    /// `consentry tokens rotate-key`: adds a new signing key; returns its `kid`. The others
    /// keep verifying the tokens they signed. Running instances verify tokens of the new key at
    /// once, and sign with it after a restart.
    pub fn rotate(conn: &mut AnyConnection, secrets: &SecretBox) -> Result<String, SecretsError> {
        let kid = new_id();
        InstanceKey::insert_new(conn, &format!("{TOKEN_KEY}:{kid}"), secrets)?;
        Ok(kid)
    }
}

fn bad_key(e: jsonwebtoken::errors::Error) -> SecretsError {
    SecretsError::BadKey(format!("a management token key: {e}"))
}

fn decoding_keys(keys: Vec<(String, String)>) -> Result<HashMap<String, DecodingKey>, SecretsError> {
    keys.into_iter()
        .map(|(kid, secret)| Ok((kid, DecodingKey::from_secret(secret.as_bytes()).map_err(bad_key)?)))
        .collect()
}

/// Issues a token for `tenant` and records it (so that it can be revoked).
/// Returns `(token id, JWT)`. `expires_at` is kept to the whole second, the JWT's `exp`: the
/// stored expiry and the signed one are the same instant.
pub fn issue_token(
    conn: &mut AnyConnection,
    keys: &ManagementKeys,
    tenant: &Tenant,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    label: Option<&str>,
) -> Result<(String, String), ApiError> {
    let now = Utc::now();
    let expires_at = expires_at.map(|t| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t));
    let claims = Claims {
        sub: format!("tenant:{}", tenant.slug),
        tenant: tenant.id.clone(),
        scopes: scopes.to_vec(),
        iat: now.timestamp(),
        exp: expires_at.map(|t| t.timestamp()),
        nbf: None,
        jti: new_id(),
    };
    let jwt = keys.sign(&claims).map_err(ApiError::internal)?;
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
/// installation (with the key its header's `kid` names), not before its `nbf`, not expired,
/// not revoked, and within its rate limit (`limits.token_per_minute`; 429 otherwise). Its
/// scopes are those of the stored token record, whatever the claims say.
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
        // One Authorization header: with two (say another tenant's token, then this one's), which
        // one counts would be a guess that a proxy could make differently (RFC 6750 §3.1,
        // invalid_request: 400).
        let header =
            crate::extract::single_header(req, "Authorization").map(|h| h.map(|h| h.to_str().map(str::to_owned)));
        Box::pin(async move {
            let header = header?;
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
            let now = Utc::now().timestamp();
            let claims = match state.keys.verified(&token, now) {
                Some(claims) => claims,
                None => {
                    let claims = Arc::new(verify_signature(&state, &token).await?);
                    state.keys.remember(&token, claims.clone());
                    claims
                }
            };
            // RFC 7519 §4.1.4: not accepted on or after `exp`. The JWT library refuses only after
            // it (`exp < now`, in whole seconds), so a token was accepted through the second of
            // its `exp`.
            if claims.exp.is_some_and(|exp| now >= exp) {
                return Err(ApiError::Unauthorized("the token has expired".into()));
            }
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
                    // The stored scopes: the claims' are what was signed, and a holder of the key
                    // could sign wider ones.
                    let scopes = t
                        .scopes
                        .split_whitespace()
                        .map(|s| {
                            Scope::parse(s).map_err(|_| ApiError::internal(crate::db::models::corrupt("scope", s)))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    state.limits.token(&t.id)?;
                    Ok(Caller { tenant_id: t.tenant_id.clone(), token_id: t.id.clone(), scopes, config })
                }
                _ => Err(ApiError::Unauthorized("the token is not valid for this installation".into())),
            }
        })
    }
}

/// Verifies a management token's signature (HS256, with the key its `kid` names) and its `exp`
/// and `nbf` (no leeway); returns its claims. Errors: 401 with the reason.
async fn verify_signature(state: &web::Data<AppState>, token: &str) -> Result<Claims, ApiError> {
    let invalid = || ApiError::Unauthorized("the token is not valid for this installation".into());
    let kid = jsonwebtoken::decode_header(token).map_err(|_| invalid())?.kid;
    let key = match state.keys.decoding(kid.as_deref()) {
        Some(key) => key,
        // A key added since this instance loaded them (`tokens rotate-key`)?
        None if state.keys.may_reload() => {
            let (keys, pool, secrets) = (state.keys.clone(), state.pool.clone(), state.secrets.clone());
            web::block(move || -> Result<(), ApiError> {
                pool.run(|conn| {
                    keys.reload(conn, &secrets).map_err(|e| match e {
                        SecretsError::Db(e) => ApiError::from(e),
                        other => ApiError::internal(other),
                    })
                })
            })
            .await??;
            state.keys.decoding(kid.as_deref()).ok_or_else(invalid)?
        }
        None => return Err(invalid()),
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    validation.validate_nbf = true;
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => ApiError::Unauthorized("the token has expired".into()),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                ApiError::Unauthorized("the token is not valid yet (nbf, RFC 7519 §4.1.5)".into())
            }
            _ => invalid(),
        })
        .map(|data| data.claims)
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
            // One Origin (RFC 6454 §7.3): with two, which one was checked would be a guess.
            let origin =
                crate::extract::single_header(&req, "Origin")?.map(|o| o.to_str().unwrap_or("<non-ASCII>").to_owned());
            let Some((entry, config)) = state.site(&site_key).await? else {
                return Err(ApiError::NotFound(format!("no site has the key '{}'", crate::domain::shown(&site_key))));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ManagementKeys {
        ManagementKeys {
            kid: FIRST_KID.into(),
            encoding: EncodingKey::from_secret(b"a key").unwrap(),
            decoding: RwLock::new(HashMap::new()),
            last_reload: Mutex::new(None),
            verified: RwLock::new(HashMap::new()),
        }
    }

    fn claims(jti: &str, exp: Option<i64>, nbf: Option<i64>) -> Arc<Claims> {
        Arc::new(Claims {
            sub: "tenant:acme".into(),
            tenant: "t".into(),
            scopes: vec![Scope::ConsentsCheck],
            iat: 0,
            exp,
            nbf,
            jti: jti.into(),
        })
    }

    fn jti(keys: &ManagementKeys, token: &str, now: i64) -> Option<String> {
        keys.verified(token, now).map(|c| c.jti.clone())
    }

    #[test]
    fn a_verified_token_is_remembered_until_a_second_before_its_exp() {
        let keys = keys();
        assert_eq!(jti(&keys, "a.b.c", 500), None, "never verified");
        keys.remember("a.b.c", claims("j1", Some(1_000), None));
        assert_eq!(jti(&keys, "a.b.c", 500), Some("j1".into()));
        assert_eq!(jti(&keys, "a.b.c", 998), Some("j1".into()));
        // From a second before `exp` on, the token is verified in full again, and refused from
        // `exp` on (RFC 7519 §4.1.4: not accepted on or after it) with the precise error.
        assert_eq!(jti(&keys, "a.b.c", 999), None);
        assert_eq!(jti(&keys, "a.b.c", 1_000), None);
        // Another token, even one differing in a character, is not the remembered one.
        assert_eq!(jti(&keys, "a.b.d", 500), None);
    }

    #[test]
    fn a_token_with_nbf_is_verified_in_full_until_a_second_after_it() {
        // RFC 7519 §4.1.5: not accepted before `nbf`.
        let keys = keys();
        keys.remember("x.y.z", claims("j2", None, Some(1_000)));
        assert_eq!(jti(&keys, "x.y.z", 990), None);
        assert_eq!(jti(&keys, "x.y.z", 1_001), None);
        assert_eq!(jti(&keys, "x.y.z", 1_002), Some("j2".into()));
        keys.remember("none", claims("j3", None, None));
        assert_eq!(jti(&keys, "none", i64::MAX), Some("j3".into()), "no exp, no nbf: remembered");
    }

    #[test]
    fn the_memory_of_verified_tokens_starts_over_when_full() {
        let keys = keys();
        for n in 0..VERIFIED_TOKENS {
            keys.remember(&format!("token-{n}"), claims(&n.to_string(), None, None));
        }
        assert_eq!(jti(&keys, "token-0", 0), Some("0".into()));
        keys.remember("one more", claims("last", None, None));
        assert_eq!(jti(&keys, "token-0", 0), None, "forgotten");
        assert_eq!(jti(&keys, "one more", 0), Some("last".into()));
        assert_eq!(keys.verified.read().unwrap().len(), 1);
    }
}
