//! Issue 10, security 3 (abuse limits) and operations 1 (Prometheus metrics).

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use reqwest::Response;
use serde_json::{json, Value};

crate::backend_tests!(
    public_requests_past_the_limit_get_429_with_ratelimit_headers,
    the_client_address_is_taken_from_x_forwarded_for_only_through_trusted_hops,
    each_management_token_has_its_own_limit,
    limits_can_be_lifted,
    metrics_count_requests_by_route_pattern_and_never_show_an_identifier,
);

fn visitor_body(visitor: &str) -> Value {
    json!({"visitor_id": visitor, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"})
}

/// The 429 of draft-ietf-httpapi-ratelimit-headers-10 (`RateLimit-Policy: "p";q=…;w=…`,
/// `RateLimit: "p";r=0;t=…`) with `Retry-After` (RFC 9110 §10.2.3, RFC 6585 §4) and a problem
/// body (RFC 9457). Returns the body.
async fn assert_limited(res: Response, policy: &str, quota: u32) -> Value {
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let retry: u64 = header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(header("ratelimit-policy").as_deref(), Some(format!("\"{policy}\";q={quota};w=60").as_str()));
    assert_eq!(header("ratelimit").as_deref(), Some(format!("\"{policy}\";r=0;t={retry}").as_str()));
    let body = assert_problem(res, 429).await;
    assert_eq!(body["type"].as_str().unwrap().rsplit('/').next(), Some("too-many-requests"));
    body
}

/// Security 3: 20,000 anonymous writes from one client were all taken. Now each site counts
/// each client address: past `public_per_minute`, 429 (with CORS headers, so the SDK reads it);
/// another site, or another client, is not affected.
async fn public_requests_past_the_limit_get_429_with_ratelimit_headers(mut app: TestApp) {
    let site = app.seed().await;
    let other_site = app.create_site().await;
    app.restart(|s| s.limits.public_per_minute = 4).await;
    for _ in 0..3 {
        let res = app.visitor_post(&site, &visitor_body(&uuid::Uuid::new_v4().to_string())).send().await.unwrap();
        assert_eq!(res.status(), 201);
    }
    // reads count too: the site's configuration
    let config = app.client.get(app.url(&format!("/v1/sites/{site}/config"))).header("Origin", ORIGIN);
    assert_eq!(config.send().await.unwrap().status(), 200);
    let res = app.visitor_post(&site, &visitor_body(VISITOR)).send().await.unwrap();
    assert_eq!(res.headers().get("access-control-allow-origin").unwrap(), ORIGIN);
    let exposed = res.headers().get("access-control-expose-headers").unwrap().to_str().unwrap().to_owned();
    assert!(exposed.contains("Retry-After") && exposed.contains("RateLimit-Policy"), "{exposed}");
    let body = assert_limited(res, "public", 4).await;
    assert!(body["detail"].as_str().unwrap().contains("at most 4 requests a minute"), "{body}");
    // nothing was written by the refused request
    assert_eq!(app.consents_of(&format!("visitor:{VISITOR}")).await["purposes"]["analytics"]["status"], "not_asked");
    // another site of the same client has its own quota
    let res = app.visitor_post(&other_site, &visitor_body(VISITOR)).send().await.unwrap();
    assert_eq!(res.status(), 201);
    // the one-click unsubscribe and the receipt check (no site) count the client address alone
    let verify = || app.client.post(app.url("/v1/receipts/verify")).json(&json!({"receipt": "x.y.z"})).send();
    for _ in 0..4 {
        assert_eq!(verify().await.unwrap().status(), 200);
    }
    assert_limited(verify().await.unwrap(), "public", 4).await;
}

/// Behind proxies, the client is the address the outermost trusted proxy saw: the
/// `trusted_proxy_hops`-th `X-Forwarded-For` entry from the right. Entries further left are the
/// client's own words and change nothing; without trusted hops the header is ignored.
async fn the_client_address_is_taken_from_x_forwarded_for_only_through_trusted_hops(mut app: TestApp) {
    let site = app.seed().await;
    app.restart(|s| {
        s.limits.public_per_minute = 2;
        s.limits.trusted_proxy_hops = 1;
    })
    .await;
    let forwarded = |app: &TestApp, xff: &str| {
        app.client
            .get(app.url(&format!("/v1/sites/{site}/config")))
            .header("Origin", ORIGIN)
            .header("X-Forwarded-For", xff.to_owned())
            .send()
    };
    let config = |xff: &str| forwarded(&app, xff);
    assert_eq!(config("198.51.100.1").await.unwrap().status(), 200);
    // a forged entry on the left: still 198.51.100.1, which the proxy appended
    assert_eq!(config("203.0.113.99, 198.51.100.1").await.unwrap().status(), 200);
    assert_limited(config("203.0.113.98, 198.51.100.1").await.unwrap(), "public", 2).await;
    // another client behind the same proxy
    assert_eq!(config("198.51.100.2").await.unwrap().status(), 200);
    // IPv6 clients are counted by their /64
    assert_eq!(config("2001:db8:1:2::1").await.unwrap().status(), 200);
    assert_eq!(config("2001:db8:1:2::ffff").await.unwrap().status(), 200);
    assert_limited(config("2001:db8:1:2::abcd").await.unwrap(), "public", 2).await;

    // no trusted proxy: the header is the client's word, and ignored
    app.restart(|s| s.limits.trusted_proxy_hops = 0).await;
    let config = |xff: &str| forwarded(&app, xff);
    assert_eq!(config("198.51.100.10").await.unwrap().status(), 200);
    assert_eq!(config("198.51.100.11").await.unwrap().status(), 200);
    assert_limited(config("198.51.100.12").await.unwrap(), "public", 2).await;
}

/// Management endpoints count per token: one token past its quota does not hold up another.
async fn each_management_token_has_its_own_limit(mut app: TestApp) {
    let (other, _) = app.issue_token("acme", &["admin"], None);
    app.restart(|s| s.limits.token_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/sites").send().await.unwrap().status(), 200);
    }
    assert_limited(app.get("/v1/sites").send().await.unwrap(), "token", 3).await;
    let res = app.client.get(app.url("/v1/sites")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(res.status(), 200, "another token has its own quota");
    // a token that is not valid is refused as before (no quota of its own to fill)
    let res = app.client.get(app.url("/v1/sites")).bearer_auth("not-a-token").send().await.unwrap();
    assert_problem(res, 401).await;
}

/// `limits.enabled = false` (what bench/run.sh sets through `CONSENTRY__LIMITS__ENABLED`) lifts
/// every limit.
async fn limits_can_be_lifted(mut app: TestApp) {
    let site = app.seed().await;
    app.restart(|s| {
        s.limits.public_per_minute = 1;
        s.limits.token_per_minute = 1;
        s.limits.enabled = false;
    })
    .await;
    for _ in 0..5 {
        let res = app.client.get(app.url(&format!("/v1/sites/{site}/config"))).header("Origin", ORIGIN);
        assert_eq!(res.send().await.unwrap().status(), 200);
        assert_eq!(app.get("/v1/sites").send().await.unwrap().status(), 200);
    }
}

/// Operations 1: `/metrics` (Prometheus text) for the holder of `metrics.token`, with requests
/// by route pattern and status, events by source, checks, write batches, the pool and the
/// webhook backlog; paths, subjects, site keys and tokens never appear in it.
async fn metrics_count_requests_by_route_pattern_and_never_show_an_identifier(mut app: TestApp) {
    let site = app.seed().await;
    // off by default
    assert_problem(app.client.get(app.url("/metrics")).send().await.unwrap(), 404).await;
    app.restart(|s| s.metrics.token = Some(consentry::config::Secret::new("scrape-secret-42"))).await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let subject = "email:ada.lovelace@example.com";
    let res = app.record(json!({"subject": subject, "choices": {"marketing_email": true}, "source": "api"})).await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.get(&format!("/v1/subjects/{subject}/events")).send().await.unwrap().status(), 200);
    app.check("marketing_email", &[subject]).await;
    assert_eq!(app.get("/v1/no-such-thing/ada.lovelace@example.com").send().await.unwrap().status(), 404);

    assert_problem(app.client.get(app.url("/metrics")).send().await.unwrap(), 401).await;
    let res = app.client.get(app.url("/metrics")).bearer_auth(&app.token).send().await.unwrap();
    assert_problem(res, 401).await;
    let res = app.client.get(app.url("/metrics")).bearer_auth("scrape-secret-42").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let count = |route: &str, method: &str, status: u16| {
        value(&format!(
            "consentry_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
    };
    assert!(count("/v1/sites/{site_key}/consents", "POST", 201) >= 1.0, "{text}");
    assert!(count("/v1/subjects/{subject}/events", "GET", 200) >= 1.0, "{text}");
    assert!(count("(unmatched)", "GET", 404) >= 1.0, "{text}");
    assert!(value("consentry_events_recorded_total{source=\"banner\"}") >= 1.0, "{text}");
    assert!(value("consentry_events_recorded_total{source=\"api\"}") >= 1.0, "{text}");
    assert!(value("consentry_checks_total{kind=\"single\"}") >= 1.0, "{text}");
    assert!(value("consentry_write_batch_size_count") >= 2.0, "{text}");
    assert!(value("consentry_db_pool_wait_seconds_count") >= 1.0, "{text}");
    assert!(value("consentry_db_pool_connections{state=\"idle\"}") >= 1.0, "{text}");
    assert!(text.contains("consentry_webhook_deliveries{status=\"pending\"} "), "{text}");
    assert!(text.contains("consentry_webhook_deliveries{status=\"dead\"} "), "{text}");
    for secret in ["ada.lovelace", "example.com", VISITOR, &site, &app.token, "scrape-secret-42"] {
        assert!(!text.contains(secret), "the metrics show {secret}");
    }
}
