//! One-click unsubscribe (RFC 8058): `POST /v1/unsubscribe-links` makes a signed,
//! purpose-bound URL for the `List-Unsubscribe` header; `POST` to it with
//! `List-Unsubscribe=One-Click` records the refusal; `GET` only shows a confirmation page.

use crate::auth::{Caller, Scope};
use crate::domain::{ConsentSource, SubjectIdentifier};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::ledger::{Finish, RecordRequest};
use crate::routes::consents::load_tenant;
use crate::routes::now;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_unsubscribe_link).service(show_unsubscribe).service(one_click_unsubscribe);
}

/// What an unsubscribe link carries: the tenant, the subject's stored identifier (never an
/// address in the clear) and the purpose, signed with the installation's unsubscribe key.
#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    typ: String,
    tid: String,
    sub: String,
    pur: String,
    iat: i64,
}

const LINK_TYPE: &str = "consentry-unsubscribe";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "email:ada@example.com", "purpose": "marketing"}))]
pub struct CreateUnsubscribeLink {
    #[schema(value_type = crate::domain::SubjectIdentifier)]
    pub subject: String,
    #[schema(value_type = crate::domain::PurposeKey)]
    pub purpose: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnsubscribeLink {
    /// For `List-Unsubscribe: <url>` together with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
    /// (RFC 8058 §3.1). Does not expire; bound to one subject and one purpose.
    pub url: String,
    pub purpose: String,
}

/// Makes a one-click unsubscribe URL for a subject and a purpose. Requires `consents:write`.
#[utoipa::path(
    tag = "unsubscribe",
    security(("bearer" = [])),
    request_body = CreateUnsubscribeLink,
    responses((status = 201, description = "The link", body = UnsubscribeLink))
)]
#[post("/v1/unsubscribe-links")]
pub async fn create_unsubscribe_link(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    JsonBody(body, _): JsonBody<CreateUnsubscribeLink>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let subject = SubjectIdentifier::parse(&body.subject).map_err(|e| ApiError::invalid("subject", e.to_string()))?;
    let tenant = load_tenant(&state, &caller).await?;
    let purpose = body.purpose.clone();
    let model = caller.config.purposes.iter().find(|p| p.key.as_str() == purpose).map(|p| p.consent_model);
    match model {
        None => {
            let detail = format!("no purpose '{}' is defined", crate::domain::shown(&body.purpose));
            return Err(ApiError::invalid("purpose", detail));
        }
        Some(crate::domain::ConsentModel::NoticeOnly) => {
            let detail = format!("'{}' is notice_only: it cannot be refused, so it has no unsubscribe", body.purpose);
            return Err(ApiError::invalid("purpose", detail));
        }
        Some(_) => {}
    }
    let claims = LinkClaims {
        typ: LINK_TYPE.into(),
        tid: tenant.id.clone(),
        sub: subject.stored_form(&tenant.subject_key()),
        pur: body.purpose.clone(),
        iat: now().timestamp(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &state.unsubscribe_keys.encoding)
        .map_err(ApiError::internal)?;
    let base = state.public_url.clone().unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    let url = format!("{base}/v1/unsubscribe/{token}");
    Ok(HttpResponse::Created().json(UnsubscribeLink { url, purpose: body.purpose }))
}

fn verify(state: &AppState, token: &str) -> Result<LinkClaims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<LinkClaims>(token, &state.unsubscribe_keys.decoding, &validation)
        .map_err(|_| ApiError::NotFound("this unsubscribe link is not valid".into()))?
        .claims;
    if claims.typ != LINK_TYPE {
        return Err(ApiError::NotFound("this unsubscribe link is not valid".into()));
    }
    Ok(claims)
}

/// A confirmation page with a button that unsubscribes. Changes nothing by itself: mail
/// scanners fetch links, and a GET must not unsubscribe anyone (RFC 8058 §3.2).
#[utoipa::path(
    tag = "unsubscribe",
    params(("token" = String, Path, description = "The token of the link")),
    responses(
        (status = 200, description = "The confirmation page", content_type = "text/html"),
        (status = 404, description = "Not a valid link", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/unsubscribe/{token}")]
pub async fn show_unsubscribe(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.limits.public(&req, None)?;
    let claims = verify(&state, &token)?;
    let title = state
        .tenant_config(&claims.tid)
        .await?
        .and_then(|c| c.purposes.iter().find(|p| p.key.as_str() == claims.pur).map(|p| p.title.clone()))
        .unwrap_or_else(|| claims.pur.clone());
    let title = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Unsubscribe</title><body style=\"font:16px system-ui;max-width:32rem;margin:3rem auto\">\
         <h1>Unsubscribe</h1><p>Stop receiving: <strong>{title}</strong>?</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form></body></html>"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(page))
}

/// One-click unsubscribe (RFC 8058 §3.1): the body must be `List-Unsubscribe=One-Click`
/// (form-encoded or multipart). Records a refusal of the link's purpose, source
/// `one_click_unsubscribe`, and answers 200 with no redirect. Needs no cookie or token beyond
/// the link itself.
#[utoipa::path(
    tag = "unsubscribe",
    params(("token" = String, Path, description = "The token of the link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click`"),
    responses(
        (status = 200, description = "Unsubscribed (committed)", content_type = "text/plain"),
        (status = 400, description = "The body is not List-Unsubscribe=One-Click", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a valid link, or the purpose no longer exists", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/unsubscribe/{token}")]
pub async fn one_click_unsubscribe(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.limits.public(&req, None)?;
    let claims = verify(&state, &token)?;
    let text = String::from_utf8_lossy(&body);
    let one_click = text.contains("List-Unsubscribe=One-Click")
        || (text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click"));
    if !one_click {
        return Err(ApiError::invalid("body", "must be List-Unsubscribe=One-Click (RFC 8058 §3.1)"));
    }
    let config = state
        .tenant_config(&claims.tid)
        .await?
        .ok_or_else(|| ApiError::NotFound("this unsubscribe link is not valid".into()))?;
    let rules = AppState::rules(&config, None)?;
    if rules.purpose(&claims.pur).is_none() {
        return Err(ApiError::NotFound(format!("the purpose '{}' no longer exists", claims.pur)));
    }
    let choices: BTreeMap<String, bool> = [(claims.pur.clone(), false)].into_iter().collect();
    let record = RecordRequest::new(&claims.sub, &choices, ConsentSource::OneClickUnsubscribe);
    crate::service::consents::record(&state, rules, &record, 200, Finish::empty()).await?;
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("You are unsubscribed.\n"))
}
