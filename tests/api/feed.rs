//! The change feed: `GET /v1/events?after=&limit=`.

use crate::helpers::{assert_problem, TestApp};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::collections::HashSet;

crate::backend_tests!(the_feed_pages_through_every_event_once, no_event_is_skipped_under_concurrent_writers);

async fn page(app: &TestApp, after: &str, limit: u32) -> Value {
    let res = app.get(&format!("/v1/events?after={after}&limit={limit}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn the_feed_pages_through_every_event_once(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, crate::helpers::VISITOR, json!({"analytics": true, "marketing_email": false})).await;
    let res = app
        .record(json!({"subject": "email:ada@example.com", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), 201);
    let first = page(&app, "0", 2).await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    assert_eq!(first["events"][0]["identifiers"], json!([format!("visitor:{}", crate::helpers::VISITOR)]));
    let second = page(&app, first["next_cursor"].as_str().unwrap(), 2).await;
    let events = second["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["purpose"], "marketing_email");
    let email = events[0]["identifiers"][0].as_str().unwrap();
    assert!(email.starts_with("email:h:"), "identifiers as stored: {email}");
    let empty = page(&app, second["next_cursor"].as_str().unwrap(), 2).await;
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["next_cursor"], second["next_cursor"], "nothing new: the same cursor");
    // Another tenant's feed is empty.
    let other = app.create_tenant("globex");
    let res: Value =
        app.client.get(app.url("/v1/events")).bearer_auth(other).send().await.unwrap().json().await.unwrap();
    assert_eq!(res["events"], json!([]));
    assert_eq!(
        assert_problem(app.get("/v1/events?after=abc").send().await.unwrap(), 400).await["errors"][0]["field"],
        "after"
    );
    assert_eq!(
        assert_problem(app.get("/v1/events?limit=0").send().await.unwrap(), 400).await["errors"][0]["field"],
        "limit"
    );
}

/// Writers commit out of order; a reader that follows `next_cursor` must still see every event.
async fn no_event_is_skipped_under_concurrent_writers(app: TestApp) {
    app.seed().await;
    let app = &app;
    let writers = (0..60).map(|i| {
        let body = json!({"subject": format!("user:{i}"), "choices": {"analytics": true, "marketing_email": i % 2 == 0}, "source": "api"});
        async move {
            let res = app.post("/v1/consents", &body).send().await.unwrap();
            assert_eq!(res.status(), 201);
            let body: Value = res.json().await.unwrap();
            body["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    });
    let reader = async {
        let mut cursor = "0".to_owned();
        let mut seen = Vec::new();
        for _ in 0..400 {
            let p = page(app, &cursor, 7).await;
            for e in p["events"].as_array().unwrap() {
                seen.push(e["id"].as_str().unwrap().to_owned());
            }
            cursor = p["next_cursor"].as_str().unwrap().to_owned();
            if seen.len() >= 120 {
                break;
            }
            tokio::task::yield_now().await;
        }
        (seen, cursor)
    };
    let (written, (mut seen, cursor)) = tokio::join!(join_all(writers), reader);
    // Drain what committed after the reader stopped.
    let mut cursor = cursor;
    loop {
        let p = page(app, &cursor, 100).await;
        let events = p["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        seen.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        cursor = p["next_cursor"].as_str().unwrap().to_owned();
    }
    let written: HashSet<String> = written.into_iter().flatten().collect();
    assert_eq!(written.len(), 120);
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no event is delivered twice");
    assert_eq!(unique, written, "no event is skipped");
}

mod commit_order {
    use crate::helpers::TestApp;
    use consentry::domain::{ConsentSource, SubjectIdentifier};
    use consentry::ledger::{record_choices, Finish, IdempotencyClaim, RecordRequest, TenantRules};
    use serde_json::{json, Value};
    use std::time::Duration;

    crate::backend_tests!(a_writer_that_commits_late_is_not_skipped);

    /// Writer A inserts its event and then stays in its transaction for a while (its idempotent
    /// response is rendered inside it); writer B starts later. B must not become visible before
    /// A, or a reader that moved its cursor past B would never see A.
    async fn a_writer_that_commits_late_is_not_skipped(app: TestApp) {
        app.seed().await;
        let url = app.database_url.clone();
        let slow = std::thread::spawn(move || {
            let pool = consentry::db::connect(&url, 1).unwrap();
            let mut conn = pool.get().unwrap();
            let tenant = consentry::db::models::tenant::Tenant::find_by_slug(&mut conn, "acme").unwrap().unwrap();
            let rules = TenantRules::load(&mut conn, &tenant.id, chrono::Utc::now()).unwrap();
            let subject = SubjectIdentifier::parse("user:slow").unwrap();
            let choices = [("analytics".to_owned(), true)].into_iter().collect();
            let key = tenant.subject_key();
            let stored = subject.stored_form(&key);
            let req = RecordRequest {
                idempotency: Some(IdempotencyClaim {
                    scope: "api".into(),
                    key: "slow".into(),
                    request_hash: "x".into(),
                }),
                ..RecordRequest::new(&stored, &choices, ConsentSource::Api)
            };
            record_choices(
                &mut conn,
                rules,
                &req,
                201,
                // A finish that writes runs after the events are written: the transaction
                // holds them, uncommitted, while it sleeps longer than a feed read waits for
                // older transactions (1 s), so the reader below reads while it is still open.
                Finish::writing(|_, _| {
                    std::thread::sleep(Duration::from_millis(2500));
                    Ok("{}".into())
                }),
            )
            .unwrap();
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fast = app
            .post("/v1/consents", &json!({"subject": "user:fast", "choices": {"analytics": true}, "source": "api"}))
            .send();
        let reader = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let early: Value = app.get("/v1/events?limit=100").send().await.unwrap().json().await.unwrap();
            early["next_cursor"].as_str().unwrap().to_owned()
        };
        let (res, cursor) = tokio::join!(fast, reader);
        assert_eq!(res.unwrap().status(), 201);
        slow.join().unwrap();
        // Everything after the cursor the reader holds, plus what it saw, is every event.
        let seen_early: Value = app.get("/v1/events?limit=100").send().await.unwrap().json().await.unwrap();
        let all: Vec<&str> =
            seen_early["events"].as_array().unwrap().iter().map(|e| e["identifiers"][0].as_str().unwrap()).collect();
        assert_eq!(all, ["user:slow", "user:fast"], "the feed lists events in commit order");
        let later: Value =
            app.get(&format!("/v1/events?after={cursor}&limit=100")).send().await.unwrap().json().await.unwrap();
        let after_cursor: Vec<&str> =
            later["events"].as_array().unwrap().iter().map(|e| e["identifiers"][0].as_str().unwrap()).collect();
        assert!(
            after_cursor.contains(&"user:slow"),
            "the late committer comes after the reader's cursor: {after_cursor:?}"
        );
    }
}
