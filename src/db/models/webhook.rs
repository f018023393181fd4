use crate::db::schema::{webhook_deliveries, webhooks};
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A receiver of a tenant's events. `events` is a JSON array of event types
/// (`domain::webhook::WebhookEventType`); `secret` keys the deliveries' signatures.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks)]
pub struct Webhook {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub events: String,
    pub secret: String,
    pub created_at: NaiveDateTime,
}

impl Webhook {
    /// The subscribed event types as stored.
    pub fn event_types(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }

    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(webhooks::table).values(self).execute(conn).map(drop)
    }

    /// A tenant's webhooks, oldest first.
    pub fn list(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Self>> {
        webhooks::table
            .filter(webhooks::tenant_id.eq(tenant_id))
            .order((webhooks::created_at.asc(), webhooks::id.asc()))
            .select(Self::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> QueryResult<Option<Self>> {
        webhooks::table
            .filter(webhooks::tenant_id.eq(tenant_id))
            .filter(webhooks::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// Deletes the webhook and its deliveries (pending ones are never sent); returns whether
    /// it existed. Run it in a write transaction.
    pub fn delete(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> QueryResult<bool> {
        if !crate::db::backend::lock_webhook_for_delete(conn, tenant_id, id)? {
            return Ok(false);
        }
        diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::tenant_id.eq(tenant_id))
                .filter(webhook_deliveries::webhook_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(webhooks::table.filter(webhooks::tenant_id.eq(tenant_id)).filter(webhooks::id.eq(id)))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// The secrets of webhooks, by id (for the dispatcher).
    pub fn secrets(conn: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<(String, String, String)>> {
        webhooks::table
            .filter(webhooks::id.eq_any(ids))
            .select((webhooks::id, webhooks::url, webhooks::secret))
            .load(conn)
    }
}

/// One event for one webhook: a row of the outbox. `payload` is the exact body sent on every
/// attempt; `lease` marks a claim by a dispatcher until `next_attempt_at`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub lease: Option<String>,
    pub retry_started_at: NaiveDateTime,
    pub last_attempt_at: Option<NaiveDateTime>,
    pub last_response_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

/// The result of one attempt, as stored.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// `delivered`, `pending` (to be retried at `next_attempt_at`) or `dead`.
    pub status: &'static str,
    pub attempted_at: NaiveDateTime,
    pub next_attempt_at: NaiveDateTime,
    pub response_status: Option<i32>,
    pub error: Option<String>,
}

impl Delivery {
    /// Inserts the rows in one statement (see `backend::insert_deliveries`).
    pub fn insert_all(conn: &mut AnyConnection, rows: &[Self]) -> QueryResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        crate::db::backend::insert_deliveries(conn, rows)
    }

    pub fn find(conn: &mut AnyConnection, tenant_id: &str, webhook_id: &str, id: &str) -> QueryResult<Option<Self>> {
        webhook_deliveries::table
            .filter(webhook_deliveries::tenant_id.eq(tenant_id))
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .filter(webhook_deliveries::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// A webhook's deliveries, newest first (ids are UUIDv7: time-ordered), optionally of one
    /// status, older than the delivery `before`.
    pub fn list(
        conn: &mut AnyConnection,
        tenant_id: &str,
        webhook_id: &str,
        status: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        let mut query = webhook_deliveries::table
            .filter(webhook_deliveries::tenant_id.eq(tenant_id))
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .into_boxed();
        if let Some(status) = status {
            query = query.filter(webhook_deliveries::status.eq(status));
        }
        if let Some(before) = before {
            query = query.filter(webhook_deliveries::id.lt(before));
        }
        query.order(webhook_deliveries::id.desc()).limit(limit).select(Self::as_select()).load(conn)
    }

    /// Whether any pending delivery is due at `now` (a read, before claiming with a write).
    pub fn any_due(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            webhook_deliveries::table
                .filter(webhook_deliveries::status.eq("pending"))
                .filter(webhook_deliveries::next_attempt_at.le(now)),
        ))
        .get_result(conn)
    }

    /// Marks deliveries as claimed under `lease` until `lease_until`, and returns them.
    pub fn lease(
        conn: &mut AnyConnection,
        ids: &[String],
        lease: &str,
        lease_until: NaiveDateTime,
    ) -> QueryResult<Vec<Self>> {
        diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(ids)))
            .set((webhook_deliveries::lease.eq(Some(lease)), webhook_deliveries::next_attempt_at.eq(lease_until)))
            .execute(conn)?;
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(ids))
            .order(webhook_deliveries::created_at.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// Stores the outcome of an attempt made under `lease`; returns false (and changes nothing)
    /// when the lease was lost meanwhile (the delivery was deleted, or retried by hand).
    pub fn finish_attempt(
        conn: &mut AnyConnection,
        id: &str,
        lease: &str,
        outcome: &AttemptOutcome,
    ) -> QueryResult<bool> {
        let delivered_at = (outcome.status == "delivered").then_some(outcome.attempted_at);
        diesel::update(
            webhook_deliveries::table.filter(webhook_deliveries::id.eq(id)).filter(webhook_deliveries::lease.eq(lease)),
        )
        .set((
            webhook_deliveries::status.eq(outcome.status),
            webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
            webhook_deliveries::next_attempt_at.eq(outcome.next_attempt_at),
            webhook_deliveries::lease.eq(None::<String>),
            webhook_deliveries::last_attempt_at.eq(Some(outcome.attempted_at)),
            webhook_deliveries::last_response_status.eq(outcome.response_status),
            webhook_deliveries::last_error.eq(&outcome.error),
            webhook_deliveries::delivered_at.eq(delivered_at),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Makes a delivery due now with a fresh retry window (a retry by hand), unless a dispatcher
    /// holds a live claim on it (an attempt under way): then nothing changes and it returns
    /// false. One statement, so that a claim committed meanwhile is seen (PostgreSQL re-checks
    /// the condition on the row it waited for).
    pub fn reschedule(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<bool> {
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(id))
                .filter(webhook_deliveries::lease.is_null().or(webhook_deliveries::next_attempt_at.le(now))),
        )
        .set((
            webhook_deliveries::status.eq("pending"),
            webhook_deliveries::next_attempt_at.eq(now),
            webhook_deliveries::retry_started_at.eq(now),
            webhook_deliveries::lease.eq(None::<String>),
        ))
        .execute(conn)
        .map(|n| n == 1)
    }
}
