//! Webhooks (issue #4 item 6): a real local HTTP receiver that fails when told to; every event
//! arrives, signed, through failures, restarts and competing instances.

use crate::helpers::{assert_problem, TestApp};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

crate::backend_tests!(
    webhooks_are_created_listed_and_deleted_and_the_secret_is_shown_once,
    every_event_arrives_signed_even_when_the_receiver_fails_first,
    no_delivery_is_lost_when_the_server_restarts_between_retries,
    deliveries_are_dead_lettered_after_the_retry_window_and_retried_by_hand,
    a_receiver_that_hangs_does_not_hold_up_the_others,
    webhooks_deleted_while_events_are_written_fail_no_write,
    retries_by_hand_at_the_same_moment_never_send_a_delivery_twice_at_once,
    the_outbox_holds_exactly_the_committed_events,
    two_instances_never_send_the_same_delivery_twice,
    receivers_at_internal_addresses_are_refused_unless_allowed,
    a_committed_write_wakes_the_dispatcher_without_waiting_for_its_poll,
);

/// What the receiver got: one entry per HTTP request.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    ok: bool,
    signature: String,
    event_id: String,
    event_type: String,
    delivery_id: String,
    attempt: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Inbox {
    /// Answer 503 to this many requests first.
    fail_first: usize,
    /// Answer 503 to everything while set.
    failing: bool,
    /// Take this long to answer.
    delay: Duration,
    /// Requests to `/hang` wait until this is set (or 30 s).
    released: bool,
    requests: usize,
    received: Vec<Received>,
    /// Requests being answered, per delivery id, and the most at once for any one delivery.
    in_flight: BTreeMap<String, usize>,
    max_overlap: usize,
}

struct Receiver {
    port: u16,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let inbox = Arc::new(Mutex::new(Inbox { fail_first, ..Inbox::default() }));
        let data = web::Data::from(inbox.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(hook)))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        tokio::spawn(server);
        Self { port, inbox }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn set_failing(&self, failing: bool) {
        self.inbox.lock().unwrap().failing = failing;
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().received.clone()
    }

    /// The distinct event ids delivered successfully to `path`.
    fn delivered_ids(&self, path: &str) -> BTreeSet<String> {
        self.received().into_iter().filter(|r| r.ok && r.path == path).map(|r| r.event_id).collect()
    }
}

async fn hook(req: HttpRequest, body: web::Bytes, inbox: web::Data<Mutex<Inbox>>) -> HttpResponse {
    let delivery = req.headers().get("Consentry-Delivery-Id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let delay = {
        let mut inbox = inbox.lock().unwrap();
        let n = inbox.in_flight.entry(delivery.clone()).or_default();
        *n += 1;
        let n = *n;
        inbox.max_overlap = inbox.max_overlap.max(n);
        inbox.delay
    };
    let res = answer(&req, body, &inbox, delay).await;
    *inbox.lock().unwrap().in_flight.entry(delivery).or_default() -= 1;
    res
}

async fn answer(req: &HttpRequest, body: web::Bytes, inbox: &web::Data<Mutex<Inbox>>, delay: Duration) -> HttpResponse {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if req.path() == "/hang" {
        for _ in 0..600 {
            if inbox.lock().unwrap().released {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut inbox = inbox.lock().unwrap();
    inbox.requests += 1;
    let ok = !inbox.failing && inbox.requests > inbox.fail_first;
    inbox.received.push(Received {
        path: req.path().to_owned(),
        ok,
        signature: header("Consentry-Signature"),
        event_id: header("Consentry-Event-Id"),
        event_type: header("Consentry-Event-Type"),
        delivery_id: header("Consentry-Delivery-Id"),
        attempt: header("Consentry-Delivery-Attempt"),
        body: body.to_vec(),
    });
    if ok {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::ServiceUnavailable().body("down for maintenance")
    }
}

/// Checks `Consentry-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` as a
/// receiver would: recompute over the raw body, and refuse timestamps off by more than 5 min.
fn assert_signed(r: &Received, secret: &str) {
    let (t, v1) = r
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed Consentry-Signature '{}'", r.signature));
    let t: i64 = t.parse().expect("t is unix seconds");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 300, "t={t} is not now");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    mac.verify_slice(&hex::decode(v1).expect("v1 is hex")).expect("the signature verifies with the webhook's secret");
    // A signature over another body, or with another secret, does not verify.
    let mut other = Hmac::<Sha256>::new_from_slice(b"whsec_someone_else").unwrap();
    other.update(format!("{t}.").as_bytes());
    other.update(&r.body);
    assert!(other.verify_slice(&hex::decode(v1).unwrap()).is_err());
}

/// Polls `done` every 50 ms for up to 30 s.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a webhook; returns (id, secret).
async fn create_webhook(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let res = app.post("/v1/webhooks", &json!({"url": url, "events": events})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

async fn deliveries(app: &TestApp, webhook: &str, query: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/webhooks/{webhook}/deliveries{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["deliveries"].as_array().unwrap().clone()
}

/// The ids of every event of the tenant's change feed.
async fn feed_ids(app: &TestApp) -> BTreeSet<String> {
    let res = app.get("/v1/events?limit=1000").send().await.unwrap();
    let feed: Value = res.json().await.unwrap();
    feed["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

async fn record_one(app: &TestApp, subject: &str, choices: Value) {
    let res = app
        .record(json!({"subject": subject, "choices": choices, "policy_revision": "2021-02-01", "source": "api"}))
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

async fn webhooks_are_created_listed_and_deleted_and_the_secret_is_shown_once(app: TestApp) {
    let res = app
        .post(
            "/v1/webhooks",
            &json!({"url": "https://crm.example.com/hooks/consentry", "events": ["consent.changed", "opt_out.created", "consent.changed"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/webhooks/{id}"));
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64, "{secret}");
    assert_eq!(created["url"], "https://crm.example.com/hooks/consentry");
    assert_eq!(created["events"], json!(["consent.changed", "opt_out.created"]), "repeats are dropped");

    let list: Value = app.get("/v1/webhooks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(list["webhooks"][0]["id"], id);
    assert!(list["webhooks"][0].get("secret").is_none(), "the secret is shown only when created");
    let one: Value = app.get(&format!("/v1/webhooks/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!((one["id"].as_str(), one.get("secret")), (Some(id), None));

    // A NUL in the URL, a `before` that is no delivery id, data after the JSON object: 400.
    assert_problem(app.get("/v1/webhooks/%00").send().await.unwrap(), 400).await;
    let problem =
        assert_problem(app.get(&format!("/v1/webhooks/{id}/deliveries?before=nope")).send().await.unwrap(), 400).await;
    assert!(problem["detail"].as_str().unwrap().starts_with("before:"), "{problem}");
    let res = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .body(r#"{"url": "https://example.com/", "events": ["consent.changed"]}]]"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("nothing may follow"), "{problem}");

    // Bad input: a precise problem, nothing created.
    for (body, field) in [
        (json!({"url": "ftp://example.com/x", "events": ["consent.changed"]}), "url"),
        (json!({"url": "https://u:p@example.com/", "events": ["consent.changed"]}), "url"),
        (json!({"url": "hooks.example.com", "events": ["consent.changed"]}), "url"),
        (json!({"url": "https://example.com/", "events": []}), "events"),
        (json!({"url": "https://example.com/", "events": ["consent.*"]}), "events[0]"),
        (json!({"url": "https://example.com/", "events": [5]}), "events[0]"),
        (json!({"url": "https://x.example/h\r\nX-Injected: 1", "events": ["consent.changed"]}), "url"),
        (json!({"url": "http:///h", "events": ["consent.changed"]}), "url"),
    ] {
        let problem = assert_problem(app.post("/v1/webhooks", &body).send().await.unwrap(), 400).await;
        assert!(problem["detail"].as_str().unwrap().contains(field), "{problem}");
    }
    // A JSON array is not the object the schema asks for, even with the fields in order.
    let res = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&app.token)
        .json(&json!(["https://example.com/", ["consent.changed"]]))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("JSON object"), "{problem}");
    let list: Value = app.get("/v1/webhooks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);

    // Only admin tokens manage webhooks; another tenant sees none of them.
    let (writer, _) = app.issue_token("acme", &["consents:write", "consents:read"], None);
    let res = app.client.get(app.url("/v1/webhooks")).bearer_auth(&writer).send().await.unwrap();
    assert_problem(res, 403).await;
    let other = app.create_tenant("globex");
    let res = app.client.get(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_problem(res, 404).await;
    let res = app.client.delete(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_problem(res, 404).await;
    let list: Value =
        app.client.get(app.url("/v1/webhooks")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["webhooks"], json!([]));

    let res = app.client.delete(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(app.get(&format!("/v1/webhooks/{id}")).send().await.unwrap(), 404).await;
    let res = app.client.delete(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_problem(res, 404).await;
}

async fn every_event_arrives_signed_even_when_the_receiver_fails_first(app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(3).await;
    let (all, all_secret) =
        create_webhook(&app, &receiver.url("/all"), &["consent.changed", "opt_out.created", "opt_out.completed"]).await;
    let (opt_outs, opt_outs_secret) = create_webhook(&app, &receiver.url("/opt-outs"), &["opt_out.created"]).await;

    record_one(&app, "email:ada@example.com", json!({"analytics": true, "marketing_email": true})).await;
    record_one(&app, "user:42", json!({"marketing_email": false})).await;
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "email:ada@example.com", "channel": "phone", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let opt_out: Value = res.json().await.unwrap();
    let opt_out_id = opt_out["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/opt-outs/{opt_out_id}/complete"), &json!({})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = feed_ids(&app).await;
    assert_eq!(events.len(), 4, "two grants, a refusal, the opt-out's denial");

    wait_until("every event reached both receivers", || async {
        receiver.delivered_ids("/all").len() == 6 && receiver.delivered_ids("/opt-outs").len() == 1
    })
    .await;

    let received = receiver.received();
    assert_eq!(received.iter().filter(|r| !r.ok).count(), 3, "the first three requests failed");
    for r in &received {
        assert_signed(r, if r.path == "/all" { &all_secret } else { &opt_outs_secret });
        let body = r.json();
        assert_eq!(body["id"], r.event_id.as_str(), "Consentry-Event-Id is the body's id");
        assert_eq!(body["type"], r.event_type.as_str());
    }
    // Every failed attempt was retried with the very same body, and then delivered.
    for failed in received.iter().filter(|r| !r.ok) {
        let retried = received.iter().find(|r| r.ok && r.delivery_id == failed.delivery_id).expect("retried");
        assert_eq!(retried.body, failed.body);
        assert!(retried.attempt.parse::<u32>().unwrap() > failed.attempt.parse::<u32>().unwrap());
    }

    // One delivery per event, each with its own id; the consent events are exactly the feed's.
    let mut bodies: BTreeMap<String, Value> = BTreeMap::new();
    for r in received.iter().filter(|r| r.ok && r.path == "/all") {
        bodies.insert(r.event_id.clone(), r.json());
    }
    let consent_ids: BTreeSet<String> = bodies
        .values()
        .filter(|b| b["type"] == "consent.changed")
        .map(|b| b["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(consent_ids, events);
    let types: Vec<&str> = bodies.values().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "consent.changed").count(), 4);
    assert_eq!(types.iter().filter(|t| **t == "opt_out.created").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "opt_out.completed").count(), 1);

    let analytics = bodies
        .values()
        .find(|b| b["type"] == "consent.changed" && b["data"]["purpose"] == "analytics")
        .expect("the analytics grant");
    assert_eq!(analytics["data"]["decision"], "granted");
    assert_eq!(analytics["data"]["state"]["allowed"], true);
    assert_eq!(analytics["data"]["policy_revision"], "2021-02-01");
    let identifiers = analytics["data"]["identifiers"].as_array().unwrap();
    assert!(identifiers.iter().all(|i| i.as_str().unwrap().starts_with("email:h:")), "{identifiers:?}");
    assert!(!String::from_utf8_lossy(&received[0].body).contains('@'), "no clear e-mail address in a delivery");
    let denial = bodies
        .values()
        .find(|b| b["type"] == "consent.changed" && b["data"]["source"] == "opt_out_request")
        .expect("the opt-out's denial");
    assert_eq!(
        (denial["data"]["state"]["allowed"].as_bool(), denial["data"]["state"]["reason"].as_str()),
        (Some(false), Some("opt_out_request"))
    );
    let completed = bodies.values().find(|b| b["type"] == "opt_out.completed").unwrap();
    assert_eq!(
        (completed["data"]["id"].as_str(), completed["data"]["status"].as_str()),
        (Some(opt_out_id), Some("completed"))
    );

    // The subscription filters: the second webhook only heard of the opt-out request.
    let only = deliveries(&app, &opt_outs, "").await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["event_type"], "opt_out.created");
    assert_eq!(only[0]["payload"]["data"]["id"], opt_out_id);

    // The deliveries API tells the same story, a page at a time.
    let listed = deliveries(&app, &all, "").await;
    assert_eq!(listed.len(), 6);
    let first = deliveries(&app, &all, "?limit=4").await;
    let last_id = first[3]["id"].as_str().unwrap();
    let rest = deliveries(&app, &all, &format!("?limit=4&before={last_id}")).await;
    let paged: Vec<&Value> = first.iter().chain(rest.iter()).collect();
    assert_eq!(paged, listed.iter().collect::<Vec<_>>(), "two pages hold the list, newest first");
    assert!(listed.iter().all(|d| d["status"] == "delivered" && d["last_response_status"] == 200), "{listed:?}");
    let attempts: i64 = listed.iter().map(|d| d["attempts"].as_i64().unwrap()).sum::<i64>()
        + deliveries(&app, &opt_outs, "").await.iter().map(|d| d["attempts"].as_i64().unwrap()).sum::<i64>();
    assert_eq!(attempts, 7 + 3, "one attempt per delivery and one more per failure");
}

async fn no_delivery_is_lost_when_the_server_restarts_between_retries(mut app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(0).await;
    receiver.set_failing(true);
    let (hook, secret) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    for n in 0..5 {
        record_one(&app, &format!("user:{n}"), json!({"marketing_email": true})).await;
    }
    wait_until("every delivery has failed at least once", || async {
        receiver.received().iter().map(|r| r.delivery_id.clone()).collect::<BTreeSet<_>>().len() == 5
    })
    .await;

    app.restart(|_| {}).await;
    let before = receiver.received().len();
    receiver.set_failing(false);
    wait_until("every event arrived after the restart", || async { receiver.delivered_ids("/hook").len() == 5 }).await;
    assert!(receiver.received().len() > before, "the new server sent them");
    let events = feed_ids(&app).await;
    let delivered: BTreeSet<String> = receiver
        .received()
        .iter()
        .filter(|r| r.ok)
        .map(|r| {
            assert_signed(r, &secret);
            r.json()["data"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(delivered, events);
    // The receiver has answered; the server records each delivery a moment later.
    wait_until("every delivery is recorded as delivered", || async {
        deliveries(&app, &hook, "?status=delivered").await.len() == 5
    })
    .await;
    let listed = deliveries(&app, &hook, "?status=delivered").await;
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|d| d["attempts"].as_i64().unwrap() >= 2), "{listed:?}");
}

async fn deliveries_are_dead_lettered_after_the_retry_window_and_retried_by_hand(mut app: TestApp) {
    app.seed().await;
    app.restart(|s| s.webhooks.retry_window = Duration::from_millis(700)).await;
    let receiver = Receiver::start(0).await;
    receiver.set_failing(true);
    let (hook, secret) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    record_one(&app, "user:1", json!({"analytics": true})).await;

    wait_until("the delivery is dead-lettered", || async { deliveries(&app, &hook, "?status=dead").await.len() == 1 })
        .await;
    let dead = deliveries(&app, &hook, "?status=dead").await.remove(0);
    assert!(dead["attempts"].as_i64().unwrap() >= 2, "retried before giving up: {dead}");
    assert_eq!(dead["last_response_status"], 503);
    assert!(dead["last_error"].as_str().unwrap().contains("503"), "{dead}");
    assert_eq!(dead["next_attempt_at"], Value::Null);
    assert!(deliveries(&app, &hook, "?status=pending").await.is_empty());
    let attempts_when_dead = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), attempts_when_dead, "a dead letter is not attempted again by itself");

    let dead_id = dead["id"].as_str().unwrap();
    let retry = |webhook: String, delivery: String, token: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url(&format!("/v1/webhooks/{webhook}/deliveries/{delivery}/retry")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Unknown ids and other tenants: 404, nothing changes.
    assert_problem(retry(hook.clone(), "nope".into(), app.token.clone()).await, 404).await;
    assert_problem(retry("nope".into(), dead_id.into(), app.token.clone()).await, 404).await;
    let other = app.create_tenant("globex");
    assert_problem(retry(hook.clone(), dead_id.into(), other).await, 404).await;
    assert_eq!(deliveries(&app, &hook, "?status=dead").await.len(), 1);

    receiver.set_failing(false);
    let res = retry(hook.clone(), dead_id.into(), app.token.clone()).await;
    assert_eq!(res.status(), 202);
    let pending: Value = res.json().await.unwrap();
    assert_eq!(pending["status"], "pending");
    assert!(pending["next_attempt_at"].is_string());
    wait_until("the retried delivery arrives", || async { receiver.delivered_ids("/hook").len() == 1 }).await;
    let ok = receiver.received().into_iter().find(|r| r.ok).unwrap();
    assert_signed(&ok, &secret);
    assert_eq!(ok.delivery_id, dead_id);
    assert_eq!(ok.json(), dead["payload"], "the same body, with the same event id");
    wait_until("the delivery shows as delivered", || async {
        deliveries(&app, &hook, "?status=delivered").await.len() == 1
    })
    .await;
}

async fn a_receiver_that_hangs_does_not_hold_up_the_others(app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(0).await;
    let (hanging, _) = create_webhook(&app, &receiver.url("/hang"), &["consent.changed"]).await;
    let (_, secret) = create_webhook(&app, &receiver.url("/ok"), &["consent.changed"]).await;
    for n in 0..20 {
        record_one(&app, &format!("user:{n}"), json!({"analytics": true})).await;
    }
    // The hanging receiver holds its requests until released (the dispatcher gives up on each
    // after its 5 s timeout); the other receiver gets every event meanwhile.
    wait_until("the healthy receiver has every event", || async { receiver.delivered_ids("/ok").len() == 20 }).await;
    let stuck = deliveries(&app, &hanging, "").await;
    assert_eq!(stuck.len(), 20);
    assert!(
        stuck.iter().all(|d| d["attempts"] == 0 && d["status"] == "pending"),
        "the healthy receiver waited for an attempt on the hanging one to end: {stuck:?}"
    );
    let hanging_now = receiver.received().iter().filter(|r| r.path == "/hang").count();
    assert_eq!(hanging_now, 0, "no request to the hanging receiver has ended yet");
    for r in receiver.received() {
        assert_signed(&r, &secret);
    }
    receiver.inbox.lock().unwrap().released = true;
    wait_until("the released receiver has every event too", || async { receiver.delivered_ids("/hang").len() == 20 })
        .await;
}

async fn webhooks_deleted_while_events_are_written_fail_no_write(app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(0).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, token) = (app.client.clone(), app.url("/v1/consents"), app.token.clone());
            tokio::spawn(async move {
                for n in 0..40 {
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"subject": format!("user:{w}-{n}"), "choices": {"analytics": true, "marketing_email": true}, "source": "api"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201, "a write failed: {}", res.text().await.unwrap());
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let (id, _) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res =
            app.client.delete(app.url(&format!("/v1/webhooks/{id}"))).bearer_auth(&app.token).send().await.unwrap();
        assert_eq!(res.status(), 204, "a delete failed: {}", res.text().await.unwrap());
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(feed_ids(&app).await.len(), 4 * 40 * 2, "every write committed");
    let list: Value = app.get("/v1/webhooks").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["webhooks"], json!([]), "every webhook deleted");
}

async fn retries_by_hand_at_the_same_moment_never_send_a_delivery_twice_at_once(app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(0).await;
    receiver.inbox.lock().unwrap().delay = Duration::from_millis(400);
    let (hook, _) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    record_one(&app, "user:1", json!({"analytics": true})).await;
    wait_until("the delivery arrived", || async { receiver.delivered_ids("/hook").len() == 1 }).await;
    let delivery = deliveries(&app, &hook, "").await.remove(0)["id"].as_str().unwrap().to_owned();
    let url = app.url(&format!("/v1/webhooks/{hook}/deliveries/{delivery}/retry"));
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..5 {
        wait_until("the delivery is at rest", || async {
            deliveries(&app, &hook, "").await[0]["status"] == "delivered"
                && receiver.inbox.lock().unwrap().in_flight.values().all(|n| *n == 0)
        })
        .await;
        // Six retries 40 ms apart: the first makes it due, the dispatcher claims it, the others
        // arrive while it is being sent (the receiver takes 400 ms) or just before the claim.
        let tries: Vec<_> = (0..6u64)
            .map(|i| {
                let request = app.client.post(&url).bearer_auth(&app.token);
                async move {
                    tokio::time::sleep(Duration::from_millis(40 * i)).await;
                    request.send().await
                }
            })
            .collect();
        for res in futures_util::future::join_all(tries).await {
            let res = res.unwrap();
            match res.status().as_u16() {
                202 => accepted += 1,
                409 => {
                    assert_problem(res, 409).await;
                    refused += 1;
                }
                other => panic!("unexpected {other}"),
            };
        }
    }
    wait_until("the last retry is done", || async {
        deliveries(&app, &hook, "").await[0]["status"] == "delivered"
            && receiver.inbox.lock().unwrap().in_flight.values().all(|n| *n == 0)
    })
    .await;
    assert!(accepted >= 5, "each round retried at least once");
    assert!(refused >= 1, "retries while an attempt is under way are refused (409)");
    assert_eq!(receiver.inbox.lock().unwrap().max_overlap, 1, "the same delivery was sent twice at once");
}

async fn the_outbox_holds_exactly_the_committed_events(app: TestApp) {
    let site = app.seed().await;
    let receiver = Receiver::start(0).await;
    let (hook, _) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    let body = json!({"subject": "user:7", "choices": {"analytics": true, "marketing_email": true}, "policy_revision": "2021-02-01", "source": "api"});
    for _ in 0..2 {
        // The retry replays the first response and writes nothing.
        let res = app.post("/v1/consents", &body).header("Idempotency-Key", "k-1").send().await.unwrap();
        assert_eq!(res.status(), 201);
    }
    // A re-confirmation is an event (issue 11, item 10); refused input writes nothing at all.
    record_one(&app, "user:7", json!({"analytics": true})).await;
    let res = app
        .record(json!({"subject": "user:7", "choices": {"analytics": false, "no_such_purpose": true}, "source": "api"}))
        .await;
    assert_problem(res, 400).await;
    // A visitor with the GPC signal: the denial of sale/sharing is an event like any other.
    let res = app
        .visitor_post(&site, &json!({"visitor_id": crate::helpers::VISITOR, "choices": {"analytics": false}, "policy_revision": "2021-02-01", "source": "banner"}))
        .header("Sec-GPC", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let events = feed_ids(&app).await;
    assert_eq!(events.len(), 5);
    wait_until("every event arrived", || async { receiver.delivered_ids("/hook").len() == 5 }).await;
    let listed = deliveries(&app, &hook, "").await;
    let reported: BTreeSet<String> =
        listed.iter().map(|d| d["payload"]["data"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed.len(), 5, "one delivery per committed event, no more");
    assert_eq!(reported, events);
    let gpc = listed.iter().find(|d| d["payload"]["data"]["source"] == "gpc").expect("the GPC denial");
    assert_eq!(gpc["payload"]["data"]["purpose"], "sale_sharing");

    // A deleted webhook gets nothing more.
    let res = app.client.delete(app.url(&format!("/v1/webhooks/{hook}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    record_one(&app, "user:8", json!({"analytics": true})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 5);
}

async fn two_instances_never_send_the_same_delivery_twice(app: TestApp) {
    app.seed().await;
    let second = app.spawn_instance().await;
    let receiver = Receiver::start(0).await;
    receiver.inbox.lock().unwrap().delay = Duration::from_millis(100);
    let (_, secret) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    // Writes reach both instances, so both dispatchers wake and compete for the same rows.
    for n in 0..24 {
        let base = if n % 2 == 0 { app.address.clone() } else { format!("http://127.0.0.1:{second}") };
        let res = app
            .client
            .post(format!("{base}/v1/consents"))
            .bearer_auth(&app.token)
            .json(&json!({"subject": format!("user:{n}"), "choices": {"analytics": true}, "source": "api"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    wait_until("every event arrived", || async { receiver.delivered_ids("/hook").len() == 24 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let mut per_delivery: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        assert_signed(r, &secret);
        *per_delivery.entry(r.delivery_id.clone()).or_default() += 1;
    }
    assert_eq!(per_delivery.len(), 24);
    assert!(per_delivery.values().all(|n| *n == 1), "a delivery was sent twice: {per_delivery:?}");
}

/// Issue 10, Security 5: with `webhooks.private_receivers` off (the default on PostgreSQL), a
/// tenant's admin cannot point deliveries at the network behind the server: such URLs are
/// refused when created, and a webhook created while they were allowed is not called.
async fn receivers_at_internal_addresses_are_refused_unless_allowed(mut app: TestApp) {
    app.seed().await;
    let receiver = Receiver::start(0).await;
    let (hook, _) = create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    app.restart(|s| s.webhooks.private_receivers = Some(false)).await;
    for url in [
        "http://127.0.0.1:5432/",
        "https://169.254.169.254/latest/meta-data",
        "http://localhost:22/h",
        "https://[::1]/h",
        "http://10.0.0.1/h",
        "http://[::ffff:192.168.0.1]/h",
    ] {
        let res = app.post("/v1/webhooks", &json!({"url": url, "events": ["consent.changed"]})).send().await.unwrap();
        let problem = assert_problem(res, 400).await;
        assert!(problem["detail"].as_str().unwrap().contains("private_receivers"), "{url}: {problem}");
    }
    let res = app
        .post("/v1/webhooks", &json!({"url": "https://crm.example.com/hooks", "events": ["consent.changed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "a name is checked once resolved, when delivering");

    record_one(&app, "user:1", json!({"analytics": true})).await;
    wait_until("the attempt at the internal receiver is refused", || async {
        deliveries(&app, &hook, "")
            .await
            .iter()
            .any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("internal receivers are refused")))
    })
    .await;
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
}

/// The group commit wakes the dispatcher when a batch wrote deliveries (and only then): with a
/// poll interval of a minute, the delivery of a write still arrives within seconds.
async fn a_committed_write_wakes_the_dispatcher_without_waiting_for_its_poll(mut app: TestApp) {
    app.restart(|s| s.webhooks.poll_interval = Duration::from_secs(60)).await;
    app.seed().await;
    let receiver = Receiver::start(0).await;
    create_webhook(&app, &receiver.url("/hook"), &["consent.changed"]).await;
    // The dispatcher has looked once at start and is now asleep for its minute.
    tokio::time::sleep(Duration::from_millis(300)).await;
    record_one(&app, "user:woken", json!({"marketing_email": true})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.delivered_ids("/hook").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the delivery waited for the 60 s poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].json()["data"]["identifiers"], json!(["user:woken"]));
    assert_eq!(delivered[0].event_type, "consent.changed");
}
