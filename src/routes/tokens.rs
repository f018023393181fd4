//! `GET/POST /v1/tokens`, `DELETE /v1/tokens/{id}`: management tokens over the API (the console
//! issues and revokes narrower tokens with them), and `POST /v1/console/sign-in`.

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::service::tokens::{self, IssueToken, SignIn, TokenList, TokenResponse};
use crate::state::AppState;
use actix_web::{delete, get, post, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_tokens).service(issue_token).service(revoke_token).service(console_sign_in);
}

/// The tenant's management tokens, newest first (never the JWTs). Requires `admin`.
#[utoipa::path(
    tag = "tokens",
    security(("bearer" = [])),
    responses((status = 200, description = "The tokens", body = TokenList))
)]
#[get("/v1/tokens")]
pub async fn list_tokens(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    Ok(HttpResponse::Ok().json(tokens::list(&state, &caller.tenant_id, &caller.token_id).await?))
}

/// Issues a token of the caller's tenant with the given scopes, label and lifetime; the JWT is
/// in `token`, shown only in this response. Requires `admin`.
#[utoipa::path(
    tag = "tokens",
    security(("bearer" = [])),
    request_body = IssueToken,
    responses((status = 201, description = "Issued", body = TokenResponse))
)]
#[post("/v1/tokens")]
pub async fn issue_token(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body, _): JsonBody<IssueToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    Ok(HttpResponse::Created().json(tokens::issue(&state, &caller.tenant_id, &caller.token_id, body).await?))
}

/// Revokes a token: refused at once by this instance and within 250 ms by every other (the
/// tenant directory's revocation cache). Revoking the caller's own token is allowed. Requires
/// `admin`.
#[utoipa::path(
    tag = "tokens",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token of this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    tokens::revoke(&state, &caller.tenant_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Exchanges a one-time console sign-in code (printed by `serve --demo` as
/// `/console#code=<code>`, valid 10 minutes) for an admin token that lasts 12 hours (label
/// `console`); the code cannot be used again.
#[utoipa::path(
    tag = "tokens",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in: the token is in `token`", body = TokenResponse),
        (status = 401, description = "Unknown, used or expired code", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/console/sign-in")]
pub async fn console_sign_in(
    state: web::Data<AppState>,
    JsonBody(body, _): JsonBody<SignIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tokens::sign_in(&state, body).await?))
}
