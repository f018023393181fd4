//! `GET /v1/events`: the tenant's change feed.

use crate::auth::{Caller, Scope};
use crate::db::models::event::Event;
use crate::db::models::subject::DataSubject;
use crate::error::{ApiError, Problem};
use crate::routes::consents::EventResponse;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_events);
}

/// Events per page: default and most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next_cursor` of the previous page; absent: from the beginning.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One event of the feed, with the data subject it belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    #[serde(flatten)]
    pub event: EventResponse,
    /// The pseudonymous id of the data subject (the person it joined, after identity linking).
    pub subject_id: String,
    /// The subject's identifiers as stored: `visitor:<uuid>`, `user:<id>`, and email and phone
    /// as `email:h:<hex>` / `phone:h:<hex>` keyed hashes.
    pub identifiers: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Feed {
    /// Oldest first, in commit order.
    pub events: Vec<FeedEvent>,
    /// Pass as `after` for the next page; the same cursor when nothing new was committed.
    pub next_cursor: String,
}

/// The tenant's committed consent events in a stable order. Requires `consents:read`.
///
/// Events of one tenant commit in the order of their position (writers take a per-tenant lock
/// before inserting), so a reader that follows `next_cursor` never skips an event, even when
/// transactions commit out of order under concurrency.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events", body = Feed),
        (status = 400, description = "Malformed cursor or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let after = match query.after.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::invalid("after", "is not a cursor from next_cursor"))?,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let tenant = caller.tenant_id.clone();
    let (events, identifiers, canonical) = state
        .db(move |conn| {
            if after > 0 && !Event::exists_at(conn, &tenant, after)? {
                return Err(ApiError::invalid("after", "is not a cursor from next_cursor"));
            }
            let events = Event::feed(conn, &tenant, after, limit)?;
            let mut ids: Vec<&str> = events.iter().map(|e| e.row.subject_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            // Subjects merged by identity linking are reported as the person they joined.
            let canonical: BTreeMap<String, String> =
                DataSubject::canonical(conn, &tenant, &ids)?.into_iter().collect();
            let people: Vec<&str> = canonical.values().map(String::as_str).collect();
            let identifiers = DataSubject::identifiers_of(conn, &tenant, &people)?;
            Ok((events, identifiers, canonical))
        })
        .await?;
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (subject, identifier) in identifiers {
        by_subject.entry(subject).or_default().push(identifier);
    }
    let next_cursor = events.last().map_or(after, |e| e.seq).to_string();
    let events = events
        .into_iter()
        .map(|e| {
            let subject_id = canonical.get(&e.row.subject_id).cloned().unwrap_or_else(|| e.row.subject_id.clone());
            Ok(FeedEvent {
                identifiers: by_subject.get(&subject_id).cloned().unwrap_or_default(),
                subject_id,
                event: EventResponse::from_row(e.row)?,
            })
        })
        .collect::<Result<Vec<_>, diesel::result::Error>>()?;
    Ok(HttpResponse::Ok().json(Feed { events, next_cursor }))
}
