//! Management tokens over the API (issue 13): list, issue, revoke; and the console's one-time
//! sign-in codes, exchanged for a short-lived admin token.
//!
//! A revocation takes effect through the tenant directory: the `api_tokens` update bumps the
//! tenant's configuration version (a trigger), this instance drops its cached copy at once and
//! every other instance within `directory::POLL_INTERVAL` (250 ms).

use crate::auth::{issue_token, Scope};
use crate::db::backend::write_transaction;
use crate::db::models::tenant::Tenant;
use crate::db::models::token::ApiToken;
use crate::db::models::{naive, utc};
use crate::db::schema::console_sign_in_codes;
use crate::db::AnyConnection;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// A token as listed: never the JWT itself (shown once, when issued).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The token id (the JWT's `jti`): `DELETE /v1/tokens/{id}` revokes it.
    pub id: String,
    pub scopes: Vec<Scope>,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `null`: does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub status: TokenStatus,
    /// Whether this is the token of the request.
    pub current: bool,
    /// The JWT: only in the response that issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Newest first, revoked and expired ones included.
    pub tokens: Vec<TokenResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scopes": ["consents:check"], "label": "mailer", "ttl": "90d"}))]
pub struct IssueToken {
    /// At least one of `admin`, `consents:read`, `consents:write`, `consents:check`.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// What it is for (1 to 100 characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub label: Option<String>,
    /// Lifetime like the CLI's `--ttl`: `30d`, `12h`, `90days` (1 s to 10 years); absent: does
    /// not expire (revoke it instead).
    #[serde(default)]
    #[schema(max_length = 40, pattern = "^[0-9]{1,10} ?[a-z]{1,7}( [0-9]{1,10} ?[a-z]{1,7})*$")]
    pub ttl: Option<String>,
}

/// The longest lifetime a token may be given.
const MAX_TTL: Duration = Duration::days(3653);

fn render(t: &ApiToken, current: &str, now: DateTime<Utc>, jwt: Option<String>) -> Result<TokenResponse, ApiError> {
    let scopes = t
        .scopes
        .split_whitespace()
        .map(|s| Scope::parse(s).map_err(|_| ApiError::internal(crate::db::models::corrupt("scope", s))))
        .collect::<Result<Vec<_>, _>>()?;
    let status = match (t.revoked_at, t.expires_at) {
        (Some(_), _) => TokenStatus::Revoked,
        (None, Some(e)) if utc(e) <= now => TokenStatus::Expired,
        _ => TokenStatus::Active,
    };
    Ok(TokenResponse {
        id: t.id.clone(),
        scopes,
        label: t.label.clone(),
        created_at: utc(t.created_at),
        expires_at: t.expires_at.map(utc),
        revoked_at: t.revoked_at.map(utc),
        status,
        current: t.id == current,
        token: jwt,
    })
}

/// The tenant's tokens, newest first.
pub async fn list(state: &AppState, tenant_id: &str, current: &str) -> Result<TokenList, ApiError> {
    let tenant = tenant_id.to_owned();
    let rows = state.db(move |conn| Ok(ApiToken::list(conn, &tenant)?)).await?;
    let now = super::now();
    Ok(TokenList { tokens: rows.iter().map(|t| render(t, current, now, None)).collect::<Result<_, _>>()? })
}

/// Issues a token of the caller's tenant. Errors (400): no scope, a label empty or longer than
/// 100 characters, a malformed or out-of-range `ttl`.
pub async fn issue(
    state: &AppState,
    tenant_id: &str,
    current: &str,
    body: IssueToken,
) -> Result<TokenResponse, ApiError> {
    let mut scopes = body.scopes;
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "name at least one scope"));
    }
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    let label = body.label.map(|l| l.trim().to_owned());
    if label.as_ref().is_some_and(|l| l.is_empty() || l.chars().count() > 100 || l.chars().any(char::is_control)) {
        return Err(ApiError::invalid("label", "must be 1 to 100 characters, without control characters"));
    }
    let now = super::now();
    let expires_at = match body.ttl.as_deref() {
        None => None,
        Some(raw) => {
            let d = humantime::parse_duration(raw.trim())
                .map_err(|e| ApiError::invalid("ttl", format!("'{}': {e}", crate::domain::shown(raw))))?;
            let d = Duration::from_std(d).ok().filter(|d| *d >= Duration::seconds(1) && *d <= MAX_TTL);
            let d = d.ok_or_else(|| ApiError::invalid("ttl", "must be 1 second to 10 years"))?;
            Some(now + d)
        }
    };
    let (keys, tenant) = (state.keys.clone(), tenant_id.to_owned());
    let (id, jwt) = state
        .db(move |conn| {
            let tenant = Tenant::find(conn, &tenant)?.ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
            let (id, jwt) = issue_token(conn, &keys, &tenant, &scopes, expires_at, label.as_deref())?;
            Ok((id, jwt))
        })
        .await?;
    state.directory.invalidate(tenant_id);
    let (tenant, token_id) = (tenant_id.to_owned(), id);
    let row = state
        .db(move |conn| {
            ApiToken::find(conn, &tenant, &token_id)?.ok_or_else(|| ApiError::NotFound("no such token".into()))
        })
        .await?;
    render(&row, current, now, Some(jwt))
}

/// Revokes a token of the tenant: refused from then on by this instance at once and by every
/// other within 250 ms. Errors: no such token of this tenant (404), already revoked (409).
pub async fn revoke(state: &AppState, tenant_id: &str, id: &str) -> Result<(), ApiError> {
    let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
    let now = naive(super::now());
    state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let Some(token) = ApiToken::find(conn, &tenant, &id)? else {
                    return Err(ApiError::NotFound(format!("no token '{}'", crate::domain::shown(&id))));
                };
                if token.revoked_at.is_some() {
                    return Err(ApiError::Conflict("the token is already revoked".into()));
                }
                ApiToken::revoke(conn, &id, now)?;
                Ok(())
            })
        })
        .await?;
    state.directory.invalidate(tenant_id);
    Ok(())
}

/// How long a console sign-in code may be used.
pub const SIGN_IN_CODE_TTL: Duration = Duration::minutes(10);

/// How long the token a sign-in code is exchanged for lasts.
pub const CONSOLE_SESSION_TTL: Duration = Duration::hours(12);

fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// Creates a one-time sign-in code for the tenant's console (valid [`SIGN_IN_CODE_TTL`]);
/// only its SHA-256 is stored. Returns the code (32 random bytes, base64url).
pub fn create_sign_in_code(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<String> {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    diesel::insert_into(console_sign_in_codes::table)
        .values((
            console_sign_in_codes::code_sha256.eq(code_hash(&code)),
            console_sign_in_codes::tenant_id.eq(tenant_id),
            console_sign_in_codes::expires_at.eq(naive(Utc::now() + SIGN_IN_CODE_TTL)),
        ))
        .execute(conn)?;
    Ok(code)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The code from the console address `serve --demo` prints (`/console#code=<code>`).
    #[schema(max_length = 100)]
    pub code: String,
}

/// Exchanges a one-time sign-in code for an admin token of its tenant that lasts
/// [`CONSOLE_SESSION_TTL`] (label `console`). Errors: unknown, used or expired code (401).
pub async fn sign_in(state: &AppState, body: SignIn) -> Result<TokenResponse, ApiError> {
    let refused = || ApiError::Unauthorized("the sign-in code is unknown, used or expired".into());
    if body.code.is_empty() || body.code.len() > 100 {
        return Err(refused());
    }
    let (hash, keys) = (code_hash(&body.code), state.keys.clone());
    let now = super::now();
    let (id, jwt, tenant_id) = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let claimed = diesel::update(
                    console_sign_in_codes::table
                        .filter(console_sign_in_codes::code_sha256.eq(&hash))
                        .filter(console_sign_in_codes::used_at.is_null())
                        .filter(console_sign_in_codes::expires_at.gt(naive(now))),
                )
                .set(console_sign_in_codes::used_at.eq(Some(naive(now))))
                .returning(console_sign_in_codes::tenant_id)
                .get_results::<String>(conn)?;
                let Some(tenant_id) = claimed.into_iter().next() else { return Err(refused()) };
                let tenant = Tenant::find(conn, &tenant_id)?.ok_or_else(refused)?;
                let (id, jwt) = issue_token(
                    conn,
                    &keys,
                    &tenant,
                    &[Scope::Admin],
                    Some(now + CONSOLE_SESSION_TTL),
                    Some("console"),
                )?;
                Ok((id, jwt, tenant_id))
            })
        })
        .await?;
    state.directory.invalidate(&tenant_id);
    let row = state
        .db(move |conn| {
            ApiToken::find(conn, &tenant_id, &id)?.ok_or_else(|| ApiError::NotFound("no such token".into()))
        })
        .await?;
    render(&row, &row.id, now, Some(jwt))
}
