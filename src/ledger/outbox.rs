//! The webhook outbox: a delivery row per subscribed webhook, written in the transaction of what
//! it reports (a consent event, an opt-out request), so nothing committed goes unreported and
//! nothing rolled back is reported. `workers::webhooks` sends the rows afterwards.

use super::events::FeedEvent;
use super::view::PurposeState;
use crate::db::models::webhook::{Delivery, Webhook};
use crate::db::models::{naive, new_id};
use crate::db::AnyConnection;
use crate::domain::webhook::{DeliveryStatus, WebhookEventType};
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use utoipa::ToSchema;

/// Deliveries this process has written, committed or not (see [`enqueued`]).
static ENQUEUED: AtomicU64 = AtomicU64::new(0);

/// How many deliveries this process has written so far, committed or rolled back. A caller that
/// reads it before and after its transaction knows whether the transaction wrote any: the group
/// commit wakes the webhook dispatcher only then. (It woke it after every batch, and each wake
/// cost a pooled connection and a query for due deliveries, for tenants with no webhook too.)
pub fn enqueued() -> u64 {
    ENQUEUED.load(Ordering::Acquire)
}

/// The body of every webhook delivery (`Content-Type: application/json`), signed in the
/// `Consentry-Signature` header. The same bytes are sent on every attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "01a2267a-0c1e-7b3e-9f0e-6a1c2d3e4f50", "type": "opt_out.created",
    "created_at": "2026-11-29T10:00:00Z", "tenant_id": "01a22671-e7d2-7423-8870-8af59adc2dea",
    "data": {"id": "01a2267a-0c1d-7000-8000-000000000001", "status": "open"}
}))]
pub struct WebhookPayload {
    /// Unique per event (the same on every attempt and for every webhook that receives it):
    /// deliveries are at least once, so receivers drop ids they have already processed.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    /// When the event was committed (UTC).
    pub created_at: DateTime<Utc>,
    pub tenant_id: String,
    /// `consent.changed`: a `ConsentChange`; `opt_out.created` / `opt_out.completed`: an
    /// `OptOutResponse`; `site.violation`: a `SiteViolation`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The `data` of a `consent.changed` delivery: the event as the change feed shows it, and the
/// purpose's state once the submission that recorded it was committed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentChange {
    #[serde(flatten)]
    pub event: FeedEvent,
    pub state: PurposeState,
}

/// Adds a delivery per subscribed webhook of the tenant for each item `build` returns, in the
/// caller's transaction. `build` only runs when some webhook subscribes to `event_type`.
pub fn enqueue<T: Serialize>(
    conn: &mut AnyConnection,
    tenant_id: &str,
    event_type: WebhookEventType,
    now: DateTime<Utc>,
    build: impl FnOnce(&mut AnyConnection) -> QueryResult<Vec<T>>,
) -> QueryResult<()> {
    let hooks: Vec<Webhook> = crate::db::backend::webhooks_for_writing(conn, tenant_id)?
        .into_iter()
        .filter(|w| w.event_types().iter().any(|t| t == event_type.as_str()))
        .collect();
    if hooks.is_empty() {
        return Ok(());
    }
    let items = build(conn)?;
    enqueue_to(conn, &hooks, tenant_id, event_type, now, items)
}

/// Adds a delivery to each of `hooks` (already locked by `webhooks_for_writing` and filtered
/// by event type) for each item, in one statement.
pub fn enqueue_to<T: Serialize>(
    conn: &mut AnyConnection,
    hooks: &[Webhook],
    tenant_id: &str,
    event_type: WebhookEventType,
    now: DateTime<Utc>,
    items: Vec<T>,
) -> QueryResult<()> {
    if hooks.is_empty() || items.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::new();
    for data in items {
        let payload = WebhookPayload {
            id: new_id(),
            event_type,
            created_at: now,
            tenant_id: tenant_id.to_owned(),
            data: serde_json::to_value(&data).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
        };
        let body =
            serde_json::to_string(&payload).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        for hook in hooks {
            rows.push(Delivery {
                id: new_id(),
                tenant_id: tenant_id.to_owned(),
                webhook_id: hook.id.clone(),
                event_id: payload.id.clone(),
                event_type: event_type.as_str().to_owned(),
                payload: body.clone(),
                status: DeliveryStatus::Pending.as_str().to_owned(),
                attempts: 0,
                next_attempt_at: naive(now),
                lease: None,
                retry_started_at: naive(now),
                last_attempt_at: None,
                last_response_status: None,
                last_error: None,
                delivered_at: None,
                created_at: naive(now),
            });
        }
    }
    Delivery::insert_all(conn, &rows)?;
    ENQUEUED.fetch_add(rows.len() as u64, Ordering::Release);
    Ok(())
}
