//! `POST/GET/DELETE /v1/webhooks`: receivers of a tenant's events; their deliveries and
//! retries by hand. Delivery itself is `workers::webhooks`.

use crate::auth::{Caller, Scope};
use crate::db::backend::{lock_tenant_webhooks, write_transaction};
use crate::db::models::webhook::{Delivery, Webhook};
use crate::db::models::{naive, new_id, utc};
use crate::domain::webhook::{internal_host, parse_receiver_url, DeliveryStatus, WebhookEventType};
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::routes::now;
use crate::state::AppState;
use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(delete_webhook)
        .service(list_deliveries)
        .service(retry_delivery);
}

/// The most webhooks one tenant may have.
pub const MAX_WEBHOOKS: usize = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://crm.example.com/hooks/consentry", "events": ["consent.changed", "opt_out.created"]}))]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: an absolute http or https URL without credentials or
    /// fragment, at most 2000 bytes once percent-encoded. Use https outside a private network.
    /// Stored and called in its normalised form (lower-case scheme and host, `/` as the empty
    /// path), which the response shows.
    #[schema(max_length = 2000, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^#]+$")]
    pub url: String,
    /// The event types to receive (at least one; repeats are ignored).
    #[schema(min_items = 1)]
    pub events: Vec<WebhookEventType>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub created_at: DateTime<Utc>,
    /// The key of the deliveries' signatures: `Consentry-Signature: t=<unix>,v1=<hex>` with
    /// `<hex>` = HMAC-SHA256 keyed with this whole string, `whsec_` included (its UTF-8 bytes),
    /// over `"<t>.<raw body>"`.
    /// Shown once, in the response that creates the webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub webhooks: Vec<WebhookResponse>,
}

impl From<&Webhook> for WebhookResponse {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.event_types().iter().filter_map(|t| WebhookEventType::parse(t)).collect(),
            created_at: utc(w.created_at),
            secret: None,
        }
    }
}

/// One event for one webhook, and how its delivery went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryResponse {
    pub id: String,
    pub webhook_id: String,
    /// The `id` of the body: the same on every attempt.
    pub event_id: String,
    pub event_type: WebhookEventType,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (`pending` only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer, if the receiver answered.
    pub last_response_status: Option<i32>,
    /// Why the last attempt failed, e.g. `the receiver answered 503 Service Unavailable`.
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The body sent on every attempt (a `WebhookPayload`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryResponse>,
}

impl DeliveryResponse {
    fn from_row(d: Delivery) -> Result<Self, diesel::result::Error> {
        let corrupt = crate::db::models::corrupt;
        let status = DeliveryStatus::parse(&d.status).ok_or_else(|| corrupt("delivery status", &d.status))?;
        Ok(Self {
            event_type: WebhookEventType::parse(&d.event_type).ok_or_else(|| corrupt("event type", &d.event_type))?,
            payload: serde_json::from_str(&d.payload).map_err(|_| corrupt("payload", &d.id))?,
            next_attempt_at: (status == DeliveryStatus::Pending).then(|| utc(d.next_attempt_at)),
            status,
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            attempts: d.attempts,
            last_attempt_at: d.last_attempt_at.map(utc),
            last_response_status: d.last_response_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at.map(utc),
            created_at: utc(d.created_at),
        })
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook '{}'", crate::domain::shown(id)))
}

/// Creates a webhook. Requires `admin`. From then on, every event of the subscribed types is
/// written to an outbox in the same transaction as the change it reports, and POSTed to `url`
/// as a `WebhookPayload` with `Content-Type: application/json` and the headers
/// `Consentry-Signature` (see `secret`), `Consentry-Event-Id`, `Consentry-Event-Type`,
/// `Consentry-Delivery-Id` and `Consentry-Delivery-Attempt`.
///
/// A 2xx answer within the timeout (10 s by default) delivers it. Anything else (other
/// statuses, redirects, timeouts, refused connections) is retried with exponential backoff and
/// jitter (by default 30 s doubling to at most 1 h between attempts) for the retry window (72 h
/// by default, never less than the 24 h promised), then the delivery is kept as `dead` and can be
/// retried by hand. Deliveries are at least once and not ordered: deduplicate by `id`, and order
/// by the body's `created_at` (or read `GET /v1/events`, which is ordered).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = WebhookResponse,
            headers(("Location" = String, description = "`/v1/webhooks/{id}`"))),
        (status = 409, description = "The tenant already has 20 webhooks", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body, _): JsonBody<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let url = parse_receiver_url(&body.url).map_err(|m| ApiError::invalid("url", m))?;
    if let Some(why) = internal_host(&url).filter(|_| !state.private_receivers) {
        return Err(ApiError::invalid(
            "url",
            format!("{why}: receivers at loopback, private or link-local addresses are refused here (setting webhooks.private_receivers)"),
        ));
    }
    if body.events.is_empty() {
        return Err(ApiError::invalid("events", "must name at least one event type, e.g. \"consent.changed\""));
    }
    let mut events = body.events.clone();
    events.sort_unstable();
    events.dedup();
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    let webhook = Webhook {
        id: new_id(),
        tenant_id: caller.tenant_id.clone(),
        url: url.to_string(),
        events: serde_json::to_string(&events.iter().map(|e| e.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
        secret: format!("whsec_{}", hex::encode(secret)),
        created_at: naive(now()),
    };
    let mut row = webhook.clone();
    row.secret = state.secrets.seal(&crate::secrets::webhook_secret_context(&row.id), &row.secret);
    state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                lock_tenant_webhooks(conn, &row.tenant_id)?;
                if Webhook::list(conn, &row.tenant_id)?.len() >= MAX_WEBHOOKS {
                    return Err(ApiError::Conflict(format!(
                        "the tenant already has {MAX_WEBHOOKS} webhooks; delete one first"
                    )));
                }
                Ok(row.insert(conn)?)
            })
        })
        .await?;
    let mut response = WebhookResponse::from(&webhook);
    response.secret = Some(webhook.secret);
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::LOCATION, format!("/v1/webhooks/{}", webhook.id)))
        .json(response))
}

/// Lists the tenant's webhooks (without secrets). Requires `admin`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    responses((status = 200, description = "The webhooks", body = WebhookList))
)]
#[get("/v1/webhooks")]
pub async fn list_webhooks(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let tenant = caller.tenant_id.clone();
    let rows = state.db(move |conn| Ok(Webhook::list(conn, &tenant)?)).await?;
    Ok(HttpResponse::Ok().json(WebhookList { webhooks: rows.iter().map(WebhookResponse::from).collect() }))
}

/// One webhook (without its secret). Requires `admin`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookResponse),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/webhooks/{id}")]
pub async fn get_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let (tenant, id) = (caller.tenant_id.clone(), id.into_inner());
    let row = state.db(move |conn| Webhook::find(conn, &tenant, &id)?.ok_or_else(|| not_found(&id))).await?;
    Ok(HttpResponse::Ok().json(WebhookResponse::from(&row)))
}

/// Deletes a webhook and its deliveries: pending ones are not sent (an attempt already under
/// way completes). Requires `admin`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/webhooks/{id}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let (tenant, id) = (caller.tenant_id.clone(), id.into_inner());
    state
        .db(move |conn| {
            write_transaction(conn, |conn| match Webhook::delete(conn, &tenant, &id)? {
                true => Ok(()),
                false => Err(not_found(&id)),
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead` (dead letters); absent: all.
    pub status: Option<DeliveryStatus>,
    /// Deliveries per response, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The last `id` of the previous page: lists the deliveries older than it.
    #[param(format = Uuid)]
    pub before: Option<String>,
}

/// A webhook's deliveries, newest first, a page at a time (pass the last `id` as `before` for
/// the next page). Requires `admin`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook id"), DeliveryQuery),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/webhooks/{id}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: crate::extract::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", crate::extract::expected_whole_number(Some(1), Some(1000))));
    }
    let status = query.status.map(DeliveryStatus::as_str);
    let before = query.before.clone();
    if before.as_ref().is_some_and(|b| uuid::Uuid::try_parse(b).is_err()) {
        return Err(ApiError::invalid("before", "is not a delivery id (the `id` of a listed delivery)"));
    }
    let (tenant, id) = (caller.tenant_id.clone(), id.into_inner());
    let rows = state
        .db(move |conn| {
            Webhook::find(conn, &tenant, &id)?.ok_or_else(|| not_found(&id))?;
            Ok(Delivery::list(conn, &tenant, &id, status, before.as_deref(), limit)?)
        })
        .await?;
    let deliveries = rows.into_iter().map(DeliveryResponse::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}

/// Sends a delivery again now, with a fresh retry window: a dead letter after the receiver is
/// fixed, or a delivered one the receiver lost. The body (and its `id`) is the same as before.
/// Requires `admin`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The webhook id"),
        ("delivery_id" = String, Path, description = "The delivery id"),
    ),
    responses(
        (status = 202, description = "Due now; `status` is `pending`", body = DeliveryResponse),
        (status = 404, description = "No such webhook or delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An attempt is in progress", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/webhooks/{id}/deliveries/{delivery_id}/retry")]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let (id, delivery_id) = path.into_inner();
    let tenant = caller.tenant_id.clone();
    let now = naive(now());
    let row = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                Webhook::find(conn, &tenant, &id)?.ok_or_else(|| not_found(&id))?;
                let delivery = Delivery::find(conn, &tenant, &id, &delivery_id)?.ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "webhook '{}' has no delivery '{}'",
                        crate::domain::shown(&id),
                        crate::domain::shown(&delivery_id)
                    ))
                })?;
                if !Delivery::reschedule(conn, &delivery.id, now)? {
                    return Err(ApiError::Conflict(
                        "the delivery is being attempted right now; look at it again in a few seconds".into(),
                    ));
                }
                Delivery::find(conn, &tenant, &id, &delivery_id)?
                    .ok_or_else(|| ApiError::internal(diesel::result::Error::NotFound))
            })
        })
        .await?;
    state.wake_webhooks();
    Ok(HttpResponse::Accepted().json(DeliveryResponse::from_row(row)?))
}
