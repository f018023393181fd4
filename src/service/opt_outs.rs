//! CCPA requests to opt out of the sale and sharing of personal information (Cal. Civ. Code
//! §1798.120, 11 CCR §7026): record one (the opt-out takes effect at once, in the transaction of
//! its denials), list them, complete one.

use crate::db::models::opt_out::{OptOutFilter, OptOutRequest};
use crate::db::models::{naive, new_id, utc};
use crate::domain::deadline::OPT_OUT_BUSINESS_DAYS;
use crate::domain::webhook::WebhookEventType;
use crate::domain::{ConsentSource, SubjectIdentifier};
use crate::error::ApiError;
use crate::ledger::{outbox, Finish, IdempotencyClaim, Outcome, RecordRequest, TenantRules};
use crate::service::directory::TenantConfig;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
    /// What the privacy team wrote when it completed the request (`POST …/complete` with
    /// `{"note": "…"}`), if anything.
    pub completion_note: Option<String>,
    pub status: OptOutStatus,
    /// The denials this request recorded (source `opt_out_request`), one per sale/sharing purpose
    /// that was not already denied. Only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    /// The signed consent receipt of the denials (see `RecordResponse.receipt`). Only in the
    /// response that created it; added once committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutList {
    /// Oldest first.
    pub opt_outs: Vec<OptOutResponse>,
}

/// How a stored request is shown; `event_ids` only in the response that created it.
pub fn response(
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
        completion_note: r.completion_note.clone(),
        status,
        event_ids,
        receipt: None,
    })
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Upper bound of requests listed at once.
pub const MAX_LISTED: i64 = 10_000;

/// Records a request to opt out: every purpose with `gpc_applies` is denied for the person
/// (source `opt_out_request`) and the request stored with its deadline (`received_at` + 15
/// business days, 11 CCR §7026(f)), in one transaction with its webhook deliveries. Returns the
/// response body and whether it replays an earlier one (same `Idempotency-Key`).
///
/// Errors: a malformed subject or `received_at` (400), no purpose with `gpc_applies` (409), an
/// idempotency key used for another request (422).
pub async fn request(
    state: &AppState,
    config: &TenantConfig,
    body: CreateOptOut,
    idempotency: Option<IdempotencyClaim>,
) -> Result<(String, bool), ApiError> {
    let subject = SubjectIdentifier::parse(&body.subject).map_err(|e| ApiError::invalid("subject", e.to_string()))?;
    if let Some(t) = body.received_at {
        if t > super::now() + chrono::Duration::seconds(60) {
            return Err(ApiError::invalid(
                "received_at",
                "is in the future: it is when the business received the request",
            ));
        }
        if t.timestamp() < 0 {
            return Err(ApiError::invalid("received_at", "is before 1970"));
        }
    }
    let tenant = config.tenant.clone();
    let calendar = state.calendar.clone();
    let now = super::now();
    let rules = TenantRules::from_config(config, now)?;
    let choices: BTreeMap<String, bool> =
        rules.purposes.iter().filter(|p| p.gpc_applies).map(|p| (p.key.to_string(), false)).collect();
    if choices.is_empty() {
        return Err(ApiError::Conflict(
            "no purpose with gpc_applies (sale or sharing) is defined, so there is nothing to opt out of".into(),
        ));
    }
    let received_at = body.received_at.unwrap_or(now);
    let stored = subject.stored_form(&config.subject_key);
    let record = RecordRequest {
        occurred_at: body.received_at,
        idempotency,
        ..RecordRequest::new(&stored, &choices, ConsentSource::OptOutRequest)
    };
    let (channel, scope) = (text(&body.channel), text(&body.scope));
    // Written in the transaction of the opt-out events: the request and its webhook deliveries.
    let finish = Finish::writing(move |conn, recorded| {
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
            completion_note: None,
        };
        request.insert(conn)?;
        let body = response(&request, now, Some(recorded.event_ids.clone()))?;
        let text = serde_json::to_string(&body).unwrap_or_default();
        outbox::enqueue(conn, &tenant.id, WebhookEventType::OptOutCreated, now, |_| Ok(vec![body]))?;
        Ok(text)
    });
    let shown = subject.shown_personal();
    Ok(match super::consents::record_with_receipt(state, rules, &record, shown, 201, finish).await? {
        Outcome::Fresh { body, .. } => (body, false),
        Outcome::Replay { body, .. } => (body, true),
    })
}

/// The tenant's requests matching `filter`, oldest first (at most [`MAX_LISTED`]).
pub async fn list(state: &AppState, tenant_id: &str, filter: OptOutFilter) -> Result<Vec<OptOutResponse>, ApiError> {
    let now = super::now();
    let tenant = tenant_id.to_owned();
    let rows = state.db(move |conn| Ok(OptOutRequest::list(conn, &tenant, filter, naive(now), MAX_LISTED)?)).await?;
    Ok(rows.iter().map(|r| response(r, now, None)).collect::<Result<Vec<_>, _>>()?)
}

/// The body of `POST /v1/opt-outs/{id}/complete` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "Suppressed in the CRM and the ad platforms; partners notified"}))]
pub struct CompleteOptOut {
    /// What was done, for the record (at most 2,000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// Most characters of a completion note.
pub const MAX_NOTE_CHARS: usize = 2000;

/// Marks a request completed (the business has honoured it everywhere, 11 CCR §7026(f)(2)),
/// with an optional note. Errors: a note too long or holding NUL (400), no such request (404),
/// already completed (409).
pub async fn complete(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    body: CompleteOptOut,
) -> Result<OptOutResponse, ApiError> {
    let note = body.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::invalid("note", format!("is longer than {MAX_NOTE_CHARS} characters")));
    }
    if note.as_ref().is_some_and(|n| n.contains('\0')) {
        return Err(ApiError::invalid("note", crate::error::NUL_MESSAGE));
    }
    let now = super::now();
    let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
    let body = state
        .db(move |conn| {
            crate::db::backend::write_transaction(conn, |conn| {
                let Some(_) = OptOutRequest::find(conn, &tenant, &id)? else {
                    return Err(ApiError::NotFound(format!("no opt-out request '{}'", crate::domain::shown(&id))));
                };
                if !OptOutRequest::complete(conn, &tenant, &id, naive(now), note.as_deref())? {
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
    Ok(body)
}
