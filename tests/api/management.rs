//! Sites, purposes and policy revisions through the management API.

use crate::helpers::{assert_problem, TestApp, ORIGIN};
use serde_json::{json, Value};

crate::backend_tests!(
    sites_are_created_with_normalised_origins_and_listed,
    invalid_origins_name_the_entry,
    purposes_are_created_then_replaced,
    concurrent_creation_of_one_purpose_creates_it_once,
    purpose_definitions_are_validated,
    revisions_are_published_once_and_listed,
    revision_fields_are_validated,
);

async fn sites_are_created_with_normalised_origins_and_listed(app: TestApp) {
    let res = app
        .post(
            "/v1/sites",
            &json!({"name": "Shop", "origins": ["https://Shop.Example.com:443", "http://127.0.0.1:8000"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let site: Value = res.json().await.unwrap();
    assert_eq!(site["origins"], json!(["https://shop.example.com", "http://127.0.0.1:8000"]));
    assert!(site["site_key"].as_str().unwrap().starts_with("pk_"));
    assert_eq!(site["site_key"].as_str().unwrap().len(), 27);
    let list: Value = app.get("/v1/sites").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["sites"].as_array().unwrap().len(), 1);
    assert_eq!(list["sites"][0]["id"], site["id"]);
}

async fn invalid_origins_name_the_entry(app: TestApp) {
    let res = app
        .post("/v1/sites", &json!({"name": "Shop", "origins": [ORIGIN, "https://example.com/path"]}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400).await;
    assert_eq!(p["errors"][0]["field"], "origins[1]");
    assert_eq!(p["detail"], "origins[1]: 'https://example.com/path' is not an origin: an origin is scheme://host[:port], with no path, query, fragment or credentials");
    let res = app.post("/v1/sites", &json!({"name": "Shop", "origins": []})).send().await.unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "origins");
}

async fn purposes_are_created_then_replaced(app: TestApp) {
    let body = json!({"title": "Statistics", "description": "Audience measurement", "kind": "cookie_category",
                      "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 395,
                      "regions": {"us": "opt_out"}});
    let res = app.put_purpose("statistics", body.clone()).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["regions"], json!({"US": "opt_out"}), "region codes are normalised");
    let mut changed = body.clone();
    changed["title"] = json!("Statistics cookies");
    let res = app.put_purpose("statistics", changed).await;
    assert_eq!(res.status(), 200);
    let replaced: Value = res.json().await.unwrap();
    assert_eq!(replaced["title"], "Statistics cookies");
    assert_eq!(replaced["created_at"], created["created_at"]);
    let one: Value = app.get("/v1/purposes/statistics").send().await.unwrap().json().await.unwrap();
    assert_eq!(one["title"], "Statistics cookies");
    let all: Value = app.get("/v1/purposes").send().await.unwrap().json().await.unwrap();
    assert_eq!(all["purposes"].as_array().unwrap().len(), 1);
}

async fn purpose_definitions_are_validated(app: TestApp) {
    let base = json!({"title": "T", "description": "", "kind": "processing", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false});
    let res = app.put_purpose("Not-Valid", base.clone()).await;
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "key");
    let mut b = base.clone();
    b["consent_model"] = json!("maybe");
    let p = assert_problem(app.put_purpose("p", b).await, 400).await;
    assert_eq!(p["errors"][0]["field"], "consent_model");
    let mut b = base.clone();
    b["regions"] = json!({"California": "opt_out"});
    let p = assert_problem(app.put_purpose("p", b).await, 400).await;
    assert_eq!(p["errors"][0]["field"], "regions.California");
    let mut b = base.clone();
    b["max_age_days"] = json!(0);
    assert_eq!(assert_problem(app.put_purpose("p", b).await, 400).await["errors"][0]["field"], "max_age_days");
    let mut b = base.clone();
    b["consent_model"] = json!("notice_only");
    b["gpc_applies"] = json!(true);
    assert_eq!(assert_problem(app.put_purpose("p", b).await, 400).await["errors"][0]["field"], "gpc_applies");
}

async fn revisions_are_published_once_and_listed(app: TestApp) {
    let hash = "3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8";
    let res = app.post_revision("privacy", json!({"revision_date": "2021-02-01", "url": "https://www.example.com/privacy", "sha256": hash.to_uppercase(), "requires_reconsent": false})).await;
    assert_eq!(res.status(), 201);
    let rev: Value = res.json().await.unwrap();
    assert_eq!(rev["sha256"], hash);
    assert_eq!(rev["effective_at"], "2021-02-01T00:00:00Z");
    assert_eq!(rev["in_force"], true);
    let res = app
        .post_revision(
            "privacy",
            json!({"revision_date": "2021-02-01", "url": "https://www.example.com/other", "requires_reconsent": true}),
        )
        .await;
    let p = assert_problem(res, 409).await;
    assert!(p["detail"].as_str().unwrap().contains("already has a revision dated 2021-02-01"));
    let res = app.post_revision("privacy", json!({"revision_date": "2023-01-01", "effective_at": "2023-01-15T08:00:00+01:00", "url": "https://www.example.com/privacy-2023", "requires_reconsent": false})).await;
    assert_eq!(res.status(), 201);
    let list: Value = app.get("/v1/policies/privacy/revisions").send().await.unwrap().json().await.unwrap();
    let dates: Vec<&str> =
        list["revisions"].as_array().unwrap().iter().map(|r| r["revision_date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2021-02-01", "2023-01-01"]);
    assert_eq!(list["revisions"][1]["effective_at"], "2023-01-15T07:00:00Z");
    let other: Value = app.get("/v1/policies/cookies/revisions").send().await.unwrap().json().await.unwrap();
    assert_eq!(other["revisions"], json!([]));
}

async fn revision_fields_are_validated(app: TestApp) {
    let cases = [
        (
            json!({"revision_date": "1 Feb 2021", "url": "https://e.example/p", "requires_reconsent": false}),
            "revision_date",
        ),
        (json!({"revision_date": "2021-02-01", "url": "ftp://e.example/p", "requires_reconsent": false}), "url"),
        (
            json!({"revision_date": "2021-02-01", "url": "https://e.example/p", "sha256": "abc", "requires_reconsent": false}),
            "sha256",
        ),
        (
            json!({"revision_date": "2021-02-01", "url": "https://e.example/p", "requires_reconsent": true, "purposes": ["ghost"]}),
            "purposes[0]",
        ),
        (
            json!({"revision_date": "2021-02-01", "url": "https://e.example/p", "requires_reconsent": false, "effective_at": "tomorrow"}),
            "effective_at",
        ),
    ];
    for (body, field) in cases {
        let p = assert_problem(app.post_revision("privacy", body).await, 400).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let list: Value = app.get("/v1/policies/privacy/revisions").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["revisions"], json!([]), "nothing was stored");
}

async fn concurrent_creation_of_one_purpose_creates_it_once(app: TestApp) {
    let body = json!({"title": "T", "description": "", "kind": "processing", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false});
    let results = futures_util::future::join_all((0..20).map(|_| app.put_purpose("newsletter", body.clone()))).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 19, "{statuses:?}");
}
