//! `GET /v1/events`: the tenant's change feed.

use crate::auth::{Caller, Scope};
use crate::db::models::event::Event;
use crate::error::{ApiError, Problem};
use crate::ledger::{describe_events, FeedEvent};
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Feed {
    /// Oldest first, in commit order.
    pub events: Vec<FeedEvent>,
    /// Pass as `after` for the next page; the same cursor when nothing new was committed.
    pub next_cursor: String,
}

/// A page's position and size from the query: `after`, an event's `seq` as handed out in a
/// `next_cursor` (absent: 0, the start), and `limit`, 1 to `max` (absent: `default`).
/// Errors: a 400 problem naming `after` or `limit`.
pub fn page(after: Option<&str>, limit: Option<i64>, default: i64, max: i64) -> Result<(i64, i64), ApiError> {
    let after = match after {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::invalid("after", "is not a cursor from next_cursor"))?,
    };
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid("limit", crate::extract::expected_whole_number(Some(1), Some(max))));
    }
    Ok((after, limit))
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
    query: crate::extract::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let (after, limit) = page(query.after.as_deref(), query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let tenant = caller.tenant_id.clone();
    let (events, next_cursor) = state
        .read_db(move |conn| {
            let position = match after {
                0 => (0, 0),
                seq => Event::position(conn, &tenant, seq)?
                    .ok_or_else(|| ApiError::invalid("after", "is not a cursor from next_cursor"))?,
            };
            let horizon = crate::db::backend::feed_horizon(conn)?;
            let rows = Event::feed(conn, &tenant, position, horizon, limit)?;
            let next_cursor = rows.last().map_or(after, |e| e.seq).to_string();
            let events = describe_events(conn, &tenant, rows.into_iter().map(|e| e.row).collect())?;
            Ok((events, next_cursor))
        })
        .await?;
    Ok(HttpResponse::Ok().json(Feed { events, next_cursor }))
}
