//! `POST /v1/subjects/{subject}/links`: one person, several identifiers.

use crate::auth::{Caller, Scope};
use crate::domain::SubjectIdentifier;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::ledger::{self, Linked};
use crate::routes::consents::load_tenant;
use crate::state::AppState;
use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(link_subject);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "user:42"}))]
pub struct LinkSubject {
    /// Another identifier of the same person.
    #[schema(value_type = crate::domain::SubjectIdentifier)]
    pub subject: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkResult {
    pub subject: String,
    pub linked: String,
    /// `already` (one person already), `added` (a new identifier of the person) or `merged`
    /// (two histories became one; per purpose the newest decision wins, and an older grant
    /// never undoes an opt-out from GPC or an opt-out request).
    pub outcome: String,
}

/// Links another identifier to a data subject: afterwards every identifier reads the same
/// state, and an opt-out recorded under one applies to the person (11 CCR §7025(c)(1)).
/// Requires `consents:write`.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(("subject" = crate::domain::SubjectIdentifier, Path, description = "The person, by one identifier")),
    request_body = LinkSubject,
    responses(
        (status = 200, description = "Linked", body = LinkResult),
        (status = 400, description = "Malformed identifiers", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/subjects/{subject}/links")]
pub async fn link_subject(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
    JsonBody(body, _): JsonBody<LinkSubject>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let primary = SubjectIdentifier::parse(&subject).map_err(|e| ApiError::invalid("subject", e.to_string()))?;
    let other =
        SubjectIdentifier::parse(&body.subject).map_err(|e| ApiError::invalid("body.subject", e.to_string()))?;
    let tenant = load_tenant(&state, &caller).await?;
    let (p, o) = (primary.clone(), other.clone());
    let rules = AppState::rules(&caller.config, None)?;
    let outcome = state
        .db(move |conn| {
            let key = tenant.subject_key();
            Ok(ledger::link_identifiers(conn, &rules, &p.stored_form(&key), &o.stored_form(&key))?)
        })
        .await?;
    let outcome = match outcome {
        Linked::Already => "already",
        Linked::Added => "added",
        Linked::Merged => "merged",
    };
    Ok(HttpResponse::Ok().json(LinkResult {
        subject: primary.to_string(),
        linked: other.to_string(),
        outcome: outcome.into(),
    }))
}
