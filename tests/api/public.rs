//! The public endpoints: site configuration, origins and CORS.

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::backend_tests!(
    config_lists_purposes_for_the_region_and_revisions_in_force,
    only_the_sites_origins_may_call,
    cors_preflight_answers_only_the_sites_origins,
    unknown_site_keys_are_404,
    browsers_may_not_claim_server_sources,
    a_site_presents_only_its_purposes,
    an_api_on_the_pages_site_sets_a_long_lived_visitor_cookie_on_writes,
    the_config_has_an_etag_and_answers_304_to_if_none_match,
);

/// Issue 12, item 3: Safari caps cookies set from JavaScript at 7 days; one set by the site's own
/// server in an HTTP response is kept, so the API served on the page's site sets the visitor's.
async fn an_api_on_the_pages_site_sets_a_long_lived_visitor_cookie_on_writes(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let post = |host: &'static str| app.visitor_post(&site, &body).header("Host", host).send();
    // consent.example.com serves www.example.com (ORIGIN): a cookie for example.com
    let res = post("consent.example.com").await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers().get("access-control-allow-credentials").unwrap(), "true");
    let cookie = res.headers().get("set-cookie").expect("a visitor cookie").to_str().unwrap().to_owned();
    let name = format!("consentry_{}_id", &site[3..11]);
    assert_eq!(cookie, format!("{name}={VISITOR}; Path=/; Max-Age=34128000; SameSite=Lax; Domain=example.com; Secure"));
    // an API on another site sets none (a third-party cookie is of no use, and not ours to set)
    let res = post("consent.saas.example").await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("set-cookie").is_none());
    // a refused write sets none
    let bad = json!({"visitor_id": VISITOR, "choices": {"necessary": false}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &bad).header("Host", "consent.example.com").send().await.unwrap();
    assert!(res.headers().get("set-cookie").is_none());
    assert_problem(res, 400).await;
}

async fn config_lists_purposes_for_the_region_and_revisions_in_force(app: TestApp) {
    let site = app.seed().await;
    let res = app
        .put_purpose("analytics", json!({"title": "Analytics", "description": "Audience measurement", "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 180, "regions": {"US": "opt_out"}}))
        .await;
    assert_eq!(res.status(), 200);
    let config: Value = app
        .client
        .get(app.url(&format!("/v1/sites/{site}/config?region=us-ny&locale=en")))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["site"]["site_key"], site);
    assert_eq!(config["region"], "US-NY");
    assert_eq!(config["gpc_honored"], true);
    assert_eq!(config["cookie_max_age_days"], 180, "the shortest max_age_days");
    let analytics = config["purposes"].as_array().unwrap().iter().find(|p| p["key"] == "analytics").unwrap();
    assert_eq!(analytics["consent_model"], "opt_out", "US entry applies to US-NY");
    assert_eq!(analytics["title"], "Analytics");
    assert_eq!(
        config["policies"],
        json!([{"policy_key": "privacy", "revision_date": "2021-02-01", "effective_at": "2021-02-01T00:00:00Z", "url": "https://www.example.com/privacy", "sha256": null, "requires_reconsent": false}])
    );
    let de: Value = app
        .client
        .get(app.url(&format!("/v1/sites/{site}/config?region=DE")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let analytics = de["purposes"].as_array().unwrap().iter().find(|p| p["key"] == "analytics").unwrap();
    assert_eq!(analytics["consent_model"], "opt_in");
}

async fn only_the_sites_origins_may_call(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app
        .client
        .post(app.url(&format!("/v1/sites/{site}/consents")))
        .header("Origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let p = assert_problem(res, 403).await;
    assert_eq!(p["detail"], "the origin 'https://evil.example' is not one of this site's origins");
    let res = app.client.post(app.url(&format!("/v1/sites/{site}/consents"))).json(&body).send().await.unwrap();
    assert_eq!(assert_problem(res, 403).await["detail"], "send the Origin header of one of this site's origins");
    // Two origins, one of them the site's, in either order (RFC 6454 §7.3: one Origin a request).
    for (first, second) in [(ORIGIN, "https://evil.example"), ("https://evil.example", ORIGIN)] {
        let res = app
            .client
            .post(app.url(&format!("/v1/sites/{site}/consents")))
            .header("Origin", first)
            .header("Origin", second)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, 400).await;
        assert_eq!(problem["errors"][0]["field"], "Origin", "{first} then {second}: {problem}");
    }
    let res = app
        .client
        .get(app.url(&format!("/v1/sites/{site}/config")))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 0);
    // The allowed origin gets CORS headers, on errors too so the page can read them.
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    let bad = json!({"visitor_id": "nope", "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &bad).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "visitor_id");
    // A body that does not even deserialise is answered with CORS headers too.
    let res = app
        .visitor_post(&site, &json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "source": "banner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    assert!(assert_problem(res, 400).await["detail"].as_str().unwrap().contains("missing field `policy_revision`"));
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
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_problem(res, 403).await;
}

async fn unknown_site_keys_are_404(app: TestApp) {
    app.seed().await;
    let res =
        app.client.get(app.url("/v1/sites/pk_doesnotexist/config")).header("Origin", ORIGIN).send().await.unwrap();
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

async fn a_site_presents_only_its_purposes(app: TestApp) {
    app.seed().await;
    let res = app
        .post("/v1/sites", &json!({"name": "blog", "origins": [ORIGIN], "purposes": ["necessary", "analytics"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let site: Value = res.json().await.unwrap();
    assert_eq!(site["purposes"], json!(["necessary", "analytics"]));
    let key = site["site_key"].as_str().unwrap();
    let config: Value =
        app.client.get(app.url(&format!("/v1/sites/{key}/config"))).send().await.unwrap().json().await.unwrap();
    let keys: Vec<&str> = config["purposes"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["analytics", "necessary"]);
    // Answering the site's one opt-in purpose is enough: marketing_email is not this site's to ask.
    let res = app.record_visitor(key, VISITOR, json!({"analytics": false})).await;
    assert_eq!(res["consents"]["needs_consent"], false);
    assert!(res["consents"]["purposes"].get("marketing_email").is_none());
    let body = json!({"visitor_id": VISITOR, "choices": {"marketing_email": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let p = assert_problem(app.visitor_post(key, &body).send().await.unwrap(), 400).await;
    assert_eq!(p["detail"], "choices.marketing_email: 'marketing_email' is not one of this site's purposes");
    // GPC still opts the person out of sale/sharing, which this site does not present (11 CCR §7025).
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": false}, "policy_revision": "2021-02-01", "source": "banner"});
    let res: Value = app.visitor_post(key, &body).header("Sec-GPC", "1").send().await.unwrap().json().await.unwrap();
    assert_eq!(res["gpc_honored"], true);
    assert_eq!(app.consents_of(&format!("visitor:{VISITOR}")).await["purposes"]["sale_sharing"]["source"], "gpc");
    let res =
        app.post("/v1/sites", &json!({"name": "x", "origins": [ORIGIN], "purposes": ["ghost"]})).send().await.unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "purposes[0]");
}

mod sdk {
    use crate::helpers::TestApp;

    crate::backend_tests!(the_sdk_and_the_demo_page_are_served);

    async fn the_sdk_and_the_demo_page_are_served(app: TestApp) {
        let res = app.client.get(app.url("/sdk/consentry.js")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/javascript; charset=utf-8");
        assert_eq!(res.headers()["cache-control"], "public, max-age=3600, must-revalidate");
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let body = res.bytes().await.unwrap();
        let built = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/sdk-js/dist/consentry.js")).unwrap();
        assert_eq!(body.as_ref(), built.as_slice(), "the binary serves the committed build");
        let res = app.client.get(app.url("/sdk/consentry.js")).header("If-None-Match", &etag).send().await.unwrap();
        assert_eq!(res.status(), 304);
        assert_eq!(app.client.get(app.url("/sdk/consentry.mjs")).send().await.unwrap().status(), 200);
        assert_eq!(app.client.get(app.url("/sdk/consentry.core.mjs")).send().await.unwrap().status(), 200);
        crate::helpers::assert_problem(app.client.get(app.url("/sdk/other.js")).send().await.unwrap(), 404).await;
        // The demo needs the example tenant.
        let res = app.client.get(app.url("/demo")).send().await.unwrap();
        assert!(crate::helpers::assert_problem(res, 404).await["detail"]
            .as_str()
            .unwrap()
            .contains("consentry serve --demo"));
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ntt-cloud-communications/consentry.toml");
        let summary: serde_json::Value = serde_json::from_slice(&app.cli(&["apply", file]).stdout).unwrap();
        let site_key = summary["sites"]["www.example.com"].as_str().unwrap();
        let res = app.client.get(app.url("/demo")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page = res.text().await.unwrap();
        assert!(page.contains(&format!("data-site-key=\"{site_key}\"")));
        assert!(page.contains(&format!("data-endpoint=\"{}\"", app.address)));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}

/// RFC 9110 §8.8.3 and §13.1.2: the config carries a strong `ETag` over its body; a request
/// whose `If-None-Match` names it (or `*`, or it among others, or it as a weak tag: the weak
/// comparison) gets `304 Not Modified` with the same `ETag` and no body; a changed config gets a
/// new tag and a 200.
async fn the_config_has_an_etag_and_answers_304_to_if_none_match(app: TestApp) {
    let site = app.seed().await;
    let url = app.url(&format!("/v1/sites/{site}/config?region=DE"));
    let get = |inm: Option<String>| {
        let mut req = app.client.get(&url).header("Origin", ORIGIN);
        if let Some(inm) = inm {
            req = req.header("If-None-Match", inm);
        }
        req.send()
    };
    let res = get(None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "strong: {etag}");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let body = res.bytes().await.unwrap();
    let expected = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&body))
    };
    assert_eq!(etag, format!("\"{expected}\""), "the SHA-256 of the body");

    for inm in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}"), "*".to_owned()] {
        let res = get(Some(inm.clone())).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN, "CORS as for the 200");
        assert!(res.bytes().await.unwrap().is_empty());
    }
    let res = get(Some("\"something-else\"".into())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag, "the same bytes, the same tag");

    // The config changes: the old tag no longer matches.
    let res = app
        .put_purpose("analytics", json!({"title": "Analytics v2", "description": "Audience measurement", "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
        .await;
    assert_eq!(res.status(), 200);
    let mut changed = None;
    for _ in 0..50 {
        let res = get(Some(etag.clone())).await.unwrap();
        if res.status() == StatusCode::OK {
            changed = Some(res);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let res = changed.expect("a changed config answers 200");
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
    let config: Value = res.json().await.unwrap();
    assert!(config.to_string().contains("Analytics v2"));
}
