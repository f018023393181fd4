//! Prometheus metrics ([`prometheus`]), served at `/metrics` in the text format to the holder
//! of `metrics.token`.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `consentry_http_request_duration_seconds` (histogram; `_count` counts requests) | `route` (pattern), `method`, `status` | every request |
//! | `consentry_events_recorded_total` | `source` (`banner`, `api`, `gpc`, …) | consent events committed |
//! | `consentry_checks_total` / `consentry_checked_subjects_total` | `kind` (`single`, `bulk`) | consent checks |
//! | `consentry_write_batch_size` (histogram) | | submissions per write batch |
//! | `consentry_db_pool_wait_seconds` (histogram) | | time to check a connection out of the pool |
//! | `consentry_db_pool_connections` (gauge) | `state` (`idle`, `in_use`) | at scrape time |
//! | `consentry_webhook_deliveries` (gauge) | `status` (`pending`: the backlog, `dead`: dead letters) | at scrape time, all tenants |
//! | `consentry_rate_limited_total` | `policy` (`public`, `observations`, `token`) | 429 answers |
//! | `consentry_reads_total` | `target` (`replica`, `primary`) | reads that a replica may serve (checks, state reads, the feed, exports), by the database that served them |
//! | `consentry_replica_lag_seconds` (gauge) | | at scrape time: how far the read replica is behind (absent without one; +Inf before it was measured) |
//!
//! No label holds an identifier: routes are patterns (`/v1/subjects/{subject}/events`), never
//! paths; a path that matches no route is `(unmatched)`; methods outside RFC 9110's are `other`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The process's metrics (one registry per process, shared by every server it runs).
pub struct Metrics {
    registry: Registry,
    http: HistogramVec,
    events: IntCounterVec,
    checks: IntCounterVec,
    checked_subjects: IntCounter,
    batch_size: Histogram,
    pool_wait: Histogram,
    pool_connections: IntGaugeVec,
    webhook_deliveries: IntGaugeVec,
    rate_limited: IntCounterVec,
    reads: IntCounterVec,
    replica_lag: prometheus::Gauge,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The route pattern of each path this service serves (see [`RouteTable`]).
static ROUTES: LazyLock<RouteTable> = LazyLock::new(|| {
    let doc = crate::routes::openapi();
    let extra = ["/metrics", "/docs", "/docs/{_:.*}", "/openapi.json"];
    RouteTable::new(doc.paths.paths.keys().map(String::as_str).chain(extra))
});

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric.expect("a valid metric");
                registry.register(Box::new(metric.clone())).expect("a metric registered once");
                metric
            }};
        }
        let latency = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        Self {
            http: register!(HistogramVec::new(
                HistogramOpts::new(
                    "consentry_http_request_duration_seconds",
                    "HTTP requests: time to the response head"
                )
                .buckets(latency.clone()),
                &["route", "method", "status"]
            )),
            events: register!(IntCounterVec::new(
                Opts::new("consentry_events_recorded_total", "Consent events committed, by source"),
                &["source"]
            )),
            checks: register!(IntCounterVec::new(
                Opts::new("consentry_checks_total", "Consent checks answered (single subject or a list)"),
                &["kind"]
            )),
            checked_subjects: register!(IntCounter::new(
                "consentry_checked_subjects_total",
                "Subjects checked, over all checks"
            )),
            batch_size: register!(Histogram::with_opts(
                HistogramOpts::new("consentry_write_batch_size", "Submissions written per write batch")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0])
            )),
            pool_wait: register!(Histogram::with_opts(
                HistogramOpts::new("consentry_db_pool_wait_seconds", "Time to check a connection out of the pool")
                    .buckets(latency)
            )),
            pool_connections: register!(IntGaugeVec::new(
                Opts::new("consentry_db_pool_connections", "Database connections of the pool (at scrape time)"),
                &["state"]
            )),
            webhook_deliveries: register!(IntGaugeVec::new(
                Opts::new(
                    "consentry_webhook_deliveries",
                    "Webhook deliveries waiting (pending: the backlog) or dead-lettered (dead), all tenants"
                ),
                &["status"]
            )),
            rate_limited: register!(IntCounterVec::new(
                Opts::new("consentry_rate_limited_total", "Requests refused by a rate limit (429), by policy"),
                &["policy"]
            )),
            reads: register!(IntCounterVec::new(
                Opts::new(
                    "consentry_reads_total",
                    "Reads a replica may serve (checks, state reads, the feed, exports), by the database that served them"
                ),
                &["target"]
            )),
            replica_lag: register!(prometheus::Gauge::new(
                "consentry_replica_lag_seconds",
                "How far the read replica is behind the primary (at scrape time; only with a replica)"
            )),
            registry,
        }
    }
}

/// Counts one served request under its route pattern (found without regular expressions; see
/// [`route_pattern`]).
/// `route`: what [`route_pattern`] found.
pub fn observe_request(method: &actix_web::http::Method, route: Option<&'static str>, status: u16, elapsed: Duration) {
    // the three digits of every status, made once (labels are `&str`)
    static CODES: LazyLock<Vec<String>> = LazyLock::new(|| (0..1000).map(|c| format!("{c:03}")).collect());
    thread_local! {
        // Each thread's histograms by (route, method, status): `with_label_values` hashed the
        // three strings and took the vector's lock on every request (4% of a check's HTTP
        // thread). Keyed by the route's and method's address and length (each is one of a fixed
        // set of `'static` strings, so address and length name its text) and the status code.
        static HISTOGRAMS: std::cell::RefCell<std::collections::HashMap<[usize; 5], prometheus::Histogram>> =
            std::cell::RefCell::default();
    }
    let route = route.unwrap_or("(unmatched)");
    let method = method_label(method);
    let code = usize::from(status).min(999);
    let key = [route.as_ptr() as usize, route.len(), method.as_ptr() as usize, method.len(), code];
    let status = CODES[code].as_str();
    HISTOGRAMS.with_borrow_mut(|cache| {
        cache
            .entry(key)
            .or_insert_with(|| METRICS.http.with_label_values(&[route, method, status]))
            .observe(elapsed.as_secs_f64());
    });
}

fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts the events a committed submission wrote.
pub fn events_recorded(source: crate::domain::ConsentSource, events: usize) {
    if events > 0 {
        METRICS.events.with_label_values(&[source.as_str()]).inc_by(events as u64);
    }
}

/// Counts a consent check of `subjects` subjects.
pub fn checked(subjects: usize) {
    METRICS.checks.with_label_values(&[if subjects == 1 { "single" } else { "bulk" }]).inc();
    METRICS.checked_subjects.inc_by(subjects as u64);
}

/// Counts a routed read served by `target` (`replica` or `primary`).
pub fn read_served(target: &'static str) {
    METRICS.reads.with_label_values(&[target]).inc();
}

/// Observes the size of a write batch.
pub fn write_batch(size: usize) {
    METRICS.batch_size.observe(size as f64);
}

/// Observes how long a pool checkout waited.
pub fn pool_wait(waited: Duration) {
    METRICS.pool_wait.observe(waited.as_secs_f64());
}

/// Counts a 429 of `policy`.
pub fn rate_limited(policy: &'static str) {
    METRICS.rate_limited.with_label_values(&[policy]).inc();
}

/// What is read at scrape time.
pub struct Snapshot {
    pub pool_idle: u32,
    pub pool_in_use: u32,
    pub webhooks_pending: i64,
    pub webhooks_dead: i64,
    /// The read replica's lag in seconds (+Inf before it was measured); `None` without one.
    pub replica_lag: Option<f64>,
}

/// Reads the gauges of a scrape: the pool's connections, and the webhook deliveries pending and
/// dead (one indexed count each, `webhook_deliveries (status, next_attempt_at)`).
pub async fn snapshot(state: &crate::state::AppState) -> Result<Snapshot, crate::error::ApiError> {
    use crate::db::schema::webhook_deliveries::dsl as d;
    use diesel::prelude::*;
    let (pool_idle, pool_in_use) = state.pool.usage();
    let (webhooks_pending, webhooks_dead) = state
        .db(|conn| {
            let count = |conn: &mut crate::db::AnyConnection, status: &str| {
                d::webhook_deliveries.filter(d::status.eq(status)).count().get_result::<i64>(conn)
            };
            Ok((count(conn, "pending")?, count(conn, "dead")?))
        })
        .await?;
    let replica_lag = state.replica.as_ref().map(|r| r.lag().map_or(f64::INFINITY, |lag| lag.as_secs_f64()));
    Ok(Snapshot { pool_idle, pool_in_use, webhooks_pending, webhooks_dead, replica_lag })
}

/// The metrics in Prometheus' text format (0.0.4), with `snapshot`'s gauges.
pub fn render(snapshot: &Snapshot) -> String {
    let m = &*METRICS;
    m.pool_connections.with_label_values(&["idle"]).set(i64::from(snapshot.pool_idle));
    m.pool_connections.with_label_values(&["in_use"]).set(i64::from(snapshot.pool_in_use));
    m.webhook_deliveries.with_label_values(&["pending"]).set(snapshot.webhooks_pending);
    m.webhook_deliveries.with_label_values(&["dead"]).set(snapshot.webhooks_dead);
    let mut families = m.registry.gather();
    match snapshot.replica_lag {
        Some(lag) => m.replica_lag.set(lag),
        None => families.retain(|f| f.name() != "consentry_replica_lag_seconds"),
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The route pattern `path` matches, e.g. `/v1/subjects/{subject}/events`, or `None`.
///
/// A walk of a tree of path segments (a literal segment before a parameter, with
/// backtracking): no regular expression and no allocation, unlike actix's `match_pattern`,
/// which matches the path against every route again (6% of the HTTP threads on public writes).
pub fn route_pattern(path: &str) -> Option<&'static str> {
    ROUTES.find(path)
}

/// Builds the route table now rather than on the first request.
pub fn init() {
    LazyLock::force(&ROUTES);
    LazyLock::force(&METRICS);
}

/// Route patterns as a tree of segments. A `{name}` segment matches one non-empty segment; a
/// `{name:.*}` segment matches the rest of the path.
pub struct RouteTable {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    literals: Vec<(Box<str>, usize)>,
    param: Option<usize>,
    tail: Option<&'static str>,
    pattern: Option<&'static str>,
}

impl RouteTable {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        let mut table = Self { nodes: vec![Node::default()] };
        for pattern in patterns {
            let stored: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
            let mut node = 0;
            for segment in pattern.trim_start_matches('/').split('/') {
                if segment.starts_with('{') && (segment.ends_with(":.*}") || segment.ends_with(":.+}")) {
                    table.nodes[node].tail.get_or_insert(stored);
                    node = usize::MAX;
                    break;
                }
                node = if segment.starts_with('{') && segment.ends_with('}') {
                    match table.nodes[node].param {
                        Some(child) => child,
                        None => {
                            let child = table.push();
                            table.nodes[node].param = Some(child);
                            child
                        }
                    }
                } else {
                    match table.nodes[node].literals.iter().find(|(l, _)| &**l == segment) {
                        Some((_, child)) => *child,
                        None => {
                            let child = table.push();
                            table.nodes[node].literals.push((segment.into(), child));
                            child
                        }
                    }
                };
            }
            if node != usize::MAX {
                table.nodes[node].pattern.get_or_insert(stored);
            }
        }
        table
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    pub fn find(&self, path: &str) -> Option<&'static str> {
        self.walk(0, Some(path.strip_prefix('/')?))
    }

    fn walk(&self, node: usize, rest: Option<&str>) -> Option<&'static str> {
        let n = &self.nodes[node];
        let Some(rest) = rest else { return n.pattern };
        let (segment, next) = match rest.split_once('/') {
            Some((segment, next)) => (segment, Some(next)),
            None => (rest, None),
        };
        for (literal, child) in &n.literals {
            if **literal == *segment {
                if let Some(found) = self.walk(*child, next) {
                    return Some(found);
                }
            }
        }
        if !segment.is_empty() {
            if let Some(found) = n.param.and_then(|child| self.walk(child, next)) {
                return Some(found);
            }
        }
        n.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route_pattern_literals_first() {
        let t = RouteTable::new([
            "/v1/subjects/{subject}/events",
            "/v1/subjects/export",
            "/v1/sites/{site_key}/config",
            "/v1/sites/{site_id}/inventory",
            "/healthz",
            "/docs/{_:.*}",
        ]);
        assert_eq!(t.find("/v1/subjects/email:ada@example.com/events"), Some("/v1/subjects/{subject}/events"));
        assert_eq!(t.find("/v1/subjects/export"), Some("/v1/subjects/export"));
        assert_eq!(t.find("/v1/subjects/export/events"), Some("/v1/subjects/{subject}/events"), "backtracks");
        assert_eq!(t.find("/v1/sites/abc/config"), Some("/v1/sites/{site_key}/config"));
        assert_eq!(t.find("/v1/sites/abc/inventory"), Some("/v1/sites/{site_id}/inventory"));
        assert_eq!(t.find("/docs/index.html"), Some("/docs/{_:.*}"));
        assert_eq!(t.find("/healthz"), Some("/healthz"));
        for none in ["/", "", "/healthz/", "/v1/sites//config", "/v1/subjects/x/events/y", "/nothing"] {
            assert_eq!(t.find(none), None, "{none}");
        }
    }

    #[test]
    fn each_request_counts_under_its_own_route_method_and_status() {
        use actix_web::http::Method;
        // Two routes, both methods, two statuses, the unmatched: each observation lands in its
        // own series, also once the thread keeps its histograms.
        let (events, export) = (ROUTES.find("/v1/subjects/x/events"), ROUTES.find("/v1/subjects/export"));
        assert!(events.is_some() && export.is_some());
        let series = [
            (Method::GET, events, 200),
            (Method::GET, events, 404),
            (Method::POST, events, 200),
            (Method::GET, export, 200),
            (Method::GET, None, 200),
        ];
        let count = |(method, route, status): &(Method, Option<&'static str>, u16)| {
            let labels = [route.unwrap_or("(unmatched)"), method_label(method), &format!("{status:03}")];
            METRICS.http.with_label_values(&labels).get_sample_count()
        };
        let before: Vec<u64> = series.iter().map(count).collect();
        for (times, s) in (1..).zip(&series) {
            for _ in 0..times {
                observe_request(&s.0, s.1, s.2, Duration::from_millis(1));
            }
        }
        let after: Vec<u64> = series.iter().map(count).collect();
        let added: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(added, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn every_documented_route_is_its_own_pattern() {
        let doc = crate::routes::openapi();
        for path in doc.paths.paths.keys() {
            let example = path.replace('{', "x").replace('}', "");
            assert_eq!(route_pattern(&example), Some(path.as_str()), "{example}");
        }
    }
}
