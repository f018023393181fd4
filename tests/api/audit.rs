//! Declared cookies and hosts of purposes, and the tracker audit (issue 12): observations from
//! sampled page views, the inventory, violations and the `site.violation` webhook.

use crate::helpers::{assert_problem, TestApp, ORIGIN};
use serde_json::{json, Value};

crate::backend_tests!(
    purposes_declare_cookies_and_hosts_and_the_site_config_shows_them,
    declared_cookies_and_hosts_are_checked,
    sites_take_an_audit_sample_rate_from_0_to_1,
    observations_are_counted_per_item_and_purpose_and_violations_listed,
    a_new_violation_fires_one_site_violation_webhook,
    observations_are_public_but_origin_checked_small_and_rate_limited,
    inventory_and_violations_are_tenant_scoped,
    the_apply_file_declares_cookies_hosts_and_the_sample_rate,
);

const STATISTICS: &str = "statistics";

/// `statistics` (opt_in) declaring Google Analytics' cookies and hosts, `necessary`
/// (notice_only) declaring the session cookie, a revision, and a site sampling every page view.
/// Returns (site id, site key).
async fn setup(app: &TestApp) -> (String, String) {
    let res = app
        .put_purpose(
            STATISTICS,
            json!({"title": "Statistics", "description": "", "kind": "cookie_category", "consent_model": "opt_in",
                   "legal_basis": "consent", "gpc_applies": false,
                   "cookies": ["_ga", "_ga_*"], "hosts": ["www.google-analytics.com", "*.doubleclick.net"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .put_purpose(
            "necessary",
            json!({"title": "Necessary", "description": "", "kind": "cookie_category", "consent_model": "notice_only",
                   "legal_basis": "legitimate_interest", "gpc_applies": false, "cookies": ["session"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post("/v1/sites", &json!({"name": "shop", "origins": [ORIGIN], "audit_sample_rate": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let site: Value = res.json().await.unwrap();
    assert_eq!(site["audit_sample_rate"], 1.0);
    (site["id"].as_str().unwrap().to_owned(), site["site_key"].as_str().unwrap().to_owned())
}

fn observe(app: &TestApp, site_key: &str, body: &Value) -> reqwest::RequestBuilder {
    // as navigator.sendBeacon sends a string: text/plain
    app.client
        .post(app.url(&format!("/v1/sites/{site_key}/observations")))
        .header("Origin", ORIGIN)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(body.to_string())
}

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app.get(path).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

async fn purposes_declare_cookies_and_hosts_and_the_site_config_shows_them(app: TestApp) {
    let (_, site_key) = setup(&app).await;
    let p = get(&app, "/v1/purposes/statistics").await;
    assert_eq!(p["cookies"], json!(["_ga", "_ga_*"]));
    assert_eq!(p["hosts"], json!(["www.google-analytics.com", "*.doubleclick.net"]));
    let config: Value = app
        .client
        .get(app.url(&format!("/v1/sites/{site_key}/config")))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stats = config["purposes"].as_array().unwrap().iter().find(|p| p["key"] == STATISTICS).unwrap();
    assert_eq!(stats["cookies"], json!(["_ga", "_ga_*"]));
    assert_eq!(stats["hosts"], json!(["www.google-analytics.com", "*.doubleclick.net"]));
    assert_eq!(config["audit_sample_rate"], 1.0);
    // a purpose declared without them has none; replacing a purpose replaces them
    let res = app
        .put_purpose(
            STATISTICS,
            json!({"title": "Statistics", "description": "", "kind": "cookie_category", "consent_model": "opt_in",
                   "legal_basis": "consent", "gpc_applies": false}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["cookies"].clone(), body["hosts"].clone()), (json!([]), json!([])));
}

async fn declared_cookies_and_hosts_are_checked(app: TestApp) {
    let base = json!({"title": "S", "description": "", "kind": "cookie_category", "consent_model": "opt_in",
                      "legal_basis": "consent", "gpc_applies": false});
    for (field, value, at) in [
        ("cookies", json!(["_ga", "_ga=1"]), "cookies[1]"),
        ("cookies", json!(["*"]), "cookies[0]"),
        ("hosts", json!(["https://www.google-analytics.com"]), "hosts[0]"),
        ("hosts", json!(["x.com/path"]), "hosts[0]"),
        ("hosts", json!((0..101).map(|i| format!("h{i}.example.com")).collect::<Vec<_>>()), "hosts"),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let res = app.put_purpose("s", body).await;
        assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], at);
    }
    let mut body = base.clone();
    body["hosts"] = json!(["WWW.Example.COM", "www.example.com"]);
    let res = app.put_purpose("s", body).await;
    assert_eq!(res.json::<Value>().await.unwrap()["hosts"], json!(["www.example.com"]), "lower-cased, deduplicated");
}

async fn sites_take_an_audit_sample_rate_from_0_to_1(app: TestApp) {
    for bad in [json!(-0.1), json!(1.5), json!("half")] {
        let res = app
            .post("/v1/sites", &json!({"name": "s", "origins": [ORIGIN], "audit_sample_rate": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "audit_sample_rate");
    }
    let res = app.post("/v1/sites", &json!({"name": "s", "origins": [ORIGIN]})).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["audit_sample_rate"], 0.0, "off by default");
}

async fn observations_are_counted_per_item_and_purpose_and_violations_listed(app: TestApp) {
    let (site_id, site_key) = setup(&app).await;
    // before consent: GA's cookie and host, the session cookie (strictly necessary), an unknown host
    let before = json!({"page": "/checkout?email=ada@example.com#x", "reports": [
        {"allowed": ["necessary"], "gpc": true, "cookies": ["_ga", "session"], "hosts": ["www.google-analytics.com", "cdn.example.net"]}]});
    let res = observe(&app, &site_key, &before).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // after consent: the same, allowed
    let after = json!({"page": "/", "reports": [
        {"allowed": ["necessary", "statistics"], "cookies": ["_ga", "_ga_ABC"], "hosts": ["stats.g.doubleclick.net"]}]});
    assert_eq!(observe(&app, &site_key, &after).send().await.unwrap().status(), 204);

    let inventory = get(&app, &format!("/v1/sites/{site_id}/inventory")).await;
    let items: Vec<(String, String, String, bool, i64, i64)> = inventory["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["item_kind"].as_str().unwrap().to_owned(),
                i["item"].as_str().unwrap().to_owned(),
                i["purpose"].as_str().unwrap().to_owned(),
                i["classified"].as_bool().unwrap(),
                i["seen"].as_i64().unwrap(),
                i["seen_without_consent"].as_i64().unwrap(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str, d: bool, e: i64, f: i64| (a.to_owned(), b.to_owned(), c.to_owned(), d, e, f);
    assert_eq!(
        items,
        vec![
            s("cookie", "_ga", STATISTICS, true, 2, 1),
            s("cookie", "_ga_ABC", STATISTICS, true, 1, 0),
            s("cookie", "session", "necessary", true, 1, 0),
            s("host", "cdn.example.net", "unclassified", false, 1, 0),
            s("host", "stats.g.doubleclick.net", STATISTICS, true, 1, 0),
            s("host", "www.google-analytics.com", STATISTICS, true, 1, 1),
        ]
    );
    let ga = &inventory["items"][0];
    // (a day's rows with consent come first)
    assert_eq!(ga["example_paths"], json!(["/", "/checkout"]), "paths without query or fragment");
    assert_eq!(ga["days"].as_array().unwrap().len(), 1);

    let v = get(&app, &format!("/v1/sites/{site_id}/violations")).await;
    let listed: Vec<(&str, &str, &str, bool)> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["item_kind"].as_str().unwrap(),
                x["item"].as_str().unwrap(),
                x["purpose"].as_str().unwrap(),
                x["gpc"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![("cookie", "_ga", STATISTICS, true), ("host", "www.google-analytics.com", STATISTICS, true)]
    );
    assert_eq!(v["violations"][0]["seen"], 1);
    assert_eq!(v["violations"][0]["example_paths"], json!(["/checkout"]));
    // nothing stored holds the query string or the address
    let dump = format!("{inventory}{v}");
    assert!(!dump.contains("ada@example.com") && !dump.contains("127.0.0.1"));

    let today = chrono::Utc::now().date_naive();
    let tomorrow = (today + chrono::Duration::days(1)).format("%Y-%m-%d");
    let later = get(&app, &format!("/v1/sites/{site_id}/violations?since={tomorrow}")).await;
    assert_eq!(later["violations"], json!([]));
    let since_today = get(&app, &format!("/v1/sites/{site_id}/violations?since={}", today.format("%Y-%m-%d"))).await;
    assert_eq!(since_today["violations"].as_array().unwrap().len(), 2);
    let res = app.get(&format!("/v1/sites/{site_id}/violations?since=yesterday")).send().await.unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "since");
}

async fn a_new_violation_fires_one_site_violation_webhook(app: TestApp) {
    let (site_id, site_key) = setup(&app).await;
    // a receiver that never answers: the delivery stays listed
    let res = app
        .post("/v1/webhooks", &json!({"url": "http://127.0.0.1:9/hook", "events": ["site.violation"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let bad = json!({"page": "/a", "reports": [{"allowed": [], "cookies": ["_ga"], "hosts": ["cdn.example.net"]}]});
    for _ in 0..3 {
        assert_eq!(observe(&app, &site_key, &bad).send().await.unwrap().status(), 204);
    }
    let list = get(&app, &format!("/v1/webhooks/{hook}/deliveries")).await;
    let deliveries = list["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "one per new violation, not per report: {list}");
    assert_eq!(deliveries[0]["event_type"], "site.violation");
    let data = &deliveries[0]["payload"]["data"];
    assert_eq!(
        (
            data["site_id"].as_str(),
            data["item_kind"].as_str(),
            data["item"].as_str(),
            data["purpose"].as_str(),
            data["page"].as_str()
        ),
        (Some(site_id.as_str()), Some("cookie"), Some("_ga"), Some(STATISTICS), Some("/a"))
    );
    // another item is another violation
    let other = json!({"page": "/b", "reports": [{"allowed": [], "hosts": ["ad.doubleclick.net"]}]});
    assert_eq!(observe(&app, &site_key, &other).send().await.unwrap().status(), 204);
    let list = get(&app, &format!("/v1/webhooks/{hook}/deliveries")).await;
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 2);
}

async fn observations_are_public_but_origin_checked_small_and_rate_limited(app: TestApp) {
    let (_, site_key) = setup(&app).await;
    let ok = json!({"page": "/", "reports": [{"allowed": [], "cookies": ["x"]}]});
    let url = app.url(&format!("/v1/sites/{site_key}/observations"));
    let res = app.client.post(&url).header("Content-Type", "text/plain").body(ok.to_string()).send().await.unwrap();
    assert_problem(res, 403).await;
    let res = app
        .client
        .post(&url)
        .header("Origin", "https://evil.example")
        .header("Content-Type", "text/plain")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    // no cookie values
    let res =
        observe(&app, &site_key, &json!({"page": "/", "reports": [{"allowed": [], "cookies": ["_ga=GA1.1.42"]}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "reports[0].cookies[0]");
    let big = json!({"page": "/", "reports": [{"allowed": [], "cookies": vec!["c".repeat(100); 200]}]});
    assert_problem(observe(&app, &site_key, &big).send().await.unwrap(), 413).await;
    let res = observe(&app, &site_key, &json!({"page": "/", "reports": []})).send().await.unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "reports");
    // at most 60 a minute per client: 200 requests in well under two minutes meet the limit
    let mut limited = None;
    for _ in 0..200 {
        let res = observe(&app, &site_key, &ok).send().await.unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), 204);
    }
    let res = limited.expect("the rate limit applies");
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 429).await;
}

async fn inventory_and_violations_are_tenant_scoped(app: TestApp) {
    let (site_id, _) = setup(&app).await;
    let other = app.create_tenant("other");
    for path in ["inventory", "violations"] {
        let res =
            app.client.get(app.url(&format!("/v1/sites/{site_id}/{path}"))).bearer_auth(&other).send().await.unwrap();
        assert_problem(res, 404).await;
        let res = app.client.get(app.url(&format!("/v1/sites/{site_id}/{path}"))).send().await.unwrap();
        assert_problem(res, 401).await;
    }
}

async fn the_apply_file_declares_cookies_hosts_and_the_sample_rate(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("consentry.toml");
    let toml = |rate: &str, cookie: &str| {
        format!(
            r#"tenant = "globex"
[[sites]]
name = "www.globex.example"
origins = ["{ORIGIN}"]
audit_sample_rate = {rate}
[purposes.statistics]
title = "Statistics"
description = ""
kind = "cookie_category"
consent_model = "opt_in"
legal_basis = "consent"
gpc_applies = false
cookies = ["{cookie}", "_ga_*"]
hosts = ["www.google-analytics.com"]
"#
        )
    };
    std::fs::write(&file, toml("0.25", "_ga")).unwrap();
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = summary["token"].as_str().unwrap().to_owned();
    let read = |path: &'static str| {
        let (app, token) = (&app, token.clone());
        async move { app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let p = read("/v1/purposes/statistics").await;
    assert_eq!(
        (p["cookies"].clone(), p["hosts"].clone()),
        (json!(["_ga", "_ga_*"]), json!(["www.google-analytics.com"]))
    );
    assert_eq!(read("/v1/sites").await["sites"][0]["audit_sample_rate"], 0.25);
    // applied again: the purpose is replaced, the existing site takes the new rate
    std::fs::write(&file, toml("1", "_gid")).unwrap();
    assert!(app.cli(&["apply", file.to_str().unwrap()]).status.success());
    assert_eq!(read("/v1/purposes/statistics").await["cookies"], json!(["_gid", "_ga_*"]));
    assert_eq!(read("/v1/sites").await["sites"][0]["audit_sample_rate"], 1.0);
    // the same checks as the API's
    std::fs::write(&file, toml("2", "_ga")).unwrap();
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit_sample_rate"));
    std::fs::write(&file, toml("1", "a=b")).unwrap();
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cookies[0]"), "{}", String::from_utf8_lossy(&out.stderr));
}
