//! What the person was shown (issue 11, item 2): the site config carries a signed presentation
//! token over the hash of what the banner shows; the public write sends it back; the server
//! verifies it, stores its hash with the events (covered by their chain hash), names it in the
//! receipt and carries the content in the proof bundle (GDPR Art. 7(1): the controller must be
//! able to demonstrate consent; Art. 4(11) and Recital 42: consent is informed only if the
//! person knew what they agreed to).

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use crate::rights::proof_verify;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

crate::backend_tests!(
    the_config_carries_a_verifiable_presentation_that_the_write_records,
    a_forged_or_altered_presentation_is_refused,
    a_stale_presentation_is_replaced_by_the_current_one,
);

fn claims_of(jws: &str) -> Value {
    serde_json::from_slice(&B64.decode(jws.split('.').nth(1).expect("a compact JWS")).expect("base64url")).unwrap()
}

/// The same JWS with its claims replaced (signature kept).
fn with_claims(jws: &str, claims: &Value) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(claims).unwrap()), parts[2])
}

async fn config(app: &TestApp, site: &str, query: &str) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/v1/sites/{site}/config{query}")))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The presentation hash recomputed from the config as the README says, with no Consentry code:
/// `sha256("consentry-presentation-v1\n" + sorted-key compact JSON)`.
fn recompute(config: &Value) -> String {
    let policies: Vec<Value> = config["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"key": p["policy_key"], "revision_date": p["revision_date"], "sha256": p["sha256"], "url": p["url"]}))
        .collect();
    let purposes: Vec<Value> = config["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"consent_model": p["consent_model"], "description": p["description"], "key": p["key"], "title": p["title"]}))
        .collect();
    // serde_json's map sorts keys (no preserve_order), like json.dumps(sort_keys=True).
    let text = serde_json::to_string(&json!({"policies": policies, "purposes": purposes})).unwrap();
    let mut h = Sha256::new();
    h.update(b"consentry-presentation-v1\n");
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

fn write_body(presentation: Option<&str>, region: &str) -> Value {
    let mut body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01",
                          "source": "banner", "region": region});
    if let Some(p) = presentation {
        body["presentation"] = json!(p);
    }
    body
}

async fn proof_of_visitor(app: &TestApp) -> (String, Value) {
    let res = app.get(&format!("/v1/subjects/visitor:{VISITOR}/proof")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let bundle = serde_json::from_str(&text).unwrap();
    (text, bundle)
}

async fn the_config_carries_a_verifiable_presentation_that_the_write_records(app: TestApp) {
    let site = app.seed().await;
    let cfg = config(&app, &site, "?region=US-CA&locale=en-US").await;
    let p = &cfg["presentation"];
    let token = p["token"].as_str().expect("a token");
    let sha = p["sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha, recompute(&cfg), "the hash is over exactly what the config shows");
    // sale_sharing is opt_out by default: its effective model is in what was hashed.
    assert!(cfg["purposes"].as_array().unwrap().iter().any(|x| x["consent_model"] == "opt_out"));

    // Signed with a published receipt key, for this tenant, site, region and locale.
    let claims = claims_of(token);
    assert_eq!(claims["schema"], "consentry-presentation/1");
    assert_eq!(claims["sha256"], sha);
    assert_eq!(claims["region"], "US-CA");
    assert_eq!(claims["locale"], "en-US");
    let header: Value = serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"]));
    // Issued at the start of the hour, so the config is the same bytes all hour (cacheable).
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(iat % 3600, 0);
    assert_eq!(chrono::DateTime::parse_from_rfc3339(p["issued_at"].as_str().unwrap()).unwrap().timestamp(), iat);
    let again = config(&app, &site, "?region=US-CA&locale=en-US").await;
    if chrono::Utc::now().timestamp() / 3600 == iat / 3600 {
        assert_eq!(again["presentation"], cfg["presentation"]);
    }
    // Another region resolves other models: another presentation.
    let fr = config(&app, &site, "?region=FR").await;
    assert_eq!(fr["presentation"]["sha256"], recompute(&fr));

    // The write carries it: its hash is stored with the events and named in the receipt.
    let res = app.visitor_post(&site, &write_body(Some(token), "US-CA")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("presentation_stale").is_none(), "{body}");
    let receipt = claims_of(body["receipt"].as_str().unwrap());
    assert_eq!(receipt["presentation"]["sha256"], sha);
    assert_eq!(receipt["presentation"]["issued_at"], p["issued_at"]);
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["presentation_sha256"], sha);

    // An older SDK sends none: accepted, nothing recorded for it.
    let res = app
        .visitor_post(
            &site,
            &json!({"visitor_id": VISITOR, "choices": {"analytics": false},
        "policy_revision": "2021-02-01", "source": "banner", "region": "US-CA"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert!(claims_of(body["receipt"].as_str().unwrap()).get("presentation").is_none());
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 2);
    assert!(events[1].get("presentation_sha256").is_none(), "{}", events[1]);

    // The proof bundle carries the presentation's content and token; it verifies offline.
    let (text, bundle) = proof_of_visitor(&app).await;
    let shown = bundle["presentations"].as_array().unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["sha256"], sha);
    let analytics =
        shown[0]["content"]["purposes"].as_array().unwrap().iter().find(|x| x["key"] == "analytics").cloned();
    assert_eq!(analytics.unwrap()["description"], "The analytics purpose");
    assert_eq!(bundle["events"][0]["presentation_sha256"], sha);
    let (ok, report) = proof_verify(&text);
    assert!(ok, "{report}");
    // The text shown altered in the bundle: caught.
    let changed = text.replacen("The analytics purpose", "The analytics purposes", 1);
    assert_ne!(changed, text);
    let (ok, report) = proof_verify(&changed);
    assert!(!ok);
    assert!(
        report["problems"].to_string().contains(&format!("presentation {sha}: its content does not hash")),
        "{report}"
    );
    // The presentation removed while an event names it: caught.
    let mut cut = bundle.clone();
    cut["presentations"] = json!([]);
    let (ok, report) = proof_verify(&cut.to_string());
    assert!(!ok);
    assert!(report["problems"].to_string().contains("is not in the bundle"), "{report}");
}

async fn a_forged_or_altered_presentation_is_refused(app: TestApp) {
    let site = app.seed().await;
    let cfg = config(&app, &site, "?region=FR").await;
    let token = cfg["presentation"]["token"].as_str().unwrap().to_owned();
    let refused = |body: Value| {
        assert_eq!(body["errors"][0]["field"], "presentation", "{body}");
        body["errors"][0]["message"].as_str().unwrap().to_owned()
    };

    // Claims altered (another hash), signature kept.
    let mut claims = claims_of(&token);
    claims["sha256"] = json!("0".repeat(64));
    let res = app.visitor_post(&site, &write_body(Some(&with_claims(&token, &claims)), "FR")).send().await.unwrap();
    assert!(refused(assert_problem(res, 400).await).contains("signature"));
    // Not a token at all; a receipt (signed by the same key) is not a presentation.
    let res = app.visitor_post(&site, &write_body(Some("not-a-token"), "FR")).send().await.unwrap();
    refused(assert_problem(res, 400).await);
    let receipt = app.record_visitor(&site, "2b9c3f1e-8d4a-4f6e-9a51-2c7d8e9f0a1b", json!({"analytics": true})).await;
    let res = app.visitor_post(&site, &write_body(receipt["receipt"].as_str(), "FR")).send().await.unwrap();
    refused(assert_problem(res, 400).await);
    // Issued for another region than the write's.
    let res = app.visitor_post(&site, &write_body(Some(&token), "US-CA")).send().await.unwrap();
    assert!(refused(assert_problem(res, 400).await).contains("region FR"));
    // Issued for another site of the tenant.
    let other = app.create_site().await;
    let res = app.visitor_post(&other, &write_body(Some(&token), "FR")).send().await.unwrap();
    assert!(refused(assert_problem(res, 400).await).contains("another site"));
    // Far too long.
    let res = app.visitor_post(&site, &write_body(Some(&"a".repeat(5000)), "FR")).send().await.unwrap();
    refused(assert_problem(res, 400).await);
    // Nothing was recorded for the visitor.
    assert!(app.events_of(&format!("visitor:{VISITOR}")).await.is_empty());
    // The genuine one is accepted.
    let res = app.visitor_post(&site, &write_body(Some(&token), "FR")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    // A revision published after the token was issued: a write that names it with the old token
    // would prove agreement to a policy the person was not shown (GDPR Art. 7(1)).
    let res = app
        .post_revision(
            "privacy",
            json!({"revision_date": "2026-11-01", "url": "https://www.example.com/privacy-2026",
                                         "requires_reconsent": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut body = write_body(Some(&token), "FR");
    body["policy_revision"] = json!("2026-11-01");
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(refused(assert_problem(res, 400).await), "shows policy revisions 2021-02-01, not 2026-11-01, the policy_revision of the write: fetch the config again and show the visitor its policies");
    let fresh = config(&app, &site, "?region=FR").await;
    body["presentation"] = fresh["presentation"]["token"].clone();
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

async fn a_stale_presentation_is_replaced_by_the_current_one(mut app: TestApp) {
    let site = app.seed().await;
    let cfg = config(&app, &site, "?region=FR").await;
    let token = cfg["presentation"]["token"].as_str().unwrap().to_owned();
    let first = cfg["presentation"]["sha256"].as_str().unwrap().to_owned();
    // The banner's text changes after the visitor saw it.
    let res = app
        .put_purpose(
            "analytics",
            json!({"title": "Statistics", "description": "Counting visits", "kind": "cookie_category",
                   "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 395}),
        )
        .await;
    assert!(res.status().is_success());
    let current = config(&app, &site, "?region=FR").await["presentation"]["sha256"].as_str().unwrap().to_owned();
    assert_ne!(current, first);

    // Within the age (default 24 h): what the visitor saw is recorded, not the new text.
    let res = app.visitor_post(&site, &write_body(Some(&token), "FR")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("presentation_stale").is_none());
    assert_eq!(claims_of(body["receipt"].as_str().unwrap())["presentation"]["sha256"], first);

    // Older than the configured age: accepted, the current presentation recorded, and said so.
    app.restart(|s| s.receipts.presentation_max_age = std::time::Duration::from_secs(1)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut body = write_body(Some(&token), "FR");
    body["choices"] = json!({"analytics": false});
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["presentation_stale"], true, "{body}");
    assert_eq!(claims_of(body["receipt"].as_str().unwrap())["presentation"]["sha256"], current);
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["presentation_sha256"], current);

    // Both texts are in the proof bundle, which verifies.
    let (text, bundle) = proof_of_visitor(&app).await;
    let mut hashes: Vec<&str> =
        bundle["presentations"].as_array().unwrap().iter().map(|p| p["sha256"].as_str().unwrap()).collect();
    hashes.sort_unstable();
    let mut expected = vec![first.as_str(), current.as_str()];
    expected.sort_unstable();
    assert_eq!(hashes, expected);
    assert!(text.contains("Counting visits") && text.contains("The analytics purpose"));
    let (ok, report) = proof_verify(&text);
    assert!(ok, "{report}");
}
