//! Suppression lists and one-click unsubscribe (RFC 8058).

use crate::helpers::{assert_problem, TestApp};
use futures_util::StreamExt;
use serde_json::{json, Value};

crate::backend_tests!(
    suppression_lists_stream_every_subject_not_allowed_across_pages,
    one_click_unsubscribe_records_a_refusal_rfc_8058,
    unsubscribe_links_cannot_be_forged_or_triggered_by_a_get_rfc_8058,
    unsubscribe_links_use_the_public_url_not_the_request_host,
);

async fn suppression_lists_stream_every_subject_not_allowed_across_pages(app: TestApp) {
    app.seed().await;
    let n = 1010; // more than one page of 1,000
    let writes = futures_util::stream::iter(0..n)
        .map(|i| {
            let body =
                json!({"subject": format!("user:{i}"), "choices": {"marketing_email": i % 3 == 0}, "source": "api"});
            let req = app.post("/v1/consents", &body).send();
            async move { assert_eq!(req.await.unwrap().status(), 201) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    writes.await;
    app.record(json!({"subject": "email:ada@example.com", "choices": {"analytics": true}, "source": "api"})).await;

    let res = app.get("/v1/purposes/marketing_email/suppressions?format=csv").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("identifier,subject_id,status,reason"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let denied = (0..n).filter(|i| i % 3 != 0).count();
    // Every refusal, plus Ada, who was never asked about marketing_email (opt_in: not allowed).
    assert_eq!(rows.len(), denied + 1);
    assert!(rows.iter().all(|r| r[0] != "user:0" && r[0] != "user:3"), "granted subjects are not suppressed");
    assert!(rows.iter().any(|r| r[0] == "user:1" && r[2] == "denied" && r[3] == "refused"));
    let ada = rows.iter().find(|r| r[0].starts_with("email:h:")).expect("Ada, hashed");
    assert_eq!((ada[2], ada[3]), ("not_asked", "not_asked"));

    let res = app.get("/v1/purposes/marketing_email/suppressions?format=ndjson").send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let objects: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), denied + 1);
    assert!(objects.iter().all(|o| o["identifiers"].as_array().is_some_and(|a| a.len() == 1)));
    // An opt_out purpose nobody refused suppresses nobody.
    let text = app.get("/v1/purposes/sale_sharing/suppressions").send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "identifier,subject_id,status,reason\n");
    assert_problem(app.get("/v1/purposes/ghost/suppressions").send().await.unwrap(), 404).await;
}

async fn link(app: &TestApp, subject: &str, purpose: &str) -> String {
    let res = app.post("/v1/unsubscribe-links", &json!({"subject": subject, "purpose": purpose})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["purpose"], purpose);
    body["url"].as_str().unwrap().to_owned()
}

async fn one_click_unsubscribe_records_a_refusal_rfc_8058(app: TestApp) {
    app.seed().await;
    app.record(json!({"subject": "email:ada@example.com", "choices": {"marketing_email": true, "analytics": true}, "source": "api"})).await;
    let url = link(&app, "email:ada@example.com", "marketing_email").await;
    assert!(url.starts_with(&app.address), "{url}");
    let payload = url.rsplit('/').next().unwrap().split('.').nth(1).unwrap();
    let payload = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    assert!(!String::from_utf8_lossy(&payload).contains("ada@"), "the address is not in the link");
    // What a mail client sends (RFC 8058 §3.1): a POST with List-Unsubscribe=One-Click, no cookies.
    let res = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "200, not a redirect");
    let state = app.consents_of("email:ada@example.com").await;
    assert_eq!(state["purposes"]["marketing_email"]["status"], "denied");
    assert_eq!(state["purposes"]["marketing_email"]["source"], "one_click_unsubscribe");
    assert_eq!(state["purposes"]["analytics"]["status"], "granted", "the link is bound to one purpose");
}

async fn unsubscribe_links_cannot_be_forged_or_triggered_by_a_get_rfc_8058(app: TestApp) {
    app.seed().await;
    app.record(json!({"subject": "user:9", "choices": {"marketing_email": true}, "source": "api"})).await;
    let url = link(&app, "user:9", "marketing_email").await;
    // A GET (a mail scanner following the link) shows a page and changes nothing.
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("method=\"post\"") && page.contains("marketing_email"), "{page}");
    assert_eq!(app.events_of("user:9").await.len(), 1);
    // Tampered tokens and wrong bodies record nothing.
    let mut forged = url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let res = app.client.post(&forged).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_problem(res, 404).await;
    let res = app.client.post(&url).body("unsubscribe=yes").send().await.unwrap();
    assert_problem(res, 400).await;
    assert_eq!(app.consents_of("user:9").await["purposes"]["marketing_email"]["status"], "granted");
    assert_eq!(app.events_of("user:9").await.len(), 1);
    // A notice_only purpose cannot be refused, so it has no unsubscribe link.
    let res =
        app.post("/v1/unsubscribe-links", &json!({"subject": "user:9", "purpose": "necessary"})).send().await.unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "purpose");
}

/// With `public_url` set, the links handed out start with it, whatever `Host` the request
/// names (a client could otherwise make the service sign links to another site).
async fn unsubscribe_links_use_the_public_url_not_the_request_host(mut app: TestApp) {
    app.seed().await;
    let body = json!({"subject": "user:1", "purpose": "marketing_email"});
    let res = app.post("/v1/unsubscribe-links", &body).header("Host", "evil.example").send().await.unwrap();
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://evil.example/v1/unsubscribe/"), "without public_url, the request's host: {url}");

    app.restart(|s| s.public_url = Some("https://consent.example.com/".into())).await;
    let res = app.post("/v1/unsubscribe-links", &body).header("Host", "evil.example").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let url = res.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://consent.example.com/v1/unsubscribe/"), "{url}");
}
