//! CCPA requests to opt out of sale/sharing: `POST /v1/opt-outs`, `GET /v1/opt-outs`,
//! `POST /v1/opt-outs/{id}/complete`.

use crate::auth::{Caller, Scope};
use crate::db::models::opt_out::{OptOutFilter, OptOutRequest};
use crate::db::models::{naive, new_id, utc};
use crate::domain::deadline::OPT_OUT_BUSINESS_DAYS;
use crate::domain::webhook::WebhookEventType;
use crate::domain::{ConsentSource, SubjectIdentifier};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::ledger::{outbox, Finish, Outcome, RecordRequest, TenantRules};
use crate::routes::consents::idempotency_claim;
use crate::routes::now;
use crate::state::AppState;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_opt_out).service(list_opt_outs).service(complete_opt_out);
}

/// How the request reached the business (11 CCR §7026(a): at least two methods, one of them
/// the "Do Not Sell or Share" link or an alternative opt-out link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptOutChannel {
    WebForm,
    Phone,
    Email,
    /// Submitted by an authorized agent (11 CCR §7026(j)).
    AuthorizedAgent,
}

/// What the request opts out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptOutScope {
    /// The sale and the sharing of personal information (Cal. Civ. Code §1798.120): every
    /// purpose with `gpc_applies`.
    SaleSharing,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "email:ada@example.com", "channel": "phone", "scope": "sale_sharing"}))]
pub struct CreateOptOut {
    #[schema(value_type = crate::domain::SubjectIdentifier)]
    pub subject: String,
    pub channel: OptOutChannel,
    pub scope: OptOutScope,
    /// When the business received the request (RFC 3339), if earlier than now; not in the future.
    #[serde(default)]
    #[schema(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub received_at: Option<DateTime<Utc>>,
}

/// `open` (within its deadline), `overdue` (open past `due_at`) or `completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptOutStatus {
    Open,
    Overdue,
    Completed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutResponse {
    pub id: String,
    /// The pseudonymous id of the data subject.
    pub subject_id: String,
    pub channel: OptOutChannel,
    pub scope: OptOutScope,
    pub received_at: DateTime<Utc>,
    /// `received_at` + 15 business days (11 CCR §7026(f)), weekends and configured holidays skipped.
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub status: OptOutStatus,
    /// The denials this request recorded (source `opt_out_request`), one per sale/sharing purpose
    /// that was not already denied. Only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutList {
    /// Oldest first.
    pub opt_outs: Vec<OptOutResponse>,
}

fn response(
    r: &OptOutRequest,
    now: DateTime<Utc>,
    event_ids: Option<Vec<String>>,
) -> Result<OptOutResponse, diesel::result::Error> {
    let corrupt = crate::db::models::corrupt;
    let channel: OptOutChannel = serde_json::from_value(serde_json::Value::from(r.channel.as_str()))
        .map_err(|_| corrupt("channel", &r.channel))?;
    let scope: OptOutScope =
        serde_json::from_value(serde_json::Value::from(r.scope.as_str())).map_err(|_| corrupt("scope", &r.scope))?;
    let status = match r.completed_at {
        Some(_) => OptOutStatus::Completed,
        None if utc(r.due_at) < now => OptOutStatus::Overdue,
        None => OptOutStatus::Open,
    };
    Ok(OptOutResponse {
        id: r.id.clone(),
        subject_id: r.subject_id.clone(),
        channel,
        scope,
        received_at: utc(r.received_at),
        due_at: utc(r.due_at),
        completed_at: r.completed_at.map(utc),
        status,
        event_ids,
    })
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Records a request to opt out of the sale and sharing of personal information. Requires
/// `consents:write`. The opt-out takes effect at once: every purpose with `gpc_applies` is
/// denied for the person (source `opt_out_request`), in the same transaction as the request.
/// The request stays `open` until completed (`POST /v1/opt-outs/{id}/complete`), and is
/// `overdue` after `due_at`. Requests are never deleted (kept well beyond the 24 months of
/// 11 CCR §7101(a)).
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry return the first result")),
    request_body = CreateOptOut,
    responses(
        (status = 201, description = "Recorded; the opt-out is in effect", body = OptOutResponse),
        (status = 409, description = "The tenant defines no purpose with `gpc_applies`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-outs")]
pub async fn create_opt_out(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    JsonBody(body, raw): JsonBody<CreateOptOut>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let subject = SubjectIdentifier::parse(&body.subject).map_err(|e| ApiError::invalid("subject", e.to_string()))?;
    if let Some(t) = body.received_at {
        if t > now() + chrono::Duration::seconds(60) {
            return Err(ApiError::invalid(
                "received_at",
                "is in the future: it is when the business received the request",
            ));
        }
        if t.timestamp() < 0 {
            return Err(ApiError::invalid("received_at", "is before 1970"));
        }
    }
    let idempotency = idempotency_claim(&req, "api".into(), &raw)?;
    let tenant = caller.config.tenant.clone();
    let calendar = state.calendar.clone();
    let now = now();
    let rules = TenantRules::from_config(&caller.config, now)?;
    let choices: BTreeMap<String, bool> =
        rules.purposes.iter().filter(|p| p.gpc_applies).map(|p| (p.key.to_string(), false)).collect();
    if choices.is_empty() {
        return Err(ApiError::Conflict(
            "no purpose with gpc_applies (sale or sharing) is defined, so there is nothing to opt out of".into(),
        ));
    }
    let received_at = body.received_at.unwrap_or(now);
    let stored = subject.stored_form(&caller.config.subject_key);
    let record = RecordRequest {
        subject: &stored,
        choices: &choices,
        policy_revision: None,
        source: ConsentSource::OptOutRequest,
        region: None,
        occurred_at: body.received_at,
        site_id: None,
        gpc: false,
        idempotency,
    };
    let (channel, scope) = (text(&body.channel), text(&body.scope));
    // Written in the transaction of the opt-out events: the request and its webhook deliveries.
    let finish: Finish = Box::new(move |conn, recorded| {
        let request = OptOutRequest {
            id: new_id(),
            tenant_id: tenant.id.clone(),
            subject_id: recorded.subject_id.clone(),
            channel: channel.clone(),
            scope: scope.clone(),
            received_at: naive(received_at),
            due_at: naive(calendar.add_business_days(received_at, OPT_OUT_BUSINESS_DAYS)),
            completed_at: None,
            created_at: naive(now),
        };
        request.insert(conn)?;
        let body = response(&request, now, Some(recorded.event_ids.clone()))?;
        let text = serde_json::to_string(&body).unwrap_or_default();
        outbox::enqueue(conn, &tenant.id, WebhookEventType::OptOutCreated, now, |_| Ok(vec![body]))?;
        Ok(text)
    });
    let outcome = match crate::service::consents::record(&state, rules, &record, 201, finish).await? {
        Outcome::Fresh { body, .. } => (body, false),
        Outcome::Replay { body, .. } => (body, true),
    };
    let mut res = HttpResponse::Created();
    res.content_type("application/json");
    if outcome.1 {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.body(outcome.0))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptOutQuery {
    /// `open` (includes overdue ones), `overdue` or `completed`; absent: all.
    pub status: Option<OptOutStatus>,
}

/// Upper bound of requests listed at once.
const MAX_LISTED: i64 = 10_000;

/// Lists the tenant's opt-out requests, oldest first. Requires `consents:read`.
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(OptOutQuery),
    responses((status = 200, description = "The requests", body = OptOutList))
)]
#[get("/v1/opt-outs")]
pub async fn list_opt_outs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<OptOutQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let filter = match query.status {
        None => OptOutFilter::All,
        Some(OptOutStatus::Open) => OptOutFilter::Open,
        Some(OptOutStatus::Overdue) => OptOutFilter::Overdue,
        Some(OptOutStatus::Completed) => OptOutFilter::Completed,
    };
    let now = now();
    let tenant = caller.tenant_id.clone();
    let rows = state.db(move |conn| Ok(OptOutRequest::list(conn, &tenant, filter, naive(now), MAX_LISTED)?)).await?;
    let opt_outs = rows.iter().map(|r| response(r, now, None)).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(OptOutList { opt_outs }))
}

/// Marks a request completed (the business has honoured it everywhere, e.g. notified the
/// third parties it sold or shared with, 11 CCR §7026(f)(2)). Requires `consents:write`.
#[utoipa::path(
    tag = "opt-outs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "Completed", body = OptOutResponse),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already completed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/opt-outs/{id}/complete")]
pub async fn complete_opt_out(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let now = now();
    let tenant = caller.tenant_id.clone();
    let id = id.into_inner();
    let body = state
        .db(move |conn| {
            crate::db::backend::write_transaction(conn, |conn| {
                let Some(_) = OptOutRequest::find(conn, &tenant, &id)? else {
                    return Err(ApiError::NotFound(format!("no opt-out request '{}'", crate::domain::truncate(&id))));
                };
                if !OptOutRequest::complete(conn, &tenant, &id, naive(now))? {
                    return Err(ApiError::Conflict("the request is already completed".into()));
                }
                let row = OptOutRequest::find(conn, &tenant, &id)?
                    .ok_or_else(|| ApiError::internal(diesel::result::Error::NotFound))?;
                let body = response(&row, now, None)?;
                outbox::enqueue(conn, &tenant, WebhookEventType::OptOutCompleted, now, |_| Ok(vec![&body]))?;
                Ok(body)
            })
        })
        .await?;
    state.wake_webhooks();
    Ok(HttpResponse::Ok().json(body))
}
