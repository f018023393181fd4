//! Recording consent: one event per changed purpose in one transaction, idempotency, the
//! hash chain, pseudonymised identifiers.

use crate::helpers::{assert_problem, TestApp, VISITOR};
use futures_util::future::join_all;
use serde_json::{json, Value};

crate::backend_tests!(
    one_event_per_changed_purpose,
    reject_all_is_an_explicit_denial,
    a_submission_is_all_or_nothing,
    idempotency_key_replays_the_first_result,
    idempotency_key_reused_for_another_request_is_refused,
    concurrent_retries_with_one_key_write_once,
    concurrent_submissions_keep_one_unbroken_chain,
    conflicting_concurrent_decisions_are_applied_in_commit_order,
    events_form_a_hash_chain_that_ledger_verify_accepts,
    events_cannot_be_updated_or_deleted,
    email_and_phone_are_normalised_and_stored_only_as_keyed_hashes,
    server_side_records_carry_occurred_at,
    subject_events_list_what_was_decided,
    subject_events_come_in_pages_that_miss_nothing,
    writing_does_not_grant_reading,
);

async fn one_event_per_changed_purpose(app: TestApp) {
    let site = app.seed().await;
    let first = app.record_visitor(&site, VISITOR, json!({"analytics": true, "marketing_email": false})).await;
    assert_eq!(first["event_ids"].as_array().unwrap().len(), 2);
    // The same choices given again are a re-confirmation: evidence, recorded (issue 11, item 10).
    let again = app.record_visitor(&site, VISITOR, json!({"analytics": true, "marketing_email": false})).await;
    assert_eq!(again["event_ids"].as_array().unwrap().len(), 2);
    // One purpose decided: one event.
    let changed = app.record_visitor(&site, VISITOR, json!({"analytics": false})).await;
    assert_eq!(changed["event_ids"].as_array().unwrap().len(), 1);
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["purpose"].as_str().unwrap().to_owned(), e["decision"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("analytics".into(), "granted".into()),
            ("marketing_email".into(), "denied".into()),
            ("analytics".into(), "granted".into()),
            ("marketing_email".into(), "denied".into()),
            ("analytics".into(), "denied".into())
        ]
    );
    assert_eq!(changed["consents"]["purposes"]["analytics"]["status"], "denied");
}

async fn reject_all_is_an_explicit_denial(app: TestApp) {
    let site = app.seed().await;
    let res = app
        .record_visitor(&site, VISITOR, json!({"analytics": false, "marketing_email": false, "sale_sharing": false}))
        .await;
    for key in ["analytics", "marketing_email", "sale_sharing"] {
        let p = &res["consents"]["purposes"][key];
        assert_eq!(p["status"], "denied", "{key}");
        assert_eq!(p["decision"], "denied", "{key}");
        assert_eq!(p["allowed"], false, "{key}");
        assert_eq!(p["source"], "banner", "{key}");
    }
    assert_eq!(res["consents"]["needs_consent"], false, "every opt-in purpose was answered");
}

async fn a_submission_is_all_or_nothing(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true, "newsletter": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let problem = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(problem["detail"], "choices.newsletter: no purpose 'newsletter' is defined for this tenant");
    assert_eq!(problem["errors"][0]["field"], "choices.newsletter");
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await, Vec::<Value>::new(), "nothing is recorded");
}

async fn idempotency_key_replays_the_first_result(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let first = app.visitor_post(&site, &body).header("Idempotency-Key", "key-1").send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retry = app.visitor_post(&site, &body).header("Idempotency-Key", "key-1").send().await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first, retry, "the retry returns the first result");
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 1);
    // The server-to-server endpoint has its own key space.
    let server = json!({"subject": "user:42", "choices": {"analytics": true}, "source": "api"});
    let a: Value = app
        .post("/v1/consents", &server)
        .header("Idempotency-Key", "key-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["event_ids"].as_array().unwrap().len(), 1);
}

async fn idempotency_key_reused_for_another_request_is_refused(app: TestApp) {
    let site = app.seed().await;
    let body = |granted: bool| json!({"visitor_id": VISITOR, "choices": {"analytics": granted}, "policy_revision": "2021-02-01", "source": "banner"});
    let res = app.visitor_post(&site, &body(true)).header("Idempotency-Key", "k").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let res = app.visitor_post(&site, &body(false)).header("Idempotency-Key", "k").send().await.unwrap();
    let problem = assert_problem(res, 422).await;
    assert!(problem["detail"].as_str().unwrap().contains("'k' was already used for a different request"));
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["decision"], "granted");
    // Two keys in one request (RFC 9110 §5.3: a singleton field given twice): refused, nothing
    // written, instead of the first counting and the second being ignored.
    let res = app
        .visitor_post(&site, &body(false))
        .header("Idempotency-Key", "k2")
        .header("Idempotency-Key", "k3")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 400).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key", "{problem}");
    assert_eq!(problem["errors"][0]["message"], "is given more than once", "{problem}");
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 1);
    // A key that is an email address or a token is not quoted back: error bodies never carry one.
    for (key, withheld) in [
        ("ada@example.com", "[an email address, withheld]"),
        ("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZGEifQ.c2ln", "[a token, withheld]"),
        ("phone:+14155552671", "[a phone number, withheld]"),
    ] {
        let res = app.visitor_post(&site, &body(true)).header("Idempotency-Key", key).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let res = app.visitor_post(&site, &body(false)).header("Idempotency-Key", key).send().await.unwrap();
        let problem = assert_problem(res, 422).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(withheld) && !detail.contains(key), "{detail}");
    }
}

async fn concurrent_retries_with_one_key_write_once(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true, "marketing_email": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let responses =
        join_all((0..8).map(|_| app.visitor_post(&site, &body).header("Idempotency-Key", "same").send())).await;
    let mut bodies = Vec::new();
    for res in responses {
        let res = res.unwrap();
        assert_eq!(res.status(), 201);
        bodies.push(res.json::<Value>().await.unwrap()["event_ids"].clone());
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "every retry sees the same events: {bodies:?}");
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 2);
}

async fn concurrent_submissions_keep_one_unbroken_chain(app: TestApp) {
    let site = app.seed().await;
    let requests = (0..12).map(|i| {
        let body = json!({"visitor_id": VISITOR, "choices": {"analytics": i % 2 == 0}, "policy_revision": "2021-02-01", "source": "banner"});
        app.visitor_post(&site, &body).header("Idempotency-Key", format!("k{i}")).send()
    });
    for res in join_all(requests).await {
        assert_eq!(res.unwrap().status(), 201);
    }
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert!(!events.is_empty());
    let mut prev = "0".repeat(64);
    for e in &events {
        assert_eq!(e["prev_hash"].as_str().unwrap(), prev, "each event links to the one before");
        prev = e["hash"].as_str().unwrap().to_owned();
    }
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

async fn events_form_a_hash_chain_that_ledger_verify_accepts(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    app.record_visitor(&site, VISITOR, json!({"analytics": false, "marketing_email": true})).await;
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["prev_hash"], "0".repeat(64), "the first event starts the chain");
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let hashes: std::collections::HashSet<&str> = events.iter().map(|e| e["hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 3);
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 3);
    assert_eq!(report["broken"], json!([]));
}

async fn events_cannot_be_updated_or_deleted(app: TestApp) {
    use diesel::connection::SimpleConnection;
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let mut conn = raw_connection(&app);
    let update = conn.batch_execute("UPDATE consent_events SET decision = 'denied'");
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = conn.batch_execute("DELETE FROM consent_events");
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await[0]["decision"], "granted");
}

pub fn raw_connection(app: &TestApp) -> consentry::db::AnyConnection {
    use diesel::Connection;
    match consentry::db::DatabaseUrl::parse(&app.database_url).unwrap() {
        consentry::db::DatabaseUrl::Postgres(url) => {
            consentry::db::AnyConnection::Postgresql(diesel::PgConnection::establish(&url).unwrap())
        }
        consentry::db::DatabaseUrl::Sqlite(path) => {
            consentry::db::AnyConnection::Sqlite(diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap())
        }
    }
}

async fn email_and_phone_are_normalised_and_stored_only_as_keyed_hashes(app: TestApp) {
    use consentry::db::schema::subject_identifiers::dsl::*;
    use diesel::prelude::*;
    app.seed().await;
    let res = app
        .record(json!({"subject": "email:Ada@Example.COM", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["consents"]["subject"], "email:ada@example.com");
    let res = app
        .record(json!({"subject": "phone:+49301234567", "choices": {"marketing_email": false}, "source": "api"}))
        .await;
    assert_eq!(res.status(), 201);
    // Read back through another spelling of the same address.
    let state = app.consents_of("email:ADA@example.com").await;
    assert_eq!(state["purposes"]["marketing_email"]["status"], "granted");
    assert_eq!(app.consents_of("phone:+49301234567").await["purposes"]["marketing_email"]["status"], "denied");
    let stored: Vec<String> = subject_identifiers.select(identifier).load(&mut raw_connection(&app)).unwrap();
    assert_eq!(stored.len(), 2);
    for s in &stored {
        // Hex digits can spell "ada" by chance; the clear values carry '@' and '+', hex never does.
        assert!(!s.contains('@') && !s.contains('+'), "stored in the clear: {s}");
        assert!(s.starts_with("email:h:") || s.starts_with("phone:h:"), "{s}");
    }

    // The response kept for an Idempotency-Key holds the keyed hash, not the address (and not
    // the number of an opt-out request); a retry still shows the address.
    let keyed = json!({"subject": "email:Grace@Example.com", "choices": {"marketing_email": true}, "source": "api"});
    let first = app.post("/v1/consents", &keyed).header("Idempotency-Key", "kept-1").send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["consents"]["subject"], "email:grace@example.com");
    let opt_out = json!({"subject": "phone:+4930555666", "channel": "phone", "scope": "sale_sharing"});
    let res = app.post("/v1/opt-outs", &opt_out).header("Idempotency-Key", "kept-2").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let kept: Vec<String> = {
        use consentry::db::schema::idempotency_keys::dsl::*;
        idempotency_keys.select(response).load(&mut raw_connection(&app)).unwrap()
    };
    assert_eq!(kept.len(), 2);
    for body in &kept {
        assert!(!body.contains("grace@") && !body.contains("4930555666"), "kept in the clear: {body}");
    }
    assert!(kept.iter().any(|b| b.contains("\"subject\":\"email:h:")), "{kept:?}");
    let retry = app.post("/v1/consents", &keyed).header("Idempotency-Key", "kept-1").send().await.unwrap();
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first, "the same body, address and receipt");
}

async fn server_side_records_carry_occurred_at(app: TestApp) {
    app.seed().await;
    let when = "2026-01-15T09:30:00Z";
    let res = app
        .record(json!({"subject": "user:7", "choices": {"marketing_email": true}, "source": "import", "occurred_at": when, "policy_revision": "2021-02-01"}))
        .await;
    assert_eq!(res.status(), 201);
    let state = app.consents_of("user:7").await;
    let p = &state["purposes"]["marketing_email"];
    assert_eq!(p["updated_at"], when);
    assert_eq!(p["expires_at"], "2028-01-15T09:30:00Z", "730 days counted from occurred_at");
    let event = &app.events_of("user:7").await[0];
    assert_eq!(event["occurred_at"], when);
    assert_ne!(event["recorded_at"], when);
    // An older decision recorded later is kept as an event but does not override the newer one.
    let res = app
        .record(json!({"subject": "user:7", "choices": {"marketing_email": false}, "source": "import", "occurred_at": "2025-06-01T00:00:00Z"}))
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.events_of("user:7").await.len(), 2);
    assert_eq!(app.consents_of("user:7").await["purposes"]["marketing_email"]["status"], "granted");
    // Older history equal to the decision in force (granted, same revision) is history too, not
    // a repeat of that decision: recorded, and the state still rests on the newest decision.
    for at in ["2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z"] {
        let res = app
            .record(json!({"subject": "user:7", "choices": {"marketing_email": true}, "source": "import", "occurred_at": at, "policy_revision": "2021-02-01"}))
            .await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.json::<Value>().await.unwrap()["event_ids"].as_array().map(Vec::len), Some(1), "{at}");
    }
    let events = app.events_of("user:7").await;
    let history: Vec<(&str, &str)> =
        events.iter().map(|e| (e["occurred_at"].as_str().unwrap(), e["decision"].as_str().unwrap())).collect();
    assert_eq!(
        history,
        [
            (when, "granted"),
            ("2025-06-01T00:00:00Z", "denied"),
            ("2024-05-01T00:00:00Z", "granted"),
            ("2024-07-01T00:00:00Z", "granted")
        ]
    );
    assert_eq!(app.consents_of("user:7").await["purposes"]["marketing_email"]["updated_at"], when);
    // The same decision again at the time of the one in force adds nothing.
    let res = app
        .record(json!({"subject": "user:7", "choices": {"marketing_email": true}, "source": "import", "occurred_at": when, "policy_revision": "2021-02-01"}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["event_ids"], json!([]));
}

async fn subject_events_list_what_was_decided(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let e = &app.events_of(&format!("visitor:{VISITOR}")).await[0];
    assert_eq!(e["purpose"], "analytics");
    assert_eq!(e["decision"], "granted");
    assert_eq!(e["policy_revision"], "2021-02-01");
    assert_eq!(e["source"], "banner");
    assert!(e["site_id"].as_str().is_some());
    assert_eq!(app.events_of("user:unknown").await, Vec::<Value>::new());
}

/// 40 simultaneous, alternating decisions for one person: each is applied in the order it
/// commits, so the ledger never holds the same decision twice in a row, every response shows
/// the decision it wrote, and the state is the last event.
async fn conflicting_concurrent_decisions_are_applied_in_commit_order(app: TestApp) {
    let site = app.seed().await;
    let requests = (0..40).map(|i| {
        let body = json!({"visitor_id": VISITOR, "choices": {"analytics": i % 2 == 0}, "policy_revision": "2021-02-01", "source": "banner"});
        let req = app.visitor_post(&site, &body).send();
        async move { (i % 2 == 0, req.await.unwrap()) }
    });
    for (granted, res) in join_all(requests).await {
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        // Every explicit choice is an event, a repeated one too (issue 11, item 10).
        assert_eq!(body["event_ids"].as_array().unwrap().len(), 1);
        let status = body["consents"]["purposes"]["analytics"]["status"].as_str().unwrap().to_owned();
        assert_eq!(status, if granted { "granted" } else { "denied" }, "a 201 shows the decision it wrote");
    }
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.len(), 40);
    for pair in events.windows(2) {
        let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["recorded_at"].as_str().unwrap()).unwrap();
        assert!(at(&pair[0]) <= at(&pair[1]), "recorded_at follows the chain");
    }
    let last = events.last().unwrap()["decision"].as_str().unwrap().to_owned();
    let state = app.consents_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(state["purposes"]["analytics"]["decision"], last.as_str());
}

/// A `consents:write` token records, but the response does not show the state it cannot read.
async fn writing_does_not_grant_reading(app: TestApp) {
    app.seed().await;
    let (write_only, _) = app.issue_token("acme", &["consents:write"], None);
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&write_only)
        .json(&json!({"subject": "user:1", "choices": {"analytics": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["event_ids"].as_array().unwrap().len(), 1);
    assert!(body.get("consents").is_none(), "{body}");
    let res = app.record(json!({"subject": "user:1", "choices": {"analytics": false}, "source": "api"})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["consents"]["purposes"]["analytics"]["status"], "denied", "an admin token sees the state");

    // Nor by replaying a reader's Idempotency-Key: the stored response shows the state.
    let request = json!({"subject": "email:grace@example.com", "choices": {"marketing_email": true}, "source": "api"});
    let res = app.post("/v1/consents", &request).header("Idempotency-Key", "k-1").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&write_only)
        .header("Idempotency-Key", "k-1")
        .json(&request)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 422).await;
    assert!(!problem.to_string().contains("granted"), "{problem}");
}

/// A subject's events (GDPR Art. 7(1): the proof of what was decided) come in pages of `limit`,
/// oldest first; `next_cursor` leads to the next page and is absent on the last, so a history
/// longer than a page is never cut off silently. A bad cursor or limit is a 400 problem.
async fn subject_events_come_in_pages_that_miss_nothing(app: TestApp) {
    app.seed().await;
    for n in 0..5 {
        let res = app
            .record(json!({"subject": "user:pages", "choices": {"marketing_email": n % 2 == 0}, "source": "api"}))
            .await;
        assert_eq!(res.status(), 201);
    }
    let all = app.events_of("user:pages").await;
    assert_eq!(all.len(), 5);
    let whole = app.get("/v1/subjects/user:pages/events").send().await.unwrap().json::<Value>().await.unwrap();
    assert!(whole.get("next_cursor").is_none(), "one page holds them all: {whole}");

    let mut paged: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(c) => format!("/v1/subjects/user:pages/events?limit=2&after={c}"),
            None => "/v1/subjects/user:pages/events?limit=2".to_owned(),
        };
        let page = app.get(&path).send().await.unwrap().json::<Value>().await.unwrap();
        let events = page["events"].as_array().unwrap();
        sizes.push(events.len());
        paged.extend(events.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(paged, all, "the pages, in order, are the whole history");

    for (query, field) in [("limit=0", "limit"), ("limit=10001", "limit"), ("after=x1", "after"), ("after=-1", "after")]
    {
        let res = app.get(&format!("/v1/subjects/user:pages/events?{query}")).send().await.unwrap();
        let problem = assert_problem(res, 400).await;
        assert!(problem.to_string().contains(field), "{query}: {problem}");
    }
}
