//! The data subject's rights and the record as evidence (issue 11): identifiers as people write
//! them (item 9), re-confirmation (item 10), the state as of an instant (item 3), export (item
//! 4, GDPR Art. 15 and 20) and erasure (item 6, GDPR Art. 17).

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::backend_tests!(
    surrounding_whitespace_in_identifiers_is_trimmed_everywhere,
    a_reconfirmation_is_an_event_and_restarts_max_age,
    the_state_as_of_an_instant_comes_from_the_events_and_the_revisions_then,
    as_recorded_answers_what_the_service_answered_then,
    an_export_holds_everything_about_the_person_and_their_links,
    an_erasure_removes_identifiers_keeps_proof_and_the_opt_out_of_sale,
    an_erasure_may_drop_the_opt_out_when_asked,
    a_proof_bundle_verifies_offline_and_names_what_was_changed,
    an_import_keeps_original_times_reports_bad_lines_and_adds_nothing_twice,
    an_erased_identifier_leaves_no_bytes_in_the_database_files,
    bulk_writes_keep_room_for_in_place_updates_and_compress_the_wal_of_their_own_transaction,
);

/// Issue 11, item 9: CRM exports carry spaces around identifiers; they are trimmed in writes,
/// checks, links, paths and the public visitor id. Other malformations stay a 400.
async fn surrounding_whitespace_in_identifiers_is_trimmed_everywhere(app: TestApp) {
    let site = app.seed().await;
    let res = app
        .record(json!({"subject": "  email: Ada@Example.com\t", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["consents"]["subject"], "email:ada@example.com");
    let r = app.check("marketing_email", &[" email:ada@example.com ", "email:ada@example.com"]).await;
    assert_eq!((r[0]["status"].as_str(), r[1]["status"].as_str()), (Some("granted"), Some("granted")));
    assert_eq!(r[0]["subject"], " email:ada@example.com ", "results echo the subject as given");
    let res =
        app.post("/v1/subjects/email:ada@example.com/links", &json!({"subject": " user:42 "})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.consents_of("user:42").await["purposes"]["marketing_email"]["status"], "granted");
    assert_eq!(app.consents_of("%20user:42%20").await["purposes"]["marketing_email"]["status"], "granted");
    let body = json!({"visitor_id": format!(" {VISITOR} "), "choices": {"analytics": true},
                      "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.consents_of(&format!("visitor:{VISITOR}")).await["purposes"]["analytics"]["status"], "granted");
    // Inside an identifier, whitespace is still an error.
    for bad in ["phone:+49 30 1234567", "email:a da@example.com", "user:4 2"] {
        let res = app.record(json!({"subject": bad, "choices": {"analytics": true}, "source": "api"})).await;
        assert_problem(res, 400).await;
    }
}

/// Issue 11, item 10 (GDPR Art. 7(1); the purpose's max age, e.g. the CNIL's 13 months): the
/// same choice given again is recorded and restarts `max_age_days`; a retry under one
/// `Idempotency-Key` still writes once.
async fn a_reconfirmation_is_an_event_and_restarts_max_age(app: TestApp) {
    app.seed().await;
    let then = chrono::Utc::now() - chrono::Duration::days(300);
    let first = app
        .record(json!({"subject": "user:1", "choices": {"analytics": true}, "policy_revision": "2021-02-01",
                       "source": "api", "occurred_at": then.to_rfc3339()}))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let expires = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["purposes"]["analytics"]["expires_at"].as_str().unwrap()).unwrap()
    };
    let before = expires(&app.consents_of("user:1").await);
    assert!(before < chrono::Utc::now() + chrono::Duration::days(96), "395 days from 300 days ago");
    let body =
        json!({"subject": "user:1", "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "api"});
    for _ in 0..2 {
        let res = app.post("/v1/consents", &body).header("Idempotency-Key", "reconfirm-1").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.json::<Value>().await.unwrap()["event_ids"].as_array().unwrap().len(), 1);
    }
    let events = app.events_of("user:1").await;
    assert_eq!(events.len(), 2, "the re-confirmation is one event, its retry none");
    assert_eq!((events[1]["purpose"].as_str(), events[1]["decision"].as_str()), (Some("analytics"), Some("granted")));
    let after = expires(&app.consents_of("user:1").await);
    assert!(after > chrono::Utc::now() + chrono::Duration::days(394), "max age restarts from the re-confirmation");
}

/// Issue 11, item 3: GDPR Art. 7(1), "what did this person agree to, and under which text, then".
async fn the_state_as_of_an_instant_comes_from_the_events_and_the_revisions_then(app: TestApp) {
    app.seed().await;
    let res = app
        .post_revision(
            "privacy",
            json!({"revision_date": "2025-05-01", "url": "https://www.example.com/privacy-2025",
                   "effective_at": "2025-05-01T00:00:00Z", "requires_reconsent": true, "purposes": ["analytics"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    for (granted, at) in [(true, "2025-01-01T00:00:00Z"), (false, "2025-07-01T00:00:00Z")] {
        let res = app
            .record(json!({"subject": "email:ada@example.com", "choices": {"analytics": granted},
                           "policy_revision": "2021-02-01", "source": "api", "occurred_at": at}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let app = &app;
    let as_of = |t: &str| {
        let path = format!("/v1/subjects/email:ada@example.com/consents?as_of={}", t.replace('+', "%2B"));
        async move {
            let res = app.get(&path).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let before = as_of("2024-12-31T23:59:59Z").await;
    assert_eq!(before["purposes"]["analytics"]["status"], "not_asked");
    assert_eq!(before["as_of"], "2024-12-31T23:59:59Z");
    let granted = as_of("2025-03-01T12:00:00+01:00").await;
    assert_eq!(granted["purposes"]["analytics"]["status"], "granted");
    assert_eq!(granted["purposes"]["analytics"]["updated_at"], "2025-01-01T00:00:00Z");
    assert_eq!(granted["policies_in_force"][0]["revision_date"], "2021-02-01");
    let stale = as_of("2025-06-01T00:00:00Z").await;
    assert_eq!(stale["purposes"]["analytics"]["status"], "stale", "the 2025-05-01 revision required reconsent");
    assert_eq!(stale["policies_in_force"][0]["revision_date"], "2025-05-01");
    assert_eq!(stale["policies_in_force"][0]["url"], "https://www.example.com/privacy-2025");
    let denied = as_of("2025-08-01T00:00:00Z").await;
    assert_eq!(denied["purposes"]["analytics"]["status"], "denied");
    // Now (no as_of) is the same as the latest state.
    assert_eq!(app.consents_of("email:ada@example.com").await["purposes"]["analytics"]["status"], "denied");

    for bad in ["yesterday", "2025-13-01T00:00:00Z", "2999-01-01T00:00:00Z"] {
        let res = app.get(&format!("/v1/subjects/email:ada@example.com/consents?as_of={bad}")).send().await.unwrap();
        let problem = assert_problem(res, 400).await;
        assert_eq!(problem["errors"][0]["field"], "as_of");
    }
}

/// Issue 11, item 3: `as_of` is the state as now known, so a revision published after the
/// instant with an earlier date counts from its date (the README's tour publishes one);
/// `as_recorded=true` is the state as the service held it then: what a check answered.
async fn as_recorded_answers_what_the_service_answered_then(app: TestApp) {
    use chrono::{Duration, SecondsFormat, Utc};
    app.seed().await;
    let res = app
        .record(json!({"subject": "user:rev-1", "choices": {"analytics": true}, "policy_revision": "2021-02-01",
                       "source": "api"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.check("analytics", &["user:rev-1"]).await[0]["status"], "granted");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let instant = Utc::now();
    let then = instant.to_rfc3339_opts(SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Published after `then`, dated the day before.
    let yesterday = (Utc::now() - Duration::days(1)).format("%Y-%m-%d").to_string();
    let res = app
        .post_revision(
            "privacy",
            json!({"revision_date": yesterday, "url": "https://www.example.com/privacy-new",
                   "effective_at": format!("{yesterday}T00:00:00Z"), "requires_reconsent": true, "purposes": ["analytics"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    assert_eq!(app.check("analytics", &["user:rev-1"]).await[0]["status"], "stale");

    let app = &app;
    let read = |query: String| async move {
        let res = app.get(&format!("/v1/subjects/user:rev-1/consents?{query}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()
    };
    let known = read(format!("as_of={then}")).await;
    assert_eq!(known["purposes"]["analytics"]["status"], "stale", "{known}");
    assert_eq!(known["policies_in_force"][0]["revision_date"], yesterday.as_str());
    let recorded = read(format!("as_of={then}&as_recorded=true")).await;
    assert_eq!(recorded["purposes"]["analytics"]["status"], "granted", "{recorded}");
    assert_eq!(recorded["purposes"]["analytics"]["allowed"], true);
    assert_eq!(recorded["policies_in_force"][0]["revision_date"], "2021-02-01");
    // Nor does an event recorded later count, though it occurred before `then` (and after the
    // grant, 20 ms earlier).
    let res = app
        .record(json!({"subject": "user:rev-1", "choices": {"analytics": false}, "source": "api",
                       "occurred_at": (instant - Duration::milliseconds(5)).to_rfc3339_opts(SecondsFormat::Micros, true)}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let recorded = read(format!("as_of={then}&as_recorded=true")).await;
    assert_eq!(recorded["purposes"]["analytics"]["status"], "granted", "{recorded}");
    assert_eq!(read(format!("as_of={then}")).await["purposes"]["analytics"]["status"], "denied");

    let res = app.get("/v1/subjects/user:rev-1/consents?as_recorded=true").send().await.unwrap();
    let problem = assert_problem(res, 400).await;
    assert_eq!(problem["errors"][0]["field"], "as_recorded");
}

async fn unsubscribe(app: &TestApp, subject: &str, purpose: &str) {
    let res = app.post("/v1/unsubscribe-links", &json!({"subject": subject, "purpose": purpose})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let res = app
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Issue 11, item 4: GDPR Art. 15 and 20, CCPA right to know.
async fn an_export_holds_everything_about_the_person_and_their_links(app: TestApp) {
    let site = app.seed().await;
    let visit = app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let res = app
        .record(json!({"subject": "email:ada@example.com", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post("/v1/subjects/email:ada@example.com/links", &json!({"subject": format!("visitor:{VISITOR}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post(
            "/v1/opt-outs",
            &json!({"subject": "email:ada@example.com", "channel": "web_form", "scope": "sale_sharing"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    unsubscribe(&app, "email:ada@example.com", "marketing_email").await;

    let res = app.get("/v1/subjects/email:Ada@example.com/export").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let export: Value = res.json().await.unwrap();
    assert_eq!(export["format"], "consentry-export/1");
    assert_eq!(export["found"], true);
    assert_eq!(export["subject"], "email:ada@example.com");
    assert_eq!(export["tenant"]["slug"], "acme");
    let text = export.to_string();
    assert_eq!(text.matches("ada@example.com").count(), 2, "only the subject as asked (and its consents' echo)");
    let identifiers: Vec<&str> =
        export["identifiers"].as_array().unwrap().iter().map(|i| i["identifier"].as_str().unwrap()).collect();
    assert_eq!(identifiers.len(), 2);
    assert!(identifiers.iter().any(|i| i.starts_with("email:h:")));
    assert!(identifiers.contains(&format!("visitor:{VISITOR}").as_str()));
    // The visitor's history was its own subject, merged: the link and its events are there.
    assert_eq!(export["links"].as_array().unwrap().len(), 1);
    let events = export["events"].as_array().unwrap();
    let by = |purpose: &str, source: &str| {
        events.iter().filter(|e| e["purpose"] == purpose && e["source"] == source).count()
    };
    assert_eq!(by("analytics", "banner"), 1);
    assert_eq!(by("marketing_email", "api"), 1);
    assert_eq!(by("sale_sharing", "opt_out_request"), 1);
    assert_eq!(by("marketing_email", "one_click_unsubscribe"), 1);
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["id"], visit["event_ids"][0]);
    assert!(events.iter().all(|e| e["hash"].as_str().map(str::len) == Some(64) && e["subject_id"].is_string()));
    assert_eq!(export["unsubscribes"].as_array().unwrap().len(), 1);
    assert_eq!(export["unsubscribes"][0]["purpose"], "marketing_email");
    let receipts = export["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3, "the visitor's, the API write's and the opt-out's");
    assert_eq!(receipts[0]["receipt"], visit["receipt"]);
    assert_eq!(receipts[0]["event_ids"], visit["event_ids"]);
    assert_eq!(export["opt_out_requests"].as_array().unwrap().len(), 1);
    assert_eq!(export["opt_out_requests"][0]["status"], "open");
    assert_eq!(export["consents"]["purposes"]["marketing_email"]["status"], "denied");
    assert_eq!(export["consents"]["purposes"]["analytics"]["status"], "granted");

    let nobody = app.get("/v1/subjects/user:nobody/export").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(nobody["found"], false);
    assert_eq!(nobody["events"], json!([]));
    let (reader, _) = app.issue_token("acme", &["consents:check"], None);
    let res = app.client.get(app.url("/v1/subjects/user:nobody/export")).bearer_auth(reader).send().await.unwrap();
    assert_problem(res, 403).await;
}

/// Issue 11, item 6: GDPR Art. 17; an erasure must not restart selling (Cal. Civ. Code
/// §1798.120, 11 CCR §7026); opt-out requests are kept 24 months (11 CCR §7101).
async fn an_erasure_removes_identifiers_keeps_proof_and_the_opt_out_of_sale(app: TestApp) {
    let site = app.seed().await;
    // Allowed until refused (legitimate interest): a refusal is an objection (GDPR Art. 21(2)).
    let res = app
        .put_purpose(
            "b2b_contact",
            json!({"title": "B2B contact", "description": "Calls about our products", "kind": "communication",
                   "consent_model": "opt_out", "legal_basis": "legitimate_interest", "gpc_applies": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    // Asked first in the EU, allowed until refused in the US (CCPA): a refusal in the US is an
    // opt-out too.
    let res = app
        .put_purpose(
            "partner_offers",
            json!({"title": "Partner offers", "description": "Offers from partners", "kind": "communication",
                   "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false,
                   "regions": {"US": "opt_out"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    let visit = app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    // A retry-safe write of the visitor: its stored response shows "subject": "visitor:…".
    let keyed = json!({"visitor_id": VISITOR, "choices": {"analytics": false}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &keyed).header("Idempotency-Key", "erase-me-1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .record(json!({"subject": "email:ada@example.com",
                       "choices": {"marketing_email": true, "b2b_contact": false, "partner_offers": false},
                       "source": "api", "region": "US-CA"}))
        .await;
    let written: Value = res.json().await.unwrap();
    app.post("/v1/subjects/email:ada@example.com/links", &json!({"subject": format!("visitor:{VISITOR}")}))
        .send()
        .await
        .unwrap();
    app.post("/v1/subjects/email:ada@example.com/links", &json!({"subject": "user:ada"})).send().await.unwrap();
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "user:ada", "channel": "web_form", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let events_before = app.events_of("email:ada@example.com").await.len();

    let res =
        app.client.delete(app.url("/v1/subjects/email:ada@example.com")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let erased: Value = res.json().await.unwrap();
    let removed: Vec<&str> =
        erased["removed"]["identifiers"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    assert_eq!(removed.len(), 3);
    assert!(removed.contains(&"user:ada") && removed.contains(&format!("visitor:{VISITOR}").as_str()));
    let email_hash = *removed.iter().find(|i| i.starts_with("email:h:")).unwrap();
    assert_eq!(erased["removed"]["links"], 1);
    // Erased by the email, the linked visitor's stored response goes too (GDPR Art. 17): a
    // replay of its key no longer returns the old body with the visitor's state.
    assert_eq!(erased["removed"]["stored_responses"], 1, "{erased}");
    assert_eq!(erased["kept"]["events"], events_before);
    assert_eq!(
        erased["kept"]["suppressions"],
        json!([{"identifier": email_hash, "purposes": ["b2b_contact", "partner_offers", "sale_sharing"]}])
    );

    // Not found by any identifier any more…
    let r = app.check("marketing_email", &["email:ada@example.com", "user:ada", &format!("visitor:{VISITOR}")]).await;
    assert!(r.iter().all(|r| r["status"] == "not_asked"), "{r:?}");
    assert!(app.events_of("user:ada").await.is_empty());
    // …except that selling does not restart for the address.
    let r = app.check("sale_sharing", &["email:ada@example.com"]).await;
    assert_eq!((r[0]["allowed"].as_bool(), r[0]["status"].as_str()), (Some(false), Some("denied")));
    // Nor what the person objected to (GDPR Art. 21(3)): without the entry, the opt_out
    // purpose's default would allow it again.
    let r = app.check("b2b_contact", &["email:ada@example.com"]).await;
    assert_eq!((r[0]["allowed"].as_bool(), r[0]["status"].as_str()), (Some(false), Some("denied")));
    let res = app
        .post(
            "/v1/consents/check",
            &json!({"purpose": "partner_offers", "subjects": ["email:ada@example.com"],
                                            "region": "US-CA"}),
        )
        .send()
        .await
        .unwrap();
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["results"][0]["status"], "denied", "{r}");
    let export =
        app.get("/v1/subjects/email:ada@example.com/export").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(export["events"].as_array().unwrap().len(), 3, "only the suppression's three denials");
    assert_eq!(export["identifiers"].as_array().unwrap().len(), 1);

    // The pseudonymous proof still verifies: chains and receipts.
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    for receipt in [&visit["receipt"], &written["receipt"]] {
        let res =
            app.client.post(app.url("/v1/receipts/verify")).json(&json!({"receipt": receipt})).send().await.unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["valid"], true);
    }
    // Erasing again: nobody behind the visitor id.
    let res = app
        .client
        .delete(app.url(&format!("/v1/subjects/visitor:{VISITOR}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
    let res = app.visitor_post(&site, &keyed).header("Idempotency-Key", "erase-me-1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("Idempotent-Replayed").is_none(), "recorded afresh, not replayed");
    let (writer, _) = app.issue_token("acme", &["consents:write", "consents:read"], None);
    let res = app.client.delete(app.url("/v1/subjects/user:x")).bearer_auth(writer).send().await.unwrap();
    assert_problem(res, 403).await;
    let _ = ORIGIN;
}

async fn an_erasure_may_drop_the_opt_out_when_asked(app: TestApp) {
    app.seed().await;
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "phone:+4930123456", "channel": "phone", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .client
        .delete(app.url("/v1/subjects/phone:+4930123456?keep_opt_out=false"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let erased: Value = res.json().await.unwrap();
    assert_eq!(erased["kept"]["suppressions"], json!([]));
    let r = app.check("sale_sharing", &["phone:+4930123456"]).await;
    assert_eq!(r[0]["status"], "not_asked");
    // The request itself is kept (11 CCR §7101), under the pseudonymous id.
    let list = app.get("/v1/opt-outs").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(list["opt_outs"].as_array().unwrap().len(), 1);
}

/// `consentry proof verify <file>` with no database to reach: prints its report.
pub fn proof_verify(bundle: &str) -> (bool, Value) {
    proof_verify_with(bundle, None)
}

/// `consentry proof verify [--jwks <file with jwks>] <bundle>`, offline: whether it passed and
/// its JSON report.
pub fn proof_verify_with(bundle: &str, jwks: Option<&Value>) -> (bool, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proof.json");
    std::fs::write(&path, bundle).unwrap();
    let mut args = vec!["proof".to_owned(), "verify".to_owned(), path.to_str().unwrap().to_owned()];
    if let Some(jwks) = jwks {
        let keys = dir.path().join("jwks.json");
        std::fs::write(&keys, jwks.to_string()).unwrap();
        args.extend(["--jwks".to_owned(), keys.to_str().unwrap().to_owned()]);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
        .args(&args)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .env_remove("CONSENTRY_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("a JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    // Exit 0: valid with pinned keys; 2: valid with the bundle's own keys only (a forger can
    // re-sign a whole bundle), with a warning; 1: broken.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = match (report["valid"].as_bool(), jwks.is_some()) {
        (Some(true), true) => 0,
        (Some(true), false) => {
            assert!(stderr.starts_with("warning: not pinned"), "{stderr}");
            2
        }
        _ => 1,
    };
    assert_eq!(out.status.code(), Some(expected), "{report} {stderr}");
    (expected != 1, report)
}

/// Issue 11, item 5: GDPR Art. 7(1), proof a third party can check without the database.
async fn a_proof_bundle_verifies_offline_and_names_what_was_changed(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true, "marketing_email": false})).await;
    let res = app
        .record(json!({"subject": "email:ada@example.com", "choices": {"marketing_email": true}, "source": "api",
                       "policy_revision": "2021-02-01"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.post("/v1/subjects/email:ada@example.com/links", &json!({"subject": format!("visitor:{VISITOR}")}))
        .send()
        .await
        .unwrap();
    let res = app.get("/v1/subjects/email:ada@example.com/proof").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains("ada@"), "no address in a proof bundle");
    let bundle: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["format"], "consentry-proof/1");
    assert_eq!(bundle["events"].as_array().unwrap().len(), 3);
    assert_eq!(bundle["receipts"].as_array().unwrap().len(), 2);
    assert_eq!(bundle["subject_ids"].as_array().unwrap().len(), 2);

    let (ok, report) = proof_verify(&text);
    assert!(ok, "{report}");
    let jwks: Value = app.get("/.well-known/jwks.json").send().await.unwrap().json().await.unwrap();
    let kid = jwks["keys"][0]["kid"].clone();
    assert_eq!(
        report,
        json!({"valid": true, "events": 3, "subjects": 2, "receipts": 2, "keys": [kid], "keys_pinned": false,
               "problems": []})
    );
    // Pinned to the service's published keys (fetched apart from the bundle), it verifies too.
    let (ok, report) = proof_verify_with(&text, Some(&jwks));
    assert!(ok && report["keys_pinned"] == json!(true), "{report}");

    // A bundle that carries another key under the service's kid (everything re-signed with it,
    // say) names it: a key's kid must be its RFC 7638 thumbprint. Pinned to the published keys,
    // a bundle with a key of its own fails even when its kid is honest.
    let other = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                       "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                       "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"});
    let mut swapped = bundle.clone();
    swapped["jwks"]["keys"][0]["x"] = other["x"].clone();
    let (ok, report) = proof_verify(&swapped.to_string());
    assert!(!ok);
    assert!(
        report["problems"].to_string().contains(&format!("the key named {} is not that key", kid.as_str().unwrap())),
        "{report}"
    );
    let (ok, report) = proof_verify_with(&text, Some(&json!({"keys": [other]})));
    assert!(!ok);
    assert!(report["problems"].to_string().contains("is not one of the trusted keys"), "{report}");

    // One byte of an event changed: its hash, and the attested digest, no longer hold.
    let first = bundle["events"][0]["id"].as_str().unwrap().to_owned();
    let changed = text.replacen("\"decision\":\"granted\"", "\"decision\":\"grantee\"", 1);
    assert_ne!(changed, text);
    let (ok, report) = proof_verify(&changed);
    assert!(!ok);
    let problems = report["problems"].to_string();
    assert!(problems.contains(&format!("event {first}")), "{problems}");
    assert!(problems.contains("differs from what was attested"), "{problems}");

    // The last event removed (with the rest untouched): the attested chain head is missing.
    let mut cut = bundle.clone();
    cut["events"].as_array_mut().unwrap().pop();
    let (ok, report) = proof_verify(&cut.to_string());
    assert!(!ok);
    assert!(report["problems"].to_string().contains("is not the attested one"), "{report}");

    // A receipt's signature altered.
    let mut forged = bundle.clone();
    let jws = forged["receipts"][0].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", &jws[..jws.len() - 2], if jws.ends_with('A') { "BB" } else { "AA" });
    forged["receipts"][0] = json!(flipped);
    let (ok, report) = proof_verify(&forged.to_string());
    assert!(!ok);
    assert!(report["problems"].to_string().contains("receipt 1:"), "{report}");

    let (ok, report) = proof_verify("not json");
    assert!(!ok && report["problems"][0].as_str().unwrap().contains("not JSON"));
    assert_problem(app.get("/v1/subjects/user:nobody/proof").send().await.unwrap(), 404).await;
}

fn import(app: &TestApp, dir: &std::path::Path, name: &str, text: &str, args: &[&str]) -> (bool, Value, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let format = if name.ends_with(".csv") { "csv" } else { "ndjson" };
    let mut all = vec!["import", "--format", format];
    all.extend_from_slice(args);
    let path = path.display().to_string();
    all.push(&path);
    let out = app.cli(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| json!({"no summary": stderr.clone()}));
    (out.status.success(), summary, stderr)
}

/// Issue 11, item 8: import from another platform, original times, source `import`, idempotent,
/// bad rows reported as `line N: <reason>` and good rows kept.
async fn an_import_keeps_original_times_reports_bad_lines_and_adds_nothing_twice(app: TestApp) {
    app.seed().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = "subject,purpose,decision,occurred_at,policy_revision,region\n\
               \" email: Ada@Example.com \",marketing_email,granted,2023-04-01T10:00:00Z,2021-02-01,FR\n\
               email:ada@example.com,marketing_email,denied,2024-01-01T00:00:00+01:00,,\n\
               user:7,analytics,maybe,2023-01-01T00:00:00Z,,\n\
               user:7,no_such,granted,2023-01-01T00:00:00Z,,\n\
               user:7,analytics,granted,last tuesday,,\n\
               user:7,necessary,denied,2023-01-01T00:00:00Z,,\n\
               phone:+49 30 1234567,analytics,granted,2023-01-01T00:00:00Z,,\n\
               user:7,analytics,granted,2022-06-01T00:00:00Z,,US-CA\n";
    let (ok, summary, stderr) = import(&app, dir.path(), "a.csv", csv, &[]);
    assert!(!ok, "refused rows make the exit status 1");
    assert_eq!(summary["rows"], 8);
    assert_eq!(summary["imported"], 3);
    assert_eq!(summary["events"], 3);
    assert_eq!(summary["failed"], 5);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(lines[0].starts_with("line 4: decision:"), "{stderr}");
    assert!(lines[1].starts_with("line 5:") && lines[1].contains("no_such"), "{stderr}");
    assert!(lines[2].starts_with("line 6: occurred_at:"), "{stderr}");
    assert!(lines[3].starts_with("line 7:") && lines[3].contains("cannot be refused"), "{stderr}");
    assert!(lines[4].starts_with("line 8: subject:"), "{stderr}");
    assert!(!stderr.contains("+49 30"), "no phone number in the report");

    let events = app.events_of("email:ada@example.com").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["occurred_at"], "2023-04-01T10:00:00Z");
    assert_eq!(events[0]["source"], "import");
    assert_eq!(events[0]["region"], "FR");
    assert_eq!(events[1]["occurred_at"], "2023-12-31T23:00:00Z");
    assert_eq!(app.consents_of("email:ada@example.com").await["purposes"]["marketing_email"]["status"], "denied");
    assert_eq!(app.consents_of("user:7").await["purposes"]["analytics"]["updated_at"], "2022-06-01T00:00:00Z");

    // The same file again adds nothing.
    // Run against another (new, empty) database, say from another directory: it says so.
    let elsewhere = format!("sqlite://{}", dir.path().join("elsewhere.db").display());
    let path = dir.path().join("a.csv");
    let out = app.cli_env(&["import", "--format", "csv", path.to_str().unwrap()], &[("DATABASE_URL", &elsewhere)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the database has no tenant: create one"), "{stderr}");
    let (_, again, _) = import(&app, dir.path(), "a.csv", csv, &["--tenant", "acme"]);
    assert_eq!((again["imported"].as_u64(), again["already_imported"].as_u64()), (Some(0), Some(3)));
    assert_eq!(app.events_of("email:ada@example.com").await.len(), 2);

    // NDJSON, the same keys; a decision older than the one in force is kept as history only.
    let ndjson = "{\"subject\":\"user:8\",\"purpose\":\"analytics\",\"decision\":\"granted\",\"occurred_at\":\"2024-05-01T00:00:00Z\"}\n\
                  \n\
                  {\"subject\":\"user:8\",\"purpose\":\"analytics\",\"decision\":\"denied\",\"occurred_at\":\"2023-05-01T00:00:00Z\"}\n\
                  {\"subject\":\"user:8\"}\n\
                  not json\n";
    let (ok, summary, stderr) = import(&app, dir.path(), "b.ndjson", ndjson, &[]);
    assert!(!ok);
    assert_eq!((summary["imported"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(2)));
    assert!(stderr.contains("line 4: purpose: is required"), "{stderr}");
    assert!(stderr.contains("line 5: a row is a JSON object"), "{stderr}");
    assert_eq!(app.events_of("user:8").await.len(), 2);
    let analytics = &app.consents_of("user:8").await["purposes"]["analytics"];
    assert_eq!(
        (analytics["decision"].as_str(), analytics["updated_at"].as_str()),
        (Some("granted"), Some("2024-05-01T00:00:00Z"))
    );
    assert_eq!(analytics["status"], "expired", "395 days after 2024-05-01");
    let (ok, summary, _) = import(&app, dir.path(), "b.ndjson", ndjson, &[]);
    assert!(!ok);
    assert_eq!((summary["imported"].as_u64(), summary["already_imported"].as_u64()), (Some(0), Some(2)));
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success());

    // Two tenants: the command asks which.
    app.create_tenant("initech");
    let (ok, _, stderr) = import(&app, dir.path(), "b.ndjson", ndjson, &[]);
    assert!(!ok && stderr.contains("--tenant"), "{stderr}");
}

/// GDPR Art. 17: an erased identifier is gone from the storage, not only from the tables. With
/// SQLite, `secure_delete` zeroes what was deleted and the erasure truncates the WAL: the raw
/// bytes of the database file and its WAL no longer hold the user id (without them, the deleted
/// cells stay in free space and the WAL). With PostgreSQL, no table holds it.
async fn an_erased_identifier_leaves_no_bytes_in_the_database_files(app: TestApp) {
    const ID: &str = "user:erasure-probe-4711-qzx";
    app.seed().await;
    for analytics in [true, false] {
        let res = app
            .client
            .post(app.url("/v1/consents"))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", format!("erasure-probe-{analytics}"))
            .json(&json!({"subject": ID, "choices": {"analytics": analytics}, "source": "api"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = app.post(&format!("/v1/subjects/{ID}/links"), &json!({"subject": "user:erasure-other"})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    let res = app.client.delete(app.url(&format!("/v1/subjects/{ID}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.consents_of(ID).await["purposes"]["analytics"]["status"], "not_asked");

    let url = app.database_url.clone();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let needle = ID.trim_start_matches("user:").as_bytes();
        for file in [path.to_owned(), format!("{path}-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(needle.len()).position(|w| w == needle);
            assert_eq!(found, None, "{file} ({} bytes) still holds the erased user id", bytes.len());
        }
    } else {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        let q = "SELECT (SELECT COUNT(*) FROM subject_identifiers WHERE identifier LIKE '%erasure-probe%') \
                 + (SELECT COUNT(*) FROM idempotency_keys WHERE response LIKE '%erasure-probe%') AS n";
        assert_eq!(diesel::sql_query(q).get_result::<Count>(&mut conn).unwrap().n, 0);
    }
}

/// Issue 11, item 8 (10 M rows): an import's transaction compresses the page images it writes to
/// PostgreSQL's WAL, and only that transaction (pooled connections keep the server's setting);
/// states and chain heads are updated in place (HOT: no new index entry, no dead row left for
/// VACUUM), and the events-by-subject index does not repeat the tenant id.
async fn bulk_writes_keep_room_for_in_place_updates_and_compress_the_wal_of_their_own_transaction(app: TestApp) {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct One {
        #[diesel(sql_type = Text)]
        v: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    app.seed().await;
    let res = app.record(json!({"subject": "user:u-1", "choices": {"marketing_email": true}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    use consentry::db::AnyConnection;
    let mut conn = crate::consents::raw_connection(&app);
    if let AnyConnection::Sqlite(lite) = &mut conn {
        // SQLite: one index column less, and nothing to compress (the call is a no-op).
        let columns: Vec<String> =
            diesel::sql_query("SELECT name AS v FROM pragma_index_info('consent_events_subject')")
                .load::<One>(lite)
                .unwrap()
                .into_iter()
                .map(|r| r.v)
                .collect();
        assert_eq!(columns, ["subject_id", "seq"]);
        consentry::db::backend::compress_wal_in_transaction(&mut conn).unwrap();
        return;
    }
    let one = |conn: &mut AnyConnection, sql: &str| match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(sql).get_result::<One>(pg).unwrap().v,
        AnyConnection::Sqlite(_) => unreachable!(),
    };
    const SETTING: &str = "SELECT current_setting('wal_compression') AS v";
    // The test cluster does not compress by default, and the test role is a superuser.
    assert_eq!(one(&mut conn, SETTING), "off");
    conn.batch_execute("BEGIN").unwrap();
    consentry::db::backend::compress_wal_in_transaction(&mut conn).unwrap();
    let within = one(&mut conn, SETTING);
    assert!(["lz4", "pglz"].contains(&within.as_str()), "in the import's transaction: {within}");
    // An update of a state stays on its page (HOT), as this transaction's statistics count it.
    let AnyConnection::Postgresql(pg) = &mut conn else { unreachable!() };
    let updated = diesel::sql_query("UPDATE consent_states SET decision = decision").execute(pg).unwrap();
    assert!(updated >= 1);
    let hot =
        diesel::sql_query("SELECT n_tup_hot_upd AS n FROM pg_stat_xact_user_tables WHERE relname = 'consent_states'")
            .get_result::<Count>(pg)
            .unwrap();
    assert_eq!(hot.n, updated as i64);
    conn.batch_execute("ROLLBACK").unwrap();
    assert_eq!(one(&mut conn, SETTING), "off", "after the transaction, the connection keeps the server's setting");
    let index = one(&mut conn, "SELECT indexdef AS v FROM pg_indexes WHERE indexname = 'consent_events_subject'");
    assert!(index.ends_with("(subject_id, seq)"), "{index}");
    // Room for the new version on its page, whatever the table's size (a table of a few rows
    // has room anyway, as above).
    for table in ["consent_states", "data_subjects"] {
        let options = one(
            &mut conn,
            &format!("SELECT array_to_string(reloptions, ',') AS v FROM pg_class WHERE relname = '{table}'"),
        );
        assert_eq!(options, "fillfactor=80", "{table}");
    }
}
