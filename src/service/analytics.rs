//! Consent and opt-out analytics (issue 13): the rollups' upkeep and the two reports.
//!
//! **Upkeep.** [`roll_up_page`] reads the next page of a tenant's change feed after the stored
//! cursor (`analytics_cursors`), adds it to the per-day rollups and moves the cursor, all in one
//! transaction that first checks the cursor is still where the page was read from. So each
//! event is counted exactly once whatever crashes, restarts or instances running side by side
//! (a page read by two instances is committed by one; the other finds the cursor moved and
//! drops its work). The write path is untouched: the worker (`workers::analytics`) follows the
//! feed, which never skips an event (see `routes::events`).
//!
//! **Reports.** [`consents`] reads only the rollups plus, for read-your-writes, the tenant's
//! events after the cursor (at most [`TAIL_LIMIT`]; when more wait, the answer is the rollups
//! alone and says `pending_events` > 0). [`opt_outs`] reads the opt-out requests received in the
//! range (an index range on `(tenant_id, received_at)`; requests are few next to events) and the
//! GPC submissions from the rollups.

use crate::db::models::analytics::{self as rollups, Filter};
use crate::db::models::event::FeedFact;
use crate::db::models::opt_out::OptOutRequest;
use crate::db::models::{naive, utc};
use crate::db::AnyConnection;
use crate::domain::analytics::{nearest_rank, EventFact, Interval, Outcome, Rollup, GPC_SOURCE};
use crate::domain::deadline::BusinessCalendar;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryResult;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Events rolled up per transaction.
pub const PAGE: i64 = 5_000;

/// Most events after the cursor a report counts from the events themselves.
pub const TAIL_LIMIT: i64 = 10_000;

/// The longest range a report covers, in days (ten years).
pub const MAX_RANGE_DAYS: i64 = 3_660;

fn facts(rows: &[FeedFact]) -> impl Iterator<Item = EventFact<'_>> {
    rows.iter().map(|e| EventFact {
        subject_id: &e.subject_id,
        recorded_at: e.recorded_at,
        occurred_at: e.occurred_at,
        site_id: e.site_id.as_deref(),
        region: e.region.as_deref(),
        purpose: &e.purpose_key,
        source: &e.source,
        decision: &e.decision,
    })
}

/// Rolls up the next page of `tenant_id`'s feed (events of transactions below `horizon`, see
/// `db::backend::feed_horizon`, read before this call). Returns how many events it added:
/// 0 when the tenant is up to date or another instance committed the same page first.
///
/// A page ends on a whole submission: when it is full, the trailing events of its last
/// submission are left for the next page, so a submission is never split (and classified
/// twice).
pub fn roll_up_page(conn: &mut AnyConnection, tenant_id: &str, horizon: i64) -> QueryResult<usize> {
    let start = rollups::cursor(conn, tenant_id)?;
    let mut rows = FeedFact::feed(conn, tenant_id, start, horizon, PAGE)?;
    if rows.len() as i64 == PAGE {
        rows.truncate(whole_submissions(&rows));
    }
    let Some(end) = rows.last().map(|e| (e.tx_id, e.seq)) else { return Ok(0) };
    let mut rollup = Rollup::default();
    rollup.add(facts(&rows));
    let now = naive(super::now());
    crate::db::backend::write_transaction(conn, |conn| {
        if rollups::lock_cursor(conn, tenant_id, now)? != start {
            return Ok(0);
        }
        rollups::add(conn, tenant_id, &rollup)?;
        rollups::advance_cursor(conn, tenant_id, end, now)?;
        Ok(rows.len())
    })
}

/// How many of a full page's `rows` to count: all but the trailing events of its last
/// submission (one subject, one `recorded_at`), which the next page reads whole; all of them when
/// the page is one submission.
fn whole_submissions(rows: &[FeedFact]) -> usize {
    let Some(last) = rows.last() else { return 0 };
    let submission = (last.subject_id.as_str(), last.recorded_at);
    match rows.iter().rposition(|e| (e.subject_id.as_str(), e.recorded_at) != submission) {
        Some(i) => i + 1,
        None => rows.len(),
    }
}

/// Rolls up every tenant's feed until each is up to date (or `max_pages` pages were written in
/// all). Returns the events added.
pub fn roll_up_all(conn: &mut AnyConnection, max_pages: usize) -> QueryResult<usize> {
    let horizon = crate::db::backend::feed_horizon_now(conn)?;
    let tenants = crate::db::models::tenant::Tenant::all_ids(conn)?;
    let (mut added, mut pages) = (0, 0);
    for tenant in tenants {
        loop {
            let n = roll_up_page(conn, &tenant, horizon)?;
            added += n;
            pages += 1;
            if n == 0 || pages >= max_pages {
                break;
            }
        }
        if pages >= max_pages {
            break;
        }
    }
    Ok(added)
}

/// The parameters of a report, parsed.
#[derive(Debug, Clone)]
pub struct ConsentReportQuery {
    pub site: Option<String>,
    pub purpose: Option<String>,
    pub region: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub interval: Interval,
}

/// One decision count: how many `decision`s for `purpose` came from `source`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionCount {
    pub purpose: String,
    /// `granted` or `denied`.
    pub decision: String,
    /// `banner`, `preference_centre`, `gpc`, `placeholder`, `api`, `import`, `opt_out_request`
    /// or `one_click_unsubscribe`.
    pub source: String,
    pub count: i64,
}

/// Submissions that recorded decisions, with banner outcomes and the GPC share.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SubmissionCounts {
    /// Submissions that recorded at least one decision (any source).
    pub total: i64,
    /// Banner submissions (source `banner`) whose recorded decisions were all grants.
    pub accept_all: i64,
    /// Banner submissions whose recorded decisions were all refusals.
    pub reject_all: i64,
    /// Banner submissions with both.
    pub partial: i64,
    /// Submissions that recorded a GPC denial (`Sec-GPC: 1`, 11 CCR §7025).
    pub gpc: i64,
    /// Submissions from visitors (sources `banner`, `preference_centre`, `placeholder`, or GPC
    /// alone): the denominator of `gpc_share`.
    pub visitor_submissions: i64,
    /// `gpc` ÷ `visitor_submissions` (0 to 1; 0 when there were none).
    pub gpc_share: f64,
    /// Outcomes per source: `{"preference_centre": {"accept_all": 1, "partial": 2}}`.
    pub by_source: BTreeMap<String, BTreeMap<String, i64>>,
}

impl SubmissionCounts {
    fn add(&mut self, source: &str, outcome: Outcome, gpc: bool, n: i64) {
        self.total += n;
        if source == "banner" {
            match outcome {
                Outcome::AcceptAll => self.accept_all += n,
                Outcome::RejectAll => self.reject_all += n,
                Outcome::Partial => self.partial += n,
                Outcome::GpcOnly => {}
            }
        }
        if gpc {
            self.gpc += n;
        }
        if matches!(source, "banner" | "preference_centre" | "placeholder" | GPC_SOURCE) {
            self.visitor_submissions += n;
        }
        *self.by_source.entry(source.to_owned()).or_default().entry(outcome.as_str().to_owned()).or_default() += n;
    }

    fn finish(&mut self) {
        self.gpc_share =
            if self.visitor_submissions == 0 { 0.0 } else { self.gpc as f64 / self.visitor_submissions as f64 };
    }
}

/// One bucket of a consent report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentBucket {
    /// The bucket's first day (UTC): the day, the Monday of the ISO week, or the 1st of the
    /// month; only days within `from..=to` are counted.
    #[schema(value_type = String, format = Date)]
    pub start: NaiveDate,
    /// Counts of decisions per purpose, decision and source, largest first.
    pub decisions: Vec<DecisionCount>,
    pub submissions: SubmissionCounts,
}

/// `GET /v1/analytics/consents`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentReport {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub interval: Interval,
    pub site: Option<String>,
    pub purpose: Option<String>,
    pub region: Option<String>,
    /// Every bucket from the one holding `from` to the one holding `to`, empty ones included.
    pub buckets: Vec<ConsentBucket>,
    /// The whole range.
    pub totals: ConsentBucket,
    /// The change-feed cursor (as `GET /v1/events` hands out) up to which the rollups are
    /// complete.
    pub rolled_up_to: String,
    /// Events after that cursor, counted from the events themselves (read-your-writes).
    pub pending_counted: i64,
    /// When more than 10,000 events wait after that cursor (the worker is catching up), they
    /// are left out and this is 10,001 ("more than 10,000"); 0 when the answer is complete.
    pub pending_events: i64,
}

/// Decisions per (purpose, decision, source) and submissions of one bucket.
type BucketSums = (BTreeMap<(String, String, String), i64>, SubmissionCounts);

/// The consent report of `tenant_id` for `q` (see [`ConsentReport`]).
pub async fn consents(state: &AppState, tenant_id: &str, q: ConsentReportQuery) -> Result<ConsentReport, ApiError> {
    let filter = Filter {
        tenant_id: tenant_id.to_owned(),
        from: q.from,
        to: q.to,
        site: q.site.clone(),
        region: q.region.clone(),
        purpose: q.purpose.clone(),
    };
    let sums = state.db(move |conn| Ok(sums(conn, &filter)?)).await?;
    let (decisions, submissions, cursor, pending, skipped) =
        (sums.decisions, sums.submissions, sums.cursor, sums.pending_counted, sums.pending_events);

    let starts = q.interval.buckets(q.from, q.to);
    let mut per_bucket: BTreeMap<NaiveDate, BucketSums> = starts.iter().map(|s| (*s, Default::default())).collect();
    let mut all: BucketSums = Default::default();
    for (day, purpose, source, decision, n) in decisions {
        let bucket = per_bucket.entry(q.interval.bucket_start(day)).or_default();
        *bucket.0.entry((purpose.clone(), decision.clone(), source.clone())).or_default() += n;
        *all.0.entry((purpose, decision, source)).or_default() += n;
    }
    for (day, source, outcome, gpc, n) in submissions {
        per_bucket.entry(q.interval.bucket_start(day)).or_default().1.add(&source, outcome, gpc, n);
        all.1.add(&source, outcome, gpc, n);
    }
    let render = |start: NaiveDate, (counts, mut subs): BucketSums| {
        subs.finish();
        let mut decisions: Vec<DecisionCount> = counts
            .into_iter()
            .map(|((purpose, decision, source), count)| DecisionCount { purpose, decision, source, count })
            .collect();
        decisions.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.purpose, &a.decision, &a.source).cmp(&(&b.purpose, &b.decision, &b.source)))
        });
        ConsentBucket { start, decisions, submissions: subs }
    };
    Ok(ConsentReport {
        from: q.from,
        to: q.to,
        interval: q.interval,
        site: q.site,
        purpose: q.purpose,
        region: q.region,
        buckets: per_bucket.into_iter().map(|(s, b)| render(s, b)).collect(),
        totals: render(q.interval.bucket_start(q.from), all),
        rolled_up_to: cursor.1.to_string(),
        pending_counted: pending,
        pending_events: skipped,
    })
}

fn parse_day(raw: &str) -> QueryResult<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| crate::db::models::corrupt("analytics day", raw))
}

/// The rollup rows a filter selects, per day, with the events after the cursor added.
struct Sums {
    /// (day, purpose, source, decision, count)
    decisions: Vec<(NaiveDate, String, String, String, i64)>,
    /// (day, source, outcome, gpc, count)
    submissions: Vec<(NaiveDate, String, Outcome, bool, i64)>,
    cursor: (i64, i64),
    pending_counted: i64,
    pending_events: i64,
}

fn sums(conn: &mut AnyConnection, filter: &Filter) -> QueryResult<Sums> {
    let cursor = rollups::cursor(conn, &filter.tenant_id)?;
    let decisions = rollups::decision_sums(conn, filter)?;
    let submissions = rollups::submission_sums(conn, filter)?;
    let tail = FeedFact::feed(conn, &filter.tenant_id, cursor, i64::MAX, TAIL_LIMIT + 1)?;
    let mut rollup = Rollup::default();
    let (counted, skipped) = if tail.len() as i64 > TAIL_LIMIT {
        (0, tail.len() as i64)
    } else {
        rollup.add(facts(&tail));
        (tail.len() as i64, 0)
    };
    let mut decisions: Vec<(NaiveDate, String, String, String, i64)> = decisions
        .into_iter()
        .map(|r| Ok((parse_day(&r.day)?, r.purpose_key, r.source, r.decision, r.count)))
        .collect::<QueryResult<_>>()?;
    let mut submissions: Vec<(NaiveDate, String, Outcome, bool, i64)> = submissions
        .into_iter()
        .map(|r| Ok((parse_day(&r.day)?, r.source.clone(), r.outcome()?, r.gpc, r.count)))
        .collect::<QueryResult<_>>()?;
    let in_filter = |day: NaiveDate, site: &str, region: &str| {
        day >= filter.from
            && day <= filter.to
            && filter.site.as_deref().is_none_or(|s| s == site)
            && filter.region.as_deref().is_none_or(|r| r == region)
    };
    for (k, n) in rollup.decisions {
        if in_filter(k.day, &k.site, &k.region) && filter.purpose.as_deref().is_none_or(|p| p == k.purpose) {
            decisions.push((k.day, k.purpose, k.source, k.decision, n));
        }
    }
    for (k, n) in rollup.submissions {
        if in_filter(k.day, &k.site, &k.region) {
            submissions.push((k.day, k.source, k.outcome, k.gpc, n));
        }
    }
    Ok(Sums { decisions, submissions, cursor, pending_counted: counted, pending_events: skipped })
}

/// Opt-out requests of one channel (or all) received in the range.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct OptOutFigures {
    /// Requests received in the range.
    pub received: i64,
    /// Of those, completed (at any time up to now).
    pub completed: i64,
    /// Of those, not completed (overdue ones included).
    pub open: i64,
    /// Of those, not completed and past their deadline now (15 business days, 11 CCR §7026(f)).
    pub overdue: i64,
    /// Of the completed ones, completed after their deadline.
    pub completed_late: i64,
    /// Median business days from receipt to completion (nearest rank); `null` when none was
    /// completed.
    pub median_business_days: Option<i64>,
    /// 95th percentile of the same (nearest rank).
    pub p95_business_days: Option<i64>,
}

/// The figures of one channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelFigures {
    /// `web_form`, `gpc`, `phone`, `authorized_agent` or `email`. `gpc` counts browser
    /// submissions that carried the Global Privacy Control signal and recorded a denial: each is
    /// an opt-out request honoured at once (11 CCR §7025(c)), so it is completed in 0 days.
    pub channel: String,
    #[serde(flatten)]
    pub figures: OptOutFigures,
}

/// `GET /v1/analytics/opt-outs`: the evidence of how opt-out requests were handled (11 CCR
/// §7102 metrics; the risk assessments of 11 CCR §7150 ff.).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptOutReport {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    /// When `open` and `overdue` were evaluated.
    pub as_of: DateTime<Utc>,
    /// Every channel together (GPC included).
    pub totals: OptOutFigures,
    /// One entry per channel, in the order web_form, gpc, phone, authorized_agent, email.
    pub by_channel: Vec<ChannelFigures>,
}

/// The channels of the report, in order.
pub const CHANNELS: [&str; 5] = ["web_form", "gpc", "phone", "authorized_agent", "email"];

/// The opt-out report of `tenant_id` for requests received `from..=to` (UTC days).
pub async fn opt_outs(
    state: &AppState,
    tenant_id: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<OptOutReport, ApiError> {
    let now = super::now();
    let calendar = state.calendar.clone();
    let filter = Filter { tenant_id: tenant_id.to_owned(), from, to, site: None, region: None, purpose: None };
    let (requests, gpc) = state
        .db(move |conn| {
            let start = from.and_hms_opt(0, 0, 0).unwrap_or_default();
            let end = to.succ_opt().unwrap_or(to).and_hms_opt(0, 0, 0).unwrap_or_default();
            let requests = OptOutRequest::received_between(conn, &filter.tenant_id, start, end)?;
            let gpc: i64 = sums(conn, &filter)?.submissions.iter().filter(|s| s.3).map(|s| s.4).sum();
            Ok((requests, gpc))
        })
        .await?;
    Ok(opt_out_report(&calendar, from, to, now, &requests, gpc))
}

fn opt_out_report(
    calendar: &BusinessCalendar,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
    requests: &[OptOutRequest],
    gpc: i64,
) -> OptOutReport {
    let figures = |rows: &[&OptOutRequest], extra_instant: i64| {
        let mut f = OptOutFigures::default();
        let mut days: Vec<i64> = vec![0; extra_instant as usize];
        for r in rows {
            f.received += 1;
            match r.completed_at {
                Some(done) => {
                    f.completed += 1;
                    if done > r.due_at {
                        f.completed_late += 1;
                    }
                    days.push(calendar.business_days_between(utc(r.received_at), utc(done)));
                }
                None => {
                    f.open += 1;
                    if utc(r.due_at) < now {
                        f.overdue += 1;
                    }
                }
            }
        }
        f.received += extra_instant;
        f.completed += extra_instant;
        days.sort_unstable();
        f.median_business_days = nearest_rank(&days, 50);
        f.p95_business_days = nearest_rank(&days, 95);
        f
    };
    let all: Vec<&OptOutRequest> = requests.iter().collect();
    let by_channel = CHANNELS
        .iter()
        .map(|channel| {
            let rows: Vec<&OptOutRequest> = requests.iter().filter(|r| r.channel == *channel).collect();
            let extra = if *channel == "gpc" { gpc } else { 0 };
            ChannelFigures { channel: (*channel).to_owned(), figures: figures(&rows, extra) }
        })
        .collect();
    OptOutReport { from, to, as_of: now, totals: figures(&all, gpc), by_channel }
}

/// Checks a report's range: `from` ≤ `to`, at most [`MAX_RANGE_DAYS`] days. Defaults: `to` is
/// today (UTC), `from` 29 days before `to`.
pub fn range(from: Option<&str>, to: Option<&str>, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let parse = |field: &str, raw: &str| {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|_| raw.len() == 10)
            .ok_or_else(|| ApiError::invalid(field, "must be a date YYYY-MM-DD (UTC)"))
    };
    let to = to.map(|t| parse("to", t)).transpose()?.unwrap_or(today);
    let from = from.map(|f| parse("from", f)).transpose()?.unwrap_or(to - chrono::Duration::days(29));
    if from > to {
        return Err(ApiError::invalid("from", "is after to"));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid("from", format!("the range spans more than {MAX_RANGE_DAYS} days")));
    }
    Ok((from, to))
}

/// `GET /v1/policies/{policy_key}/reconsent-preview`: whom a revision requiring reconsent would
/// ask again if published now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReconsentPreview {
    pub policy_key: String,
    /// The purposes it would name; empty: all purposes.
    pub purposes: Vec<String>,
    /// Grants in force now, given before it, that would become `stale`.
    pub grants: i64,
    /// The data subjects holding them: the people the banner would ask again.
    pub people: i64,
}

/// Counts the grants (and their data subjects) of `purposes` (all when empty) given before now.
/// Errors: a purpose the tenant does not define (400).
pub async fn reconsent_preview(
    state: &AppState,
    config: &crate::service::directory::TenantConfig,
    policy_key: String,
    purposes: Vec<String>,
) -> Result<ReconsentPreview, ApiError> {
    for (i, p) in purposes.iter().enumerate() {
        if !config.purposes.iter().any(|q| q.key.as_str() == p) {
            return Err(ApiError::invalid(
                format!("purposes[{i}]"),
                format!("no purpose '{}'", crate::domain::shown(p)),
            ));
        }
    }
    let tenant = config.tenant.id.clone();
    let now = naive(super::now());
    let wanted = purposes.clone();
    let (grants, people) =
        state.db(move |conn| Ok(crate::db::models::state::grants_before(conn, &tenant, &wanted, now)?)).await?;
    Ok(ReconsentPreview { policy_key, purposes, grants, people })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(seq: i64, subject: &str, second: u32) -> FeedFact {
        let at = NaiveDate::from_ymd_opt(2026, 12, 5).and_then(|d| d.and_hms_opt(10, 0, second)).unwrap();
        FeedFact {
            seq,
            tx_id: 7,
            subject_id: subject.into(),
            purpose_key: "analytics".into(),
            decision: "granted".into(),
            source: "banner".into(),
            region: None,
            site_id: None,
            occurred_at: at,
            recorded_at: at,
        }
    }

    #[test]
    fn a_full_page_ends_on_a_whole_submission() {
        // Submissions: (a, 0s) of two events, (b, 1s) of one, (a, 2s) of three, cut by the page.
        let rows = [fact(1, "a", 0), fact(2, "a", 0), fact(3, "b", 1), fact(4, "a", 2), fact(5, "a", 2)];
        assert_eq!(whole_submissions(&rows), 3, "the last submission is left for the next page");
        assert_eq!(whole_submissions(&rows[..3]), 2);
        // The same subject at another instant is another submission.
        assert_eq!(whole_submissions(&rows[..4]), 3);
        // A page that is all one submission is counted whole: the next page could not hold it either.
        assert_eq!(whole_submissions(&rows[..2]), 2);
        assert_eq!(whole_submissions(&[]), 0);
    }
}
