//! The tracker audit (issue 12): sampled page views report the cookie names and hosts they saw
//! with the consent state at that moment; each is attributed to the purpose that declares it
//! (or `unclassified`) and counted per site, day (UTC), item, purpose and whether that purpose
//! was allowed. An item seen without consent is a violation: the first one per site, item and
//! purpose is reported with a `site.violation` webhook, written in the same transaction.
//!
//! Nothing personal is kept: no visitor id, no IP address (the rate limit holds a client's
//! address in memory for at most a minute), no cookie value, no query string.

use crate::db::backend::write_transaction_retrying;
use crate::db::models::observation::{ObservationRow, MAX_EXAMPLE_PATHS};
use crate::db::models::{naive, utc};
use crate::domain::audit::{classify, is_cookie_name, is_host, ItemKind, UNCLASSIFIED};
use crate::domain::webhook::WebhookEventType;
use crate::domain::{ConsentModel, Purpose, RevisionDate};
use crate::error::ApiError;
use crate::ledger::outbox;
use crate::service::directory::{SiteEntry, TenantConfig};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// The most reports one request carries.
pub const MAX_REPORTS: usize = 10;
/// The most cookie names, and hosts, one report lists.
pub const MAX_ITEMS: usize = 100;
/// The longest page path kept, in characters (longer ones are cut).
pub const MAX_PATH_CHARS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "page": "/checkout",
    "reports": [{"allowed": ["necessary"], "gpc": false, "cookies": ["_ga", "_ga_X1"], "hosts": ["www.google-analytics.com"]}]
}))]
pub struct ObservationBatch {
    /// The page's path (`location.pathname`); a query or fragment is dropped, and it is cut to
    /// 200 characters.
    #[schema(max_length = 2000, pattern = "^/")]
    pub page: String,
    /// 1 to 10 reports, one per consent state the page had while it observed.
    #[schema(min_items = 1, max_items = 10)]
    pub reports: Vec<ObservationReport>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationReport {
    /// The purposes allowed when the items were seen.
    #[schema(max_items = 200, value_type = Vec<crate::domain::PurposeKey>)]
    pub allowed: Vec<String>,
    /// The browser sent Global Privacy Control.
    #[serde(default)]
    pub gpc: bool,
    /// Cookie names the page could read (never values); at most 100.
    #[serde(default)]
    #[schema(max_items = 100, value_type = Vec<CookieName>)]
    pub cookies: Vec<String>,
    /// Hosts (lower case) of resources, scripts and iframes the page loaded; at most 100.
    #[serde(default)]
    #[schema(max_items = 100, value_type = Vec<HostName>)]
    pub hosts: Vec<String>,
}

/// A cookie name as reports carry it (the schema of [`is_cookie_name`]).
pub struct CookieName;
crate::domain::string_schema!(CookieName, pattern: COOKIE_NAME_PATTERN, min: 1, max: 128,
    "A cookie name (RFC 6265 token), no value.", example: "_ga");
/// The pattern of [`is_cookie_name`].
pub const COOKIE_NAME_PATTERN: &str = r"^[!#$%&'+\-.0-9A-Z^_`a-z|~]{1,128}$";

/// A host as reports carry it (the schema of [`is_host`]).
pub struct HostName;
crate::domain::string_schema!(HostName, pattern: HOST_NAME_PATTERN, min: 1, max: 253,
    "A host name in lower case, no scheme, port or path.", example: "www.google-analytics.com");
/// The pattern of [`is_host`].
pub const HOST_NAME_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";

/// The path of `page` without query or fragment, cut to [`MAX_PATH_CHARS`].
fn page_path(page: &str) -> String {
    let path = page.split(['?', '#']).next().unwrap_or_default();
    path.chars().take(MAX_PATH_CHARS).collect()
}

/// One counted item of a batch: its row key and counts.
type Key = (ItemKind, String, String, bool);

/// Checks a batch and counts it by (kind, item, purpose, without consent): (seen, with GPC).
/// `purposes`: the tenant's, by key. Errors: 400 naming the field.
fn count(purposes: &[Purpose], batch: &ObservationBatch) -> Result<BTreeMap<Key, (i64, i64)>, ApiError> {
    if batch.reports.is_empty() || batch.reports.len() > MAX_REPORTS {
        return Err(ApiError::invalid("reports", format!("send 1 to {MAX_REPORTS} reports")));
    }
    if !batch.page.starts_with('/') {
        return Err(ApiError::invalid("page", "must be the page's path, starting with /"));
    }
    let mut counts: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    for (i, r) in batch.reports.iter().enumerate() {
        if r.allowed.len() > 200 {
            return Err(ApiError::invalid(format!("reports[{i}].allowed"), "list at most 200 purposes"));
        }
        if let Some((j, bad)) = r.allowed.iter().enumerate().find(|(_, k)| crate::domain::PurposeKey::parse(k).is_err())
        {
            return Err(ApiError::invalid(
                format!("reports[{i}].allowed[{j}]"),
                format!("'{}' is not a purpose key", crate::domain::shown(bad)),
            ));
        }
        let allowed: BTreeSet<&str> = r.allowed.iter().map(String::as_str).collect();
        let mut items: BTreeSet<(ItemKind, &str)> = BTreeSet::new();
        for (field, kind, list) in [("cookies", ItemKind::Cookie, &r.cookies), ("hosts", ItemKind::Host, &r.hosts)] {
            if list.len() > MAX_ITEMS {
                return Err(ApiError::invalid(format!("reports[{i}].{field}"), format!("list at most {MAX_ITEMS}")));
            }
            for (j, item) in list.iter().enumerate() {
                let ok = match kind {
                    ItemKind::Cookie => is_cookie_name(item),
                    ItemKind::Host => is_host(item),
                };
                if !ok {
                    let what = match kind {
                        ItemKind::Cookie => "a cookie name (1 to 128 token characters, no value)",
                        ItemKind::Host => "a lower-case host name (no scheme, port or path)",
                    };
                    return Err(ApiError::invalid(format!("reports[{i}].{field}[{j}]"), format!("must be {what}")));
                }
                items.insert((kind, item));
            }
        }
        for (kind, item) in items {
            let (purpose, without) = match classify(purposes, kind, item) {
                // a notice_only purpose is always allowed, whatever the page said
                Some(p) => (
                    p.key.to_string(),
                    p.consent_model != ConsentModel::NoticeOnly && !allowed.contains(p.key.as_str()),
                ),
                None => (UNCLASSIFIED.to_owned(), false),
            };
            let c = counts.entry((kind, item.to_owned(), purpose, without)).or_default();
            c.0 += 1;
            c.1 += i64::from(r.gpc);
        }
    }
    Ok(counts)
}

/// The `data` of a `site.violation` webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteViolation {
    pub site_id: String,
    pub site_key: String,
    pub item_kind: ItemKind,
    /// The cookie name or host.
    pub item: String,
    /// The purpose that declares it, which was not allowed.
    pub purpose: String,
    /// The page's path (no query).
    pub page: String,
    /// The browser sent Global Privacy Control.
    pub gpc: bool,
    pub seen_at: DateTime<Utc>,
}

/// Records a batch of observations of `site` (see the module doc) in one transaction; returns
/// how many violations were new. Errors: 400 naming the field.
pub async fn record_observations(
    state: &AppState,
    config: &TenantConfig,
    site: &SiteEntry,
    batch: ObservationBatch,
) -> Result<usize, ApiError> {
    let counts = count(&config.purposes, &batch)?;
    let now = crate::service::now();
    let day = now.date_naive().format("%Y-%m-%d").to_string();
    let path = page_path(&batch.page);
    let rows: Vec<ObservationRow> = counts
        .into_iter()
        .map(|((kind, item, purpose, without), (seen, gpc))| ObservationRow {
            tenant_id: site.site.tenant_id.clone(),
            site_id: site.site.id.clone(),
            day: day.clone(),
            item_kind: kind.as_str().to_owned(),
            item,
            purpose_key: purpose,
            without_consent: without,
            seen,
            seen_with_gpc: gpc,
            example_paths: serde_json::Value::from(vec![path.clone()]).to_string(),
            first_seen_at: naive(now),
            last_seen_at: naive(now),
        })
        .collect();
    let site_key = site.site.site_key.clone();
    let fresh = state
        .db(move |conn| {
            Ok(write_transaction_retrying::<_, diesel::result::Error>(conn, |conn| {
                let mut fresh = Vec::new();
                for row in &rows {
                    match row.find_same(conn)? {
                        Some(mut stored) => {
                            let mut paths = stored.paths()?;
                            if paths.len() < MAX_EXAMPLE_PATHS && !paths.contains(&path) {
                                paths.push(path.clone());
                                stored.example_paths = serde_json::Value::from(paths).to_string();
                            }
                            row.update_counts(conn, &stored)?;
                        }
                        None => {
                            if row.without_consent
                                && !ObservationRow::violated_before(
                                    conn,
                                    &row.site_id,
                                    &row.item_kind,
                                    &row.item,
                                    &row.purpose_key,
                                )?
                            {
                                fresh.push(SiteViolation {
                                    site_id: row.site_id.clone(),
                                    site_key: site_key.clone(),
                                    item_kind: ItemKind::parse(&row.item_kind).unwrap_or(ItemKind::Cookie),
                                    item: row.item.clone(),
                                    purpose: row.purpose_key.clone(),
                                    page: path.clone(),
                                    gpc: row.seen_with_gpc > 0,
                                    seen_at: utc(row.first_seen_at),
                                });
                            }
                            row.insert(conn)?;
                        }
                    }
                }
                let n = fresh.len();
                if n > 0 {
                    let tenant = rows[0].tenant_id.clone();
                    outbox::enqueue(conn, &tenant, WebhookEventType::SiteViolation, now, |_| Ok(fresh))?;
                }
                Ok(n)
            })?)
        })
        .await?;
    if fresh > 0 {
        state.wake_webhooks();
    }
    Ok(fresh)
}

// ---- Reading

/// A `since` query value: a date `YYYY-MM-DD` (UTC, inclusive). Errors: 400 naming `since`.
pub fn since(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    raw.map(|s| {
        RevisionDate::parse(s)
            .map(|d| d.to_string())
            .map_err(|_| ApiError::invalid("since", "must be a date, YYYY-MM-DD (UTC, inclusive)"))
    })
    .transpose()
}

/// One item the audit saw on a site, over the days asked for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InventoryItem {
    pub item_kind: ItemKind,
    /// The cookie name or host.
    pub item: String,
    /// The purpose that declares it, or `unclassified`: for the privacy team to assign (add
    /// it to a purpose's `cookies` or `hosts`).
    pub purpose: String,
    pub classified: bool,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Reports that saw it.
    pub seen: i64,
    /// Of those, reports where its purpose was not allowed.
    pub seen_without_consent: i64,
    /// Of those, reports from a browser sending Global Privacy Control.
    pub seen_with_gpc: i64,
    /// Days (UTC, `YYYY-MM-DD`) it was seen, oldest first.
    pub days: Vec<String>,
    /// Up to 5 page paths where it was seen.
    pub example_paths: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Inventory {
    pub site_id: String,
    /// The first day counted (`YYYY-MM-DD`); null: from the start.
    pub since: Option<String>,
    /// Cookies, then hosts, by name.
    pub items: Vec<InventoryItem>,
}

/// An item seen while the purpose that declares it was not allowed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    pub item_kind: ItemKind,
    pub item: String,
    /// The purpose that declares it, which was not allowed.
    pub purpose: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Reports that saw it without consent.
    pub seen: i64,
    /// Of those, reports from a browser sending Global Privacy Control.
    pub seen_with_gpc: i64,
    /// Whether it was seen with GPC on (an opt-out the site must honour, 11 CCR §7025).
    pub gpc: bool,
    pub days: Vec<String>,
    /// Up to 5 page paths where it was seen without consent.
    pub example_paths: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Violations {
    pub site_id: String,
    pub since: Option<String>,
    pub violations: Vec<Violation>,
}

/// Rows (ordered by kind, item, purpose) merged per (kind, item, purpose) over their days.
fn merge(rows: Vec<ObservationRow>) -> Result<Vec<InventoryItem>, ApiError> {
    let mut out: Vec<InventoryItem> = Vec::new();
    for row in rows {
        let kind = ItemKind::parse(&row.item_kind)
            .ok_or_else(|| crate::db::models::corrupt("observation kind", &row.item_kind))?;
        let paths = row.paths()?;
        let same =
            out.last().is_some_and(|l| l.item_kind == kind && l.item == row.item && l.purpose == row.purpose_key);
        if !same {
            out.push(InventoryItem {
                item_kind: kind,
                classified: row.purpose_key != UNCLASSIFIED,
                item: row.item.clone(),
                purpose: row.purpose_key.clone(),
                first_seen_at: utc(row.first_seen_at),
                last_seen_at: utc(row.last_seen_at),
                seen: 0,
                seen_without_consent: 0,
                seen_with_gpc: 0,
                days: Vec::new(),
                example_paths: Vec::new(),
            });
        }
        let it = out.last_mut().expect("pushed above");
        it.first_seen_at = it.first_seen_at.min(utc(row.first_seen_at));
        it.last_seen_at = it.last_seen_at.max(utc(row.last_seen_at));
        it.seen += row.seen;
        it.seen_with_gpc += row.seen_with_gpc;
        if row.without_consent {
            it.seen_without_consent += row.seen;
        }
        if !it.days.contains(&row.day) {
            it.days.push(row.day.clone());
        }
        for p in paths {
            if it.example_paths.len() < MAX_EXAMPLE_PATHS && !it.example_paths.contains(&p) {
                it.example_paths.push(p);
            }
        }
    }
    for it in &mut out {
        it.days.sort();
    }
    Ok(out)
}

/// The site `site_id` of the caller's tenant. Errors: 404.
pub fn tenant_site<'a>(config: &'a TenantConfig, site_id: &str) -> Result<&'a SiteEntry, ApiError> {
    config
        .sites
        .iter()
        .find(|s| s.site.id == site_id)
        .map(|s| &**s)
        .ok_or_else(|| ApiError::NotFound("no such site".into()))
}

/// Everything the audit saw on a site since `since`.
pub async fn inventory(state: &AppState, site: &SiteEntry, since: Option<String>) -> Result<Inventory, ApiError> {
    let (tenant, id, s) = (site.site.tenant_id.clone(), site.site.id.clone(), since.clone());
    let rows = state.db(move |conn| Ok(ObservationRow::list(conn, &tenant, &id, s.as_deref(), false)?)).await?;
    Ok(Inventory { site_id: site.site.id.clone(), since, items: merge(rows)? })
}

/// The items seen without consent on a site since `since`.
pub async fn violations(state: &AppState, site: &SiteEntry, since: Option<String>) -> Result<Violations, ApiError> {
    let (tenant, id, s) = (site.site.tenant_id.clone(), site.site.id.clone(), since.clone());
    let rows = state.db(move |conn| Ok(ObservationRow::list(conn, &tenant, &id, s.as_deref(), true)?)).await?;
    let violations = merge(rows)?
        .into_iter()
        .map(|it| Violation {
            item_kind: it.item_kind,
            item: it.item,
            purpose: it.purpose,
            first_seen_at: it.first_seen_at,
            last_seen_at: it.last_seen_at,
            seen: it.seen,
            seen_with_gpc: it.seen_with_gpc,
            gpc: it.seen_with_gpc > 0,
            days: it.days,
            example_paths: it.example_paths,
        })
        .collect();
    Ok(Violations { site_id: site.site.id.clone(), since, violations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{CookiePattern, HostPattern};
    use crate::domain::{LegalBasis, PurposeKey, PurposeKind, RegionalModels};

    fn purpose(key: &str, model: ConsentModel, cookies: &[&str], hosts: &[&str]) -> Purpose {
        Purpose {
            key: PurposeKey::parse(key).unwrap(),
            title: key.into(),
            description: String::new(),
            kind: PurposeKind::CookieCategory,
            consent_model: model,
            legal_basis: LegalBasis::Consent,
            gpc_applies: false,
            max_age_days: None,
            retention_days: None,
            regions: RegionalModels::default(),
            cookies: cookies.iter().map(|c| CookiePattern::parse(c).unwrap()).collect(),
            hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect(),
        }
    }

    fn batch(allowed: &[&str], cookies: &[&str], hosts: &[&str]) -> ObservationBatch {
        ObservationBatch {
            page: "/p?q=secret".into(),
            reports: vec![ObservationReport {
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
                gpc: true,
                cookies: cookies.iter().map(|s| s.to_string()).collect(),
                hosts: hosts.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn items_are_attributed_to_the_declaring_purpose_and_flagged_without_consent() {
        let ps = [
            purpose("necessary", ConsentModel::NoticeOnly, &["session"], &[]),
            purpose("statistics", ConsentModel::OptIn, &["_ga", "_ga_*"], &["*.google-analytics.com"]),
        ];
        let c = count(&ps, &batch(&[], &["_ga", "_ga_X", "session", "other"], &["www.google-analytics.com"])).unwrap();
        let keys: Vec<_> = c.keys().map(|(k, i, p, w)| (k.as_str(), i.as_str(), p.as_str(), *w)).collect();
        assert_eq!(
            keys,
            [
                ("cookie", "_ga", "statistics", true),
                ("cookie", "_ga_X", "statistics", true),
                ("cookie", "other", "unclassified", false),
                // strictly necessary: never a violation, even when the page did not list it
                ("cookie", "session", "necessary", false),
                ("host", "www.google-analytics.com", "statistics", true),
            ]
        );
        assert!(c.values().all(|v| *v == (1, 1)));
        let allowed = count(&ps, &batch(&["statistics"], &["_ga"], &[])).unwrap();
        assert!(!allowed.keys().next().unwrap().3, "seen with consent");
    }

    #[test]
    fn malformed_items_are_refused_naming_the_field() {
        let ps = [purpose("statistics", ConsentModel::OptIn, &["_ga"], &[])];
        for (b, field) in [
            (batch(&[], &["_ga=GA1.1.123"], &[]), "reports[0].cookies[0]"),
            (batch(&[], &[], &["https://x.com"]), "reports[0].hosts[0]"),
            (batch(&["Statistics"], &[], &[]), "reports[0].allowed[0]"),
        ] {
            let ApiError::Invalid(f) = count(&ps, &b).unwrap_err() else { panic!() };
            assert_eq!(f[0].field, field);
        }
        assert_eq!(page_path("/a/b?email=x@y#z"), "/a/b");
    }

    #[test]
    fn the_schema_patterns_say_what_the_checks_take() {
        let cookie = regex::Regex::new(COOKIE_NAME_PATTERN).unwrap();
        let host = regex::Regex::new(HOST_NAME_PATTERN).unwrap();
        for c in ["_ga", "_ga_X1", "__Secure-x", "a.b", "", "a=b", "a b", "é", "_ga*", &"a".repeat(129)] {
            assert_eq!(cookie.is_match(c), is_cookie_name(c), "{c}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        for h in [
            "www.google-analytics.com",
            "127.0.0.1",
            "localhost",
            "",
            "A.com",
            "-a.com",
            "a-.com",
            "a..b",
            "x.com:443",
            &long_label,
        ] {
            assert_eq!(host.is_match(h), is_host(h), "{h}");
        }
    }
}
