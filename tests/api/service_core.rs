//! The service core: cached configuration invalidated across instances, batched writes (group
//! commit) that keep every promise of a single write, and no acknowledged write lost to kill -9.

use crate::helpers::{assert_problem, TestApp, ORIGIN};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

crate::backend_tests!(
    configuration_changed_on_one_instance_reaches_the_other_within_a_second,
    a_revoked_token_is_refused_by_every_instance_within_a_second,
    concurrent_writes_of_one_subject_chain_in_order,
    concurrent_writes_of_many_subjects_are_each_committed_once,
    concurrent_writes_each_get_the_receipt_of_their_own_events,
    no_acknowledged_write_is_lost_when_the_server_is_killed,
    concurrent_single_reads_each_get_their_own_answer,
    concurrent_bulk_checks_each_get_their_own_answers,
    a_bulk_check_read_in_parts_answers_every_subject_in_order,
    the_ledgers_write_transactions_plan_generically_and_only_they_do,
    a_write_is_answered_only_once_its_commit_is_synced,
    a_write_batch_costs_postgresql_a_few_round_trips_whatever_its_size,
);

/// Polls `probe` every 50 ms until it holds; returns how long that took (fails after 3 s).
async fn eventually<F, Fut>(what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(3), "{what}: not seen after 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn title_on(app: &TestApp, base: &str, site: &str) -> String {
    let res = app.client.get(format!("{base}/v1/sites/{site}/config")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let config: Value = res.json().await.unwrap();
    let purposes = config["purposes"].as_array().unwrap();
    purposes.iter().find(|p| p["key"] == "analytics").unwrap()["title"].as_str().unwrap().to_owned()
}

/// The instance that makes a change serves it at once; another instance on the same database
/// serves it within a second (it polls the configuration versions every 250 ms).
async fn configuration_changed_on_one_instance_reaches_the_other_within_a_second(app: TestApp) {
    let site = app.seed().await;
    let other = format!("http://127.0.0.1:{}", app.spawn_instance().await);
    // Both instances have the configuration cached.
    assert_eq!(title_on(&app, &app.address, &site).await, title_on(&app, &other, &site).await);
    let res = app
        .put_purpose(
            "analytics",
            json!({"title": "Audience measurement", "description": "Counting visits.", "kind": "cookie_category",
                   "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 395}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    assert_eq!(title_on(&app, &app.address, &site).await, "Audience measurement", "at once where it was made");
    let took = eventually("the new title on the other instance", || async {
        title_on(&app, &other, &site).await == "Audience measurement"
    })
    .await;
    assert!(took <= Duration::from_secs(1), "seen by the other instance after {took:?}");

    // A revision published on one instance is in force on the other for writes too.
    let res = app
        .post_revision(
            "privacy",
            json!({"revision_date": "2026-11-30", "effective_at": "2026-11-30T00:00:00Z",
                   "url": "https://www.example.com/privacy-2", "requires_reconsent": false}),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let visitor = "6b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let took = eventually("the new revision on the other instance", || async {
        let res = app
            .client
            .post(format!("{other}/v1/sites/{site}/consents"))
            .header("Origin", ORIGIN)
            .json(&json!({"visitor_id": visitor, "choices": {"analytics": true},
                          "policy_revision": "2026-11-30", "source": "banner"}))
            .send()
            .await
            .unwrap();
        res.status() == 201
    })
    .await;
    assert!(took <= Duration::from_secs(1), "the revision was in force on the other instance after {took:?}");
}

/// A token revoked (by the CLI, another process) is refused by every instance within a second,
/// although each had it cached as valid.
async fn a_revoked_token_is_refused_by_every_instance_within_a_second(app: TestApp) {
    let other = format!("http://127.0.0.1:{}", app.spawn_instance().await);
    let (token, id) = app.issue_token("acme", &["consents:read"], None);
    for base in [&app.address, &other] {
        let res = app.client.get(format!("{base}/v1/purposes")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200, "a new token works at once on {base}");
    }
    let out = app.cli(&["tokens", "revoke", &id]);
    assert!(out.status.success());
    for base in [app.address.clone(), other.clone()] {
        let took = eventually("the revocation", || async {
            app.client.get(format!("{base}/v1/purposes")).bearer_auth(&token).send().await.unwrap().status() == 401
        })
        .await;
        assert!(took <= Duration::from_secs(1), "{base} refused the revoked token after {took:?}");
        let res = app.client.get(format!("{base}/v1/purposes")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(assert_problem(res, 401).await["detail"], "the token has been revoked");
    }
}

/// Many writes for one subject at once land in shared batches: each is acknowledged after its
/// commit, their events form one unbroken hash chain in the order written, and the state is the
/// newest decision.
async fn concurrent_writes_of_one_subject_chain_in_order(app: TestApp) {
    app.seed().await;
    let writes = (0..40).map(|i| {
        let app = &app;
        async move {
            let res = app
                .record(json!({"subject": "user:batched", "choices": {"analytics": i % 2 == 0}, "source": "api"}))
                .await;
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()["event_ids"].as_array().unwrap().len()
        }
    });
    let written: usize = join_all(writes).await.into_iter().sum();
    let events = app.events_of("user:batched").await;
    assert_eq!(events.len(), written, "every acknowledged event is stored, once");
    assert!(written >= 2, "alternating decisions are recorded");
    let mut head = "0".repeat(64);
    for e in &events {
        assert_eq!(e["prev_hash"].as_str().unwrap(), head, "each event links to the one before it");
        head = e["hash"].as_str().unwrap().to_owned();
    }
    let recorded: Vec<chrono::DateTime<chrono::FixedOffset>> = events
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["recorded_at"].as_str().unwrap()).unwrap())
        .collect();
    let mut sorted = recorded.clone();
    sorted.sort();
    assert_eq!(recorded, sorted, "recorded times follow the chain");
    let last = events.last().unwrap()["decision"].as_str().unwrap();
    assert_eq!(app.consents_of("user:batched").await["purposes"]["analytics"]["decision"], last);
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "ledger verify: {}", String::from_utf8_lossy(&out.stdout));
}

/// Writes of many new subjects at once, some with an idempotency key sent twice and one invalid:
/// the invalid one is refused alone, every valid one is committed exactly once.
async fn concurrent_writes_of_many_subjects_are_each_committed_once(app: TestApp) {
    app.seed().await;
    let writes = (0..60).map(|i| {
        let app = &app;
        async move {
            let purpose = if i == 7 { "no_such_purpose" } else { "analytics" };
            let body = json!({"subject": format!("user:many-{}", i % 50), "choices": {purpose: true}, "source": "api"});
            let res = app.post("/v1/consents", &body).header("Idempotency-Key", format!("key-{}", i % 50)).send().await;
            let res = res.unwrap();
            (i, res.status().as_u16(), res.headers().contains_key("Idempotent-Replayed"))
        }
    });
    let results = join_all(writes).await;
    for (i, status, _) in &results {
        if *i == 7 {
            assert_eq!(*status, 400, "the invalid submission is refused");
        } else if *i == 57 {
            // key-7 was first used by the refused request, which stored nothing.
            assert_eq!(*status, 201);
        } else {
            assert_eq!(*status, 201, "write {i}");
        }
    }
    let replays = results.iter().filter(|r| r.2).count();
    assert_eq!(replays, 9, "the second use of keys 0..9 (but 7) replays the first response");
    for n in 0..50 {
        let events = app.events_of(&format!("user:many-{n}")).await;
        assert_eq!(events.len(), 1, "user:many-{n} has exactly one event");
    }
}

/// A batch signs its receipts on a thread of its own while it writes its rows
/// (`ledger::write_batch`): under concurrent writes of many subjects, each response still
/// carries the receipt of its own events and decision, and it verifies.
async fn concurrent_writes_each_get_the_receipt_of_their_own_events(app: TestApp) {
    app.seed().await;
    let writes = (0..40).map(|i| {
        let app = &app;
        async move {
            let body =
                json!({"subject": format!("user:sealed-{i}"), "choices": {"analytics": i % 2 == 0}, "source": "api"});
            let res = app.record(body).await;
            assert_eq!(res.status(), 201, "write {i}");
            (i, res.json::<Value>().await.unwrap())
        }
    });
    for (i, body) in join_all(writes).await {
        let jws = body["receipt"].as_str().unwrap_or_else(|| panic!("write {i} has a receipt: {body}"));
        let claims = crate::receipts::claims_of(jws);
        let covered: Vec<&str> =
            claims["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        let answered: Vec<&str> = body["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert_eq!(covered, answered, "write {i}: the receipt covers the events it answered");
        let stored: Vec<String> = app
            .events_of(&format!("user:sealed-{i}"))
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(covered, stored, "write {i}: those are its subject's events");
        let decision = if i % 2 == 0 { "granted" } else { "denied" };
        let purposes = claims["purposes"].as_array().unwrap();
        let analytics = purposes.iter().find(|p| p["purpose"] == "analytics").expect("the purpose written");
        assert_eq!(analytics["decision"], decision, "write {i}: its own decision");
        let res = app.client.post(app.url("/v1/receipts/verify")).json(&json!({"receipt": jws})).send().await.unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["valid"], true, "write {i}: the receipt verifies");
    }
}

/// Concurrent single-subject checks and state reads are answered together (one query per batch,
/// `service::reader`); each still gets its own subject's answer, from its own tenant.
async fn concurrent_single_reads_each_get_their_own_answer(app: TestApp) {
    app.seed().await;
    // user:reader-0..23: analytics granted when even, refused when odd; 24..31 never asked.
    for n in 0..24 {
        let body =
            json!({"subject": format!("user:reader-{n}"), "choices": {"analytics": n % 2 == 0}, "source": "api"});
        assert_eq!(app.record(body).await.status(), 201);
    }
    // Another tenant knows user:reader-0 too, refused there.
    let other = app.create_tenant("other-readers");
    let res = app
        .client
        .put(app.url("/v1/purposes/analytics"))
        .bearer_auth(&other)
        .json(&json!({"title": "Analytics", "description": "Counting visits.", "kind": "cookie_category",
                      "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&other)
        .json(&json!({"subject": "user:reader-0", "choices": {"analytics": false}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let expected = |n: usize| match n {
        24.. => "not_asked",
        n if n % 2 == 0 => "granted",
        _ => "denied",
    };
    let reads = (0..120).map(|i| {
        let (app, other) = (&app, &other);
        async move {
            let n = i % 32;
            let subject = format!("user:reader-{n}");
            let (token, want) = if i % 10 == 9 {
                (other.as_str(), if n == 0 { "denied" } else { "not_asked" })
            } else {
                (app.token.as_str(), expected(n))
            };
            let status = if i % 3 == 0 {
                let res = app
                    .client
                    .get(app.url(&format!("/v1/subjects/{subject}/consents")))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()["purposes"]["analytics"]["status"].as_str().unwrap().to_owned()
            } else {
                let res = app
                    .client
                    .post(app.url("/v1/consents/check"))
                    .bearer_auth(token)
                    .json(&json!({"purpose": "analytics", "subjects": [subject]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["results"][0]["subject"], subject.as_str());
                body["results"][0]["status"].as_str().unwrap().to_owned()
            };
            (i, subject, want, status)
        }
    });
    for (i, subject, want, status) in join_all(reads).await {
        assert_eq!(status, want, "read {i} of {subject}");
    }
}

/// Twelve bulk checks at once, more than there are cores and blocking threads ready: each gets
/// its own subjects' answers, in its own order.
async fn concurrent_bulk_checks_each_get_their_own_answers(app: TestApp) {
    app.seed().await;
    // user:bulk-0..15: analytics granted when divisible by 3, refused otherwise; 16.. never asked.
    for n in 0..16 {
        let body = json!({"subject": format!("user:bulk-{n}"), "choices": {"analytics": n % 3 == 0}, "source": "api"});
        assert_eq!(app.record(body).await.status(), 201);
    }
    let checks = (0..12).map(|i| {
        let app = &app;
        async move {
            // Each check names 40 subjects in an order of its own (rotated by i, every other one
            // reversed), a few twice.
            let mut ns: Vec<usize> = (0..40).map(|k| (k * 7 + i) % 24).collect();
            if i % 2 == 1 {
                ns.reverse();
            }
            let subjects: Vec<String> = ns.iter().map(|n| format!("user:bulk-{n}")).collect();
            let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
            (i, ns, app.check("analytics", &subjects).await)
        }
    });
    for (i, ns, results) in join_all(checks).await {
        assert_eq!(results.len(), ns.len(), "check {i}");
        for (result, n) in results.iter().zip(&ns) {
            let want = match n {
                16.. => "not_asked",
                n if n % 3 == 0 => "granted",
                _ => "denied",
            };
            assert_eq!(result["subject"], format!("user:bulk-{n}").as_str(), "check {i}");
            assert_eq!(result["status"], want, "check {i}, user:bulk-{n}");
            assert_eq!(result["allowed"], want == "granted", "check {i}, user:bulk-{n}");
        }
    }
}

/// A check of 7,000 subjects is read in parts, on a connection each (one per core, at least
/// 2,000 distinct subjects a part) and in chunks of 5,000 within a part: each answer is its own
/// subject's, in request order, whichever part and chunk the subject fell in, for subjects named
/// twice and for an email address (looked up by its keyed hash).
async fn a_bulk_check_read_in_parts_answers_every_subject_in_order(app: TestApp) {
    app.seed().await;
    // Sorted, the 6,000 distinct user ids split at 3,000 (two cores) and 5,000 (one core); the
    // recorded ones sit at both ends and on both sides of each boundary.
    let recorded = [0, 1, 2_999, 3_000, 3_001, 4_999, 5_000, 5_001, 5_998, 5_999];
    for n in recorded {
        let body = json!({"subject": format!("user:{n:05}"), "choices": {"analytics": n % 2 == 0}, "source": "api"});
        assert_eq!(app.record(body).await.status(), 201);
    }
    let body = json!({"subject": "email:Ada@Example.com", "choices": {"analytics": true}, "source": "api"});
    assert_eq!(app.record(body).await.status(), 201);

    // Request order: descending, the recorded ones named again at the end, the address in the middle.
    let mut subjects: Vec<String> = (0..6_000).rev().map(|n| format!("user:{n:05}")).collect();
    subjects.insert(3_500, "email:ada@example.com".to_owned());
    subjects.extend(recorded.iter().map(|n| format!("user:{n:05}")));
    assert_eq!(subjects.len(), 6_011);
    let named: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let results = app.check("analytics", &named).await;
    assert_eq!(results.len(), subjects.len());
    let mut granted = 0;
    for (result, subject) in results.iter().zip(&subjects) {
        let want = match subject.strip_prefix("user:").map(|n| n.parse::<usize>().unwrap()) {
            Some(n) if recorded.contains(&n) && n % 2 == 0 => "granted",
            Some(n) if recorded.contains(&n) => "denied",
            Some(_) => "not_asked",
            None => "granted",
        };
        assert_eq!(result["subject"], subject.as_str());
        assert_eq!(result["status"], want, "{subject}");
        assert_eq!(result["allowed"], want == "granted", "{subject}");
        granted += usize::from(want == "granted");
    }
    // The four even recorded ids (0, 3,000, 5,000, 5,998), each named twice, and the address.
    assert_eq!(granted, 9);
}

/// Kills the real server (SIGKILL) while 16 clients write; every write it acknowledged is
/// stored after a restart, and the ledger verifies.
async fn no_acknowledged_write_is_lost_when_the_server_is_killed(app: TestApp) {
    let site = app.seed().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server =
        crate::helpers::ServerProcess(app.serve_command(port).env("CONSENTRY__LOG", "error").spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    eventually("the server to start", || async {
        app.client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (client, base, site) = (app.client.clone(), base.clone(), site.clone());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let visitor = format!("{c:08x}-0000-4000-8000-{n:012x}");
                    let sent = client
                        .post(format!("{base}/v1/sites/{site}/consents"))
                        .header("Origin", ORIGIN)
                        .json(&json!({"visitor_id": visitor, "choices": {"analytics": true, "marketing_email": false},
                                      "policy_revision": "2021-02-01", "source": "banner"}))
                        .send()
                        .await;
                    let Ok(res) = sent else { break };
                    if res.status() != 201 {
                        break;
                    }
                    let Ok(body) = res.json::<Value>().await else { break };
                    let ids = body["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned());
                    acknowledged.lock().unwrap().extend(ids);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_and_collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    join_all(clients).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 32, "writes were acknowledged before the kill: {}", acknowledged.len());

    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "ledger verify: {}", String::from_utf8_lossy(&out.stdout));
    let mut cursor = "0".to_owned();
    let mut stored = std::collections::HashSet::new();
    loop {
        let page: Value =
            app.get(&format!("/v1/events?after={cursor}&limit=1000")).send().await.unwrap().json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        stored.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
    }
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged events were lost", lost.len(), acknowledged.len());
}

/// The ledger's batched writes run with generic plans and without sequential scans on
/// PostgreSQL (`Plans::Generic`: `SET LOCAL plan_cache_mode = force_generic_plan` and `SET LOCAL
/// enable_seqscan = off`, sent with `BEGIN`), for their own transaction only: the connection's
/// next transaction, an ordinary one, plans as PostgreSQL chooses, and so does a transaction
/// that rolled back. On SQLite the same calls open and end a transaction.
async fn the_ledgers_write_transactions_plan_generically_and_only_they_do(app: TestApp) {
    use consentry::db::backend::{in_transaction, write_transaction, write_transaction_with, Plans};
    use consentry::db::AnyConnection;
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    /// The plan cache mode and whether sequential scans are on (PostgreSQL), or "sqlite"; and
    /// whether a transaction is open.
    fn seen(conn: &mut AnyConnection) -> Result<(String, bool), diesel::result::Error> {
        let open = in_transaction(conn);
        let mode = match conn {
            AnyConnection::Postgresql(c) => {
                diesel::sql_query(
                    "SELECT current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan') \
                     AS plan_cache_mode",
                )
                .get_result::<Mode>(c)?
                .plan_cache_mode
            }
            AnyConnection::Sqlite(c) => {
                c.batch_execute("SELECT 1")?;
                "sqlite".to_owned()
            }
        };
        Ok((mode, open))
    }
    let mut conn = super::consents::raw_connection(&app);
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    let (generic, auto) = if postgres { ("force_generic_plan off", "auto on") } else { ("sqlite", "sqlite") };

    let inside = write_transaction_with(&mut conn, Plans::Generic, seen).unwrap();
    assert_eq!(inside, (generic.to_owned(), true), "the ledger's write transaction");
    assert!(!in_transaction(&mut conn), "committed");
    assert_eq!(write_transaction(&mut conn, seen).unwrap(), (auto.to_owned(), true), "the next, ordinary one");
    assert_eq!(write_transaction_with(&mut conn, Plans::Auto, seen).unwrap(), (auto.to_owned(), true));

    let failed: Result<(), diesel::result::Error> = write_transaction_with(&mut conn, Plans::Generic, |c| {
        assert_eq!(seen(c)?.0, generic);
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(failed.is_err());
    assert!(!in_transaction(&mut conn), "rolled back");
    assert_eq!(seen(&mut conn).unwrap(), (auto.to_owned(), false), "after the rollback, outside any transaction");
}

/// SQLite's writer commits its batches without waiting for the disk and syncs the write-ahead
/// log itself, once for many (`service::writer`): a request is answered only after a sync that
/// began after its commit, and one whose sync failed is answered 500 `not-durable`, which says
/// the write was recorded (a 2xx means committed and durable; "unavailable, retry" would have
/// it sent, and recorded, twice). Meanwhile the connection goes back to the pool syncing every commit again
/// (`PRAGMA synchronous` 2, FULL), so writes outside the writer stay synced at commit. Here the
/// sync is held back by a gate; on PostgreSQL the same replies wait for it.
async fn a_write_is_answered_only_once_its_commit_is_synced(app: TestApp) {
    use consentry::db::AnyConnection;
    use consentry::ledger::{LedgerError, Outcome};
    use consentry::service::writer::Writer;
    use diesel::RunQueryDsl;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    #[derive(diesel::QueryableByName)]
    struct Sync {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        synchronous: i32,
    }

    app.seed().await;
    // One connection: the one the writer used is the one read back below.
    let pool = consentry::db::connect(&app.database_url, 1).unwrap();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (syncs, failing) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let sync = {
        let (gate, syncs, failing) = (gate.clone(), syncs.clone(), failing.clone());
        Arc::new(move || {
            let (open, opened) = &*gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            syncs.fetch_add(1, Ordering::SeqCst);
            if failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the disk is gone"));
            }
            Ok(())
        })
    };
    let writer =
        Arc::new(Writer::start_syncing_with(pool.clone(), 1, Arc::new(tokio::sync::Notify::new()), Some(sync)));
    let submission = |user: &str| crate::helpers::api_submission(&mut pool.get().unwrap(), user, "analytics", true);

    let first = tokio::spawn({
        let (writer, submission) = (writer.clone(), submission("user:synced"));
        async move { writer.submit(submission).await }
    });
    eventually("the write to commit", || async {
        let listed: Value = app.get("/v1/subjects/user:synced/events").send().await.unwrap().json().await.unwrap();
        listed["events"].as_array().map_or(0, Vec::len) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "committed, but not answered before its sync");
    let mut conn = pool.get().unwrap();
    if let AnyConnection::Sqlite(c) = &mut *conn {
        let mode = diesel::sql_query("PRAGMA synchronous").get_result::<Sync>(c).unwrap();
        assert_eq!(mode.synchronous, 2, "the pool's connection syncs every commit again (FULL)");
    }
    drop(conn);
    {
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    let answered = tokio::time::timeout(Duration::from_secs(10), first).await.unwrap().unwrap();
    assert!(matches!(answered, Ok(Outcome::Fresh { .. })), "answered once synced: {answered:?}");
    assert!(syncs.load(Ordering::SeqCst) >= 1);

    failing.store(true, Ordering::SeqCst);
    let unsynced = writer.submit(submission("user:unsynced")).await;
    assert!(
        matches!(&unsynced, Err(LedgerError::NotDurable(m)) if m.contains("the disk is gone")),
        "a write whose sync failed is not acknowledged, and not called unavailable: {unsynced:?}"
    );
    let problem = consentry::error::ApiError::from(unsynced.unwrap_err()).problem();
    let detail = serde_json::to_value(&problem).unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("was recorded") && detail.contains("Idempotency-Key"), "{detail}");
}

/// A write batch costs PostgreSQL a fixed number of round trips, whatever its size (counted by
/// diesel's instrumentation, one `StartQuery` a message): `BEGIN` with its settings; one read
/// (the stored responses of its idempotency keys, the subjects of its identifiers, its
/// tenants' webhooks); for known subjects, their locks and their states; one write (subjects,
/// identifiers, events, states, stored responses and receipts); `COMMIT`. Replayed in full, it
/// writes nothing. It was seven for new subjects and nine for known ones. On SQLite (in
/// process, no round trips) the same batches give the same outcomes.
async fn a_write_batch_costs_postgresql_a_few_round_trips_whatever_its_size(app: TestApp) {
    use consentry::db::backend::{write_transaction_with, Plans};
    use consentry::db::AnyConnection;
    use consentry::ledger::{write_batch, IdempotencyClaim, Outcome, Submission};
    use diesel::connection::{Connection, InstrumentationEvent};
    use std::sync::{Arc, Mutex};

    app.seed().await;
    let mut conn = super::consents::raw_connection(&app);
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    let keyed = |conn: &mut AnyConnection, user: &str, key: &str| -> Submission {
        let mut submission = crate::helpers::api_submission(conn, user, "analytics", true);
        submission.idempotency =
            Some(IdempotencyClaim { scope: "api".into(), key: key.into(), request_hash: format!("hash-{key}") });
        submission
    };
    let statements: Arc<Mutex<Vec<String>>> = Arc::default();
    conn.set_instrumentation({
        let statements = statements.clone();
        move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                let sql = query.to_string();
                statements.lock().unwrap().push(sql.chars().take(40).collect());
            }
        }
    });
    // Writes `jobs` as the writer does; returns each outcome's kind and the statements sent.
    let write = |conn: &mut AnyConnection, mut jobs: Vec<Submission>| -> (Vec<&'static str>, Vec<String>) {
        statements.lock().unwrap().clear();
        let outcomes = write_transaction_with(conn, Plans::Generic, |c| write_batch(c, &mut jobs)).unwrap();
        let kinds = outcomes
            .into_iter()
            .map(|o| match o.unwrap() {
                Outcome::Fresh { .. } => "fresh",
                Outcome::Replay { status: 201, body } if body == "{}" => "replay",
                Outcome::Replay { status, body } => panic!("replayed {status} {body}"),
            })
            .collect();
        (kinds, std::mem::take(&mut *statements.lock().unwrap()))
    };

    let new: Vec<Submission> = (0..5).map(|n| keyed(&mut conn, &format!("user:new-{n}"), &format!("k{n}"))).collect();
    let (kinds, sent) = write(&mut conn, new);
    assert_eq!(kinds, ["fresh"; 5]);
    if postgres {
        assert_eq!(sent.len(), 4, "BEGIN, one read, one write, COMMIT for five new subjects: {sent:#?}");
    }

    let again: Vec<Submission> = (0..5).map(|n| keyed(&mut conn, &format!("user:new-{n}"), &format!("k{n}"))).collect();
    let (kinds, sent) = write(&mut conn, again);
    assert_eq!(kinds, ["replay"; 5], "the same keys and requests: the stored responses");
    if postgres {
        assert_eq!(sent.len(), 3, "BEGIN, one read, COMMIT: nothing to write: {sent:#?}");
    }

    let known: Vec<Submission> =
        (0..8).map(|n| keyed(&mut conn, &format!("user:new-{}", n % 5), &format!("again-{n}"))).collect();
    let (kinds, sent) = write(&mut conn, known);
    assert_eq!(kinds, ["fresh"; 8]);
    if postgres {
        assert_eq!(sent.len(), 6, "BEGIN, one read, locks, states, one write, COMMIT for known subjects: {sent:#?}");
    }
    // Every response is stored: each key replays.
    let replayed: Vec<Submission> =
        (0..8).map(|n| keyed(&mut conn, &format!("user:new-{}", n % 5), &format!("again-{n}"))).collect();
    assert_eq!(write(&mut conn, replayed).0, ["replay"; 8]);
}
