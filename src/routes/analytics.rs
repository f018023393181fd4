//! `GET /v1/analytics/consents` and `GET /v1/analytics/opt-outs`: what the privacy team's
//! console charts, as JSON or CSV (`Accept: text/csv` or `format=csv`).

use crate::auth::{Caller, Scope};
use crate::domain::analytics::Interval;
use crate::domain::{PurposeKey, RegionCode};
use crate::error::ApiError;
use crate::service::analytics::{self as service, ConsentReport, ConsentReportQuery, OptOutFigures, OptOutReport};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_consent_analytics).service(get_opt_out_analytics);
}

/// The representation of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentAnalyticsQuery {
    /// A site's id or site key: only events recorded through it.
    pub site: Option<String>,
    /// Only decisions for this purpose (submission counts are not per purpose and ignore it).
    #[param(value_type = Option<crate::domain::PurposeKey>)]
    pub purpose: Option<String>,
    /// Only events recorded with this region (ISO 3166, e.g. `US-CA`).
    #[param(value_type = Option<crate::domain::RegionCode>)]
    pub region: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC; default: 29 days before `to`).
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: Option<String>,
    /// Last day, included, `YYYY-MM-DD` (UTC; default: today). At most 3,660 days after `from`.
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: Option<String>,
    /// Bucket width: `day` (default), `week` (ISO, from Monday) or `month`.
    pub interval: Option<Interval>,
    /// `json` (default) or `csv`; `Accept: text/csv` also selects CSV.
    pub format: Option<ReportFormat>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptOutAnalyticsQuery {
    /// First day of receipt, `YYYY-MM-DD` (UTC; default: 29 days before `to`).
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: Option<String>,
    /// Last day of receipt, included (UTC; default: today).
    #[param(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: Option<String>,
    /// `json` (default) or `csv`; `Accept: text/csv` also selects CSV.
    pub format: Option<ReportFormat>,
}

fn wants_csv(req: &HttpRequest, format: Option<ReportFormat>) -> bool {
    match format {
        Some(f) => f == ReportFormat::Csv,
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "text/csv")),
    }
}

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Result<HttpResponse, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(&row).map_err(ApiError::internal)?;
    }
    let bytes = out.into_inner().map_err(|e| ApiError::internal(e.into_error()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.csv\"")))
        .body(bytes))
}

/// Consent decisions and submissions per bucket, from rollups kept up to date by a worker that
/// follows the change feed (never a scan of the events). Requires `consents:read`.
///
/// Each bucket counts the decisions per purpose, decision and source, and the submissions
/// (one request's decisions, GPC apart): banner "accept all" / "reject all" / "partial"
/// outcomes, those that carried Global Privacy Control, and the GPC share. Days are UTC days of
/// `occurred_at`. Events committed since the rollups' cursor are counted from the events
/// (read-your-writes) unless more than 10,000 wait (`pending_events`).
///
/// CSV columns: `bucket_start,metric,purpose,decision,source,outcome,count`; `metric` is
/// `decisions` (purpose, decision, source), `submissions` (source, outcome) or `gpc_submissions`.
#[utoipa::path(
    tag = "analytics",
    security(("bearer" = [])),
    params(ConsentAnalyticsQuery),
    responses((status = 200, description = "The report", content(
        (ConsentReport = "application/json"),
        (String = "text/csv")
    )))
)]
#[get("/v1/analytics/consents")]
pub async fn get_consent_analytics(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: crate::extract::Query<ConsentAnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let (from, to) = service::range(query.from.as_deref(), query.to.as_deref(), service_today())?;
    let site = match query.site.as_deref() {
        None => None,
        Some(s) => Some(
            caller
                .config
                .sites
                .iter()
                .find(|e| e.site.id == s || e.site.site_key == s)
                .map(|e| e.site.id.clone())
                .ok_or_else(|| ApiError::invalid("site", "no site of this tenant has this id or site key"))?,
        ),
    };
    let purpose = query
        .purpose
        .as_deref()
        .map(|p| PurposeKey::parse(p).map(|k| k.to_string()).map_err(|m| ApiError::invalid("purpose", m)))
        .transpose()?;
    let region = query
        .region
        .as_deref()
        .map(|r| RegionCode::parse(r).map(|c| c.to_string()).map_err(|m| ApiError::invalid("region", m)))
        .transpose()?;
    let interval = query.interval.unwrap_or_default();
    let report =
        service::consents(&state, &caller.tenant_id, ConsentReportQuery { site, purpose, region, from, to, interval })
            .await?;
    if wants_csv(&req, query.format) {
        return csv_response("consent-analytics", consent_rows(&report));
    }
    Ok(HttpResponse::Ok().json(report))
}

fn consent_rows(report: &ConsentReport) -> Vec<Vec<String>> {
    let mut rows = vec![["bucket_start", "metric", "purpose", "decision", "source", "outcome", "count"]
        .map(str::to_owned)
        .to_vec()];
    for b in &report.buckets {
        let start = b.start.to_string();
        for d in &b.decisions {
            rows.push(vec![
                start.clone(),
                "decisions".into(),
                d.purpose.clone(),
                d.decision.clone(),
                d.source.clone(),
                String::new(),
                d.count.to_string(),
            ]);
        }
        for (source, outcomes) in &b.submissions.by_source {
            for (outcome, n) in outcomes {
                rows.push(vec![
                    start.clone(),
                    "submissions".into(),
                    String::new(),
                    String::new(),
                    source.clone(),
                    outcome.clone(),
                    n.to_string(),
                ]);
            }
        }
        rows.push(vec![
            start,
            "gpc_submissions".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            b.submissions.gpc.to_string(),
        ]);
    }
    rows
}

/// CCPA opt-out requests received in the range: received, completed, open, overdue, median and
/// 95th-percentile business days to complete, in all and by channel (web form, GPC, phone,
/// authorized agent, email): the figures of 11 CCR §7102 and the evidence the risk assessments
/// of 11 CCR §7150 ff. call for. Requires `consents:read`.
///
/// CSV columns: `channel,received,completed,open,overdue,completed_late,median_business_days,
/// p95_business_days`, one row per channel and a last row `all`.
#[utoipa::path(
    tag = "analytics",
    security(("bearer" = [])),
    params(OptOutAnalyticsQuery),
    responses((status = 200, description = "The report", content(
        (OptOutReport = "application/json"),
        (String = "text/csv")
    )))
)]
#[get("/v1/analytics/opt-outs")]
pub async fn get_opt_out_analytics(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: crate::extract::Query<OptOutAnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let (from, to) = service::range(query.from.as_deref(), query.to.as_deref(), service_today())?;
    let report = service::opt_outs(&state, &caller.tenant_id, from, to).await?;
    if wants_csv(&req, query.format) {
        let mut rows = vec![[
            "channel",
            "received",
            "completed",
            "open",
            "overdue",
            "completed_late",
            "median_business_days",
            "p95_business_days",
        ]
        .map(str::to_owned)
        .to_vec()];
        let row = |name: &str, f: &OptOutFigures| {
            let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
            vec![
                name.to_owned(),
                f.received.to_string(),
                f.completed.to_string(),
                f.open.to_string(),
                f.overdue.to_string(),
                f.completed_late.to_string(),
                opt(f.median_business_days),
                opt(f.p95_business_days),
            ]
        };
        for c in &report.by_channel {
            rows.push(row(&c.channel, &c.figures));
        }
        rows.push(row("all", &report.totals));
        return csv_response("opt-out-analytics", rows);
    }
    Ok(HttpResponse::Ok().json(report))
}

fn service_today() -> chrono::NaiveDate {
    crate::service::now().date_naive()
}
