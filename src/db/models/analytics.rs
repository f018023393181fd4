//! Consent analytics rollups (`analytics_decisions`, `analytics_submissions`) and the cursor of
//! each tenant's change feed up to which they are complete (`analytics_cursors`).

use crate::db::schema::{analytics_cursors, analytics_decisions, analytics_submissions};
use crate::db::AnyConnection;
use crate::domain::analytics::{Outcome, Rollup};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::upsert::excluded;

/// Runs the same diesel expression on either backend's connection (for `ON CONFLICT`, which
/// `MultiConnection` lacks).
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            AnyConnection::Postgresql($c) => $body,
            AnyConnection::Sqlite($c) => $body,
        }
    };
}

/// The feed position `(tx_id, seq)` up to which a tenant's events are in the rollups;
/// `(0, 0)` when none are.
pub fn cursor(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<(i64, i64)> {
    Ok(analytics_cursors::table
        .find(tenant_id)
        .select((analytics_cursors::tx_id, analytics_cursors::seq))
        .first(conn)
        .optional()?
        .unwrap_or((0, 0)))
}

/// The cursor, locked until the transaction ends (PostgreSQL: `FOR UPDATE`; SQLite: the
/// write transaction's lock), created at `(0, 0)` first if missing.
pub fn lock_cursor(conn: &mut AnyConnection, tenant_id: &str, now: NaiveDateTime) -> QueryResult<(i64, i64)> {
    let row = (
        analytics_cursors::tenant_id.eq(tenant_id),
        analytics_cursors::tx_id.eq(0_i64),
        analytics_cursors::seq.eq(0_i64),
        analytics_cursors::updated_at.eq(now),
    );
    on_backend!(conn, |c| diesel::insert_into(analytics_cursors::table)
        .values(row)
        .on_conflict(analytics_cursors::tenant_id)
        .do_nothing()
        .execute(c))?;
    let query = analytics_cursors::table.find(tenant_id).select((analytics_cursors::tx_id, analytics_cursors::seq));
    match conn {
        AnyConnection::Postgresql(c) => query.for_update().first(c),
        AnyConnection::Sqlite(c) => query.first(c),
    }
}

/// Moves the tenant's cursor to `(tx_id, seq)`.
pub fn advance_cursor(
    conn: &mut AnyConnection,
    tenant_id: &str,
    position: (i64, i64),
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(analytics_cursors::table.find(tenant_id))
        .set((
            analytics_cursors::tx_id.eq(position.0),
            analytics_cursors::seq.eq(position.1),
            analytics_cursors::updated_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// Adds the counts of `rollup` to the tenant's rollup rows (inserting missing ones).
pub fn add(conn: &mut AnyConnection, tenant_id: &str, rollup: &Rollup) -> QueryResult<()> {
    use analytics_decisions as d;
    use analytics_submissions as s;
    let decisions: Vec<_> = rollup
        .decisions
        .iter()
        .map(|(k, n)| {
            (
                d::tenant_id.eq(tenant_id),
                d::day.eq(k.day.to_string()),
                d::site_id.eq(k.site.as_str()),
                d::region.eq(k.region.as_str()),
                d::purpose_key.eq(k.purpose.as_str()),
                d::source.eq(k.source.as_str()),
                d::decision.eq(k.decision.as_str()),
                d::count.eq(*n),
            )
        })
        .collect();
    let submissions: Vec<_> = rollup
        .submissions
        .iter()
        .map(|(k, n)| {
            (
                s::tenant_id.eq(tenant_id),
                s::day.eq(k.day.to_string()),
                s::site_id.eq(k.site.as_str()),
                s::region.eq(k.region.as_str()),
                s::source.eq(k.source.as_str()),
                s::outcome.eq(k.outcome.as_str()),
                s::gpc.eq(k.gpc),
                s::count.eq(*n),
            )
        })
        .collect();
    // Row by row: SQLite's batch insert cannot carry ON CONFLICT in diesel, and a page of
    // events makes few rows (one per day, site, region, purpose, source and decision).
    for chunk in decisions.chunks(500) {
        match conn {
            AnyConnection::Postgresql(c) => {
                diesel::insert_into(d::table)
                    .values(chunk)
                    .on_conflict((d::tenant_id, d::day, d::site_id, d::region, d::purpose_key, d::source, d::decision))
                    .do_update()
                    .set(d::count.eq(d::count + excluded(d::count)))
                    .execute(c)?;
            }
            AnyConnection::Sqlite(c) => {
                for row in chunk {
                    diesel::insert_into(d::table)
                        .values(row.clone())
                        .on_conflict((
                            d::tenant_id,
                            d::day,
                            d::site_id,
                            d::region,
                            d::purpose_key,
                            d::source,
                            d::decision,
                        ))
                        .do_update()
                        .set(d::count.eq(d::count + excluded(d::count)))
                        .execute(c)?;
                }
            }
        }
    }
    for chunk in submissions.chunks(500) {
        match conn {
            AnyConnection::Postgresql(c) => {
                diesel::insert_into(s::table)
                    .values(chunk)
                    .on_conflict((s::tenant_id, s::day, s::site_id, s::region, s::source, s::outcome, s::gpc))
                    .do_update()
                    .set(s::count.eq(s::count + excluded(s::count)))
                    .execute(c)?;
            }
            AnyConnection::Sqlite(c) => {
                for row in chunk {
                    diesel::insert_into(s::table)
                        .values(row.clone())
                        .on_conflict((s::tenant_id, s::day, s::site_id, s::region, s::source, s::outcome, s::gpc))
                        .do_update()
                        .set(s::count.eq(s::count + excluded(s::count)))
                        .execute(c)?;
                }
            }
        }
    }
    Ok(())
}

/// Which rollup rows a report reads: a tenant, days `from..=to` (UTC), and optionally one
/// site id, one region code (`""`: events without a region), one purpose.
#[derive(Debug, Clone)]
pub struct Filter {
    pub tenant_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub site: Option<String>,
    pub region: Option<String>,
    pub purpose: Option<String>,
}

/// Decisions per (day, purpose, source, decision), summed over sites and regions.
#[derive(Debug, Clone, QueryableByName)]
pub struct DecisionSum {
    #[diesel(sql_type = Text)]
    pub day: String,
    #[diesel(sql_type = Text)]
    pub purpose_key: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub decision: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// Submissions per (day, source, outcome, gpc), summed over sites and regions.
#[derive(Debug, Clone, QueryableByName)]
pub struct SubmissionSum {
    #[diesel(sql_type = Text)]
    pub day: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub outcome: String,
    #[diesel(sql_type = Bool)]
    pub gpc: bool,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

impl SubmissionSum {
    pub fn outcome(&self) -> QueryResult<Outcome> {
        Outcome::parse(&self.outcome).ok_or_else(|| super::corrupt("analytics outcome", &self.outcome))
    }
}

/// `$n` placeholders for PostgreSQL, `?n` for SQLite (both may repeat a numbered parameter).
fn placeholders(conn: &AnyConnection, sql: &str) -> String {
    match conn {
        AnyConnection::Postgresql(_) => sql.to_owned(),
        AnyConnection::Sqlite(_) => sql.replace('$', "?"),
    }
}

const FILTERS: &str = "WHERE tenant_id = $1 AND day >= $2 AND day <= $3 AND ($4 = '' OR site_id = $5) \
     AND ($6 = '' OR region = $7)";

macro_rules! load_filtered {
    ($conn:expr, $sql:expr, $filter:expr, $extra:expr) => {{
        let f = $filter;
        let (site, region) = (f.site.clone().unwrap_or_default(), f.region.clone());
        let any_region = if region.is_none() { "" } else { "r" };
        let region = region.unwrap_or_default();
        let sql = placeholders($conn, $sql);
        on_backend!($conn, |c| diesel::sql_query(sql.clone())
            .bind::<Text, _>(&f.tenant_id)
            .bind::<Text, _>(f.from.to_string())
            .bind::<Text, _>(f.to.to_string())
            .bind::<Text, _>(&site)
            .bind::<Text, _>(&site)
            .bind::<Text, _>(any_region)
            .bind::<Text, _>(&region)
            .bind::<Text, _>($extra)
            .bind::<Text, _>($extra)
            .load(c))
    }};
}

/// The decisions of the rows `filter` selects, summed per day, purpose, source and decision.
pub fn decision_sums(conn: &mut AnyConnection, filter: &Filter) -> QueryResult<Vec<DecisionSum>> {
    let sql = format!(
        "SELECT day, purpose_key, source, decision, CAST(SUM(count) AS BIGINT) AS count \
         FROM analytics_decisions {FILTERS} AND ($8 = '' OR purpose_key = $9) \
         GROUP BY day, purpose_key, source, decision"
    );
    let purpose = filter.purpose.clone().unwrap_or_default();
    load_filtered!(conn, &sql, filter, &purpose)
}

/// The submissions of the rows `filter` selects (its purpose aside: a submission is not of one
/// purpose), summed per day, source, outcome and GPC.
pub fn submission_sums(conn: &mut AnyConnection, filter: &Filter) -> QueryResult<Vec<SubmissionSum>> {
    let sql = format!(
        "SELECT day, source, outcome, gpc, CAST(SUM(count) AS BIGINT) AS count \
         FROM analytics_submissions {FILTERS} AND $8 = $9 \
         GROUP BY day, source, outcome, gpc"
    );
    load_filtered!(conn, &sql, filter, "")
}
