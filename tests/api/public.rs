//! The public endpoints: site configuration, origins and CORS.

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use serde_json::{json, Value};

crate::backend_tests!(
    config_lists_purposes_for_the_region_and_revisions_in_force,
    only_the_sites_origins_may_call,
    cors_preflight_answers_only_the_sites_origins,
    unknown_site_keys_are_404,
    browsers_may_not_claim_server_sources,
);

async fn config_lists_purposes_for_the_region_and_revisions_in_force(app: TestApp) {
    let site = app.seed().await;
    let res = app
        .put_purpose("analytics", json!({"title": "Analytics", "description": "Audience measurement", "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 180, "regions": {"US": "opt_out"}}))
        .await;
    assert_eq!(res.status(), 200);
    let config: Value = app.client.get(app.url(&format!("/v1/sites/{site}/config?region=us-ny&locale=en"))).header("Origin", ORIGIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["site"]["site_key"], site);
    assert_eq!(config["region"], "US-NY");
    assert_eq!(config["gpc_honored"], true);
    assert_eq!(config["cookie_max_age_days"], 180, "the shortest max_age_days");
    let analytics = config["purposes"].as_array().unwrap().iter().find(|p| p["key"] == "analytics").unwrap();
    assert_eq!(analytics["consent_model"], "opt_out", "US entry applies to US-NY");
    assert_eq!(analytics["title"], "Analytics");
    assert_eq!(config["policies"], json!([{"policy_key": "privacy", "revision_date": "2021-02-01", "effective_at": "2021-02-01T00:00:00Z", "url": "https://www.example.com/privacy", "sha256": null, "requires_reconsent": false}]));
    let de: Value = app.client.get(app.url(&format!("/v1/sites/{site}/config?region=DE"))).send().await.unwrap().json().await.unwrap();
    let analytics = de["purposes"].as_array().unwrap().iter().find(|p| p["key"] == "analytics").unwrap();
    assert_eq!(analytics["consent_model"], "opt_in");
}

async fn only_the_sites_origins_may_call(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.client.post(app.url(&format!("/v1/sites/{site}/consents"))).header("Origin", "https://evil.example").json(&body).send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let p = assert_problem(res, 403).await;
    assert_eq!(p["detail"], "the origin 'https://evil.example' is not one of this site's origins");
    let res = app.client.post(app.url(&format!("/v1/sites/{site}/consents"))).json(&body).send().await.unwrap();
    assert_eq!(assert_problem(res, 403).await["detail"], "send the Origin header of one of this site's origins");
    let res = app.client.get(app.url(&format!("/v1/sites/{site}/config"))).header("Origin", "https://evil.example").send().await.unwrap();
    assert_problem(res, 403).await;
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 0);
    // The allowed origin gets CORS headers, on errors too so the page can read them.
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    let bad = json!({"visitor_id": "nope", "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &bad).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "visitor_id");
}

async fn cors_preflight_answers_only_the_sites_origins(app: TestApp) {
    let site = app.seed().await;
    let url = app.url(&format!("/v1/sites/{site}/consents"));
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    assert!(res.headers()["access-control-allow-headers"].to_str().unwrap().contains("Idempotency-Key"));
    let res = app.client.request(reqwest::Method::OPTIONS, &url).header("Origin", "https://evil.example").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_problem(res, 403).await;
}

async fn unknown_site_keys_are_404(app: TestApp) {
    app.seed().await;
    let res = app.client.get(app.url("/v1/sites/pk_doesnotexist/config")).header("Origin", ORIGIN).send().await.unwrap();
    assert_eq!(assert_problem(res, 404).await["detail"], "no site has the key 'pk_doesnotexist'");
}

async fn browsers_may_not_claim_server_sources(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"sale_sharing": false}, "policy_revision": "2021-02-01", "source": "opt_out_request"});
    let p = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(p["errors"][0]["field"], "source");
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "source": "banner"});
    let p = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert!(p["detail"].as_str().unwrap().contains("missing field `policy_revision`"), "{p}");
}
