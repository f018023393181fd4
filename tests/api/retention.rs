//! Issue 11, item 7 (retention: pruning with signed checkpoints, 24 months for opt-out
//! records) and the bulk import endpoint of item 8 (`POST /v1/imports`).

use crate::helpers::{assert_problem, TestApp};
use diesel::{Connection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::backend_tests!(
    pruning_replaces_expired_events_with_a_signed_checkpoint_and_keeps_states_and_chains,
    an_altered_checkpoint_is_caught_by_ledger_verify_and_proof_verify,
    a_checkpoint_row_that_cannot_be_read_is_reported_broken_and_the_rest_verified,
    opt_out_records_are_kept_at_least_24_months_11_ccr_7101,
    the_retention_worker_prunes_every_interval,
    the_import_endpoint_shares_the_cli_rules_and_is_idempotent,
    import_errors_name_the_rows_column_once,
    the_import_endpoint_needs_a_token_with_consents_write_and_csv_or_ndjson,
    kept_in_force_counts_every_expired_event_a_state_rests_on,
    only_a_retention_run_deletes_events_even_below_a_checkpoint,
    what_a_retired_key_signed_still_verifies_after_it_leaves_the_jwks,
    the_pruning_scan_reads_its_index_in_order,
    a_large_import_chains_each_subject_in_file_order_keeps_the_good_rows_and_adds_nothing_again,
    pruning_plans_the_subject_lock_it_shares_with_writes_as_writes_do,
    a_feed_cursor_at_a_pruned_event_still_resumes_where_it_was,
    the_places_of_events_pruned_before_every_remaining_one_are_kept_as_one,
);

/// Runs `sql` on the app's database (either backend), outside the server.
fn exec_sql(app: &TestApp, sql: &str) {
    try_sql(app, sql).unwrap();
}

/// Runs `sql` on the app's database (either backend), outside the server; the database's error.
fn try_sql(app: &TestApp, sql: &str) -> diesel::QueryResult<()> {
    use diesel::connection::SimpleConnection;
    let url = &app.database_url;
    if url.starts_with("postgres") {
        diesel::PgConnection::establish(url).unwrap().batch_execute(sql)
    } else {
        let path = url.trim_start_matches("sqlite://");
        let mut conn = diesel::SqliteConnection::establish(path).unwrap();
        // The server may hold the write lock a moment.
        conn.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
        conn.batch_execute(sql)
    }
}

/// Deletes events past the database's guard (as one with the rights to drop it could): the
/// ledger's own verification must still catch it.
fn delete_past_the_trigger(app: &TestApp, filter: &str) {
    if app.database_url.starts_with("postgres") {
        exec_sql(app, &format!("SET session_replication_role = replica; DELETE FROM consent_events WHERE {filter}"));
    } else {
        exec_sql(app, &format!("DROP TRIGGER consent_events_no_delete; DELETE FROM consent_events WHERE {filter}"));
    }
}

/// `consentry <args>` expecting a JSON object on stdout: (success, JSON, stderr).
fn cli_json(app: &TestApp, args: &[&str], envs: &[(&str, &str)]) -> (bool, Value, String) {
    let out = app.cli_env(args, envs);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| json!({"no JSON": stderr.clone()}));
    (out.status.success(), json, stderr)
}

/// `analytics` kept 30 days; `marketing_email` for ever.
async fn seed_with_retention(app: &TestApp) -> String {
    let site = app.seed().await;
    let res = app
        .put_purpose(
            "analytics",
            json!({"title": "analytics", "description": "The analytics purpose", "kind": "cookie_category",
                   "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false,
                   "max_age_days": 395, "retention_days": 30}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["retention_days"], 30);
    site
}

/// user:7's chain: analytics (2023-01-01), marketing_email (2023-01-15), analytics denied
/// (2023-02-01), analytics granted (2023-03-01, the state in force).
async fn import_history(app: &TestApp) {
    let csv = "subject,purpose,decision,occurred_at\n\
               user:7,analytics,granted,2023-01-01T00:00:00Z\n\
               user:7,marketing_email,granted,2023-01-15T00:00:00Z\n\
               user:7,analytics,denied,2023-02-01T00:00:00Z\n\
               user:7,analytics,granted,2023-03-01T00:00:00Z\n";
    let res = app
        .client
        .post(app.url("/v1/imports"))
        .bearer_auth(&app.token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["imported"], 4);
}

fn verify_ledger(app: &TestApp) -> (bool, Value) {
    let (ok, report, stderr) = cli_json(app, &["ledger", "verify"], &[]);
    assert!(report.get("events").is_some(), "{stderr}");
    (ok, report)
}

/// Issue 11, item 7: expired events go, a signed checkpoint stands in for them; the decision in
/// force (GDPR Art. 7(1): the controller must still demonstrate consent) and the chain stay.
async fn pruning_replaces_expired_events_with_a_signed_checkpoint_and_keeps_states_and_chains(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    // A server-side write decided long ago: its receipt names an event that will be pruned.
    let res = app
        .record(json!({"subject": "user:9", "choices": {"analytics": true}, "source": "api",
                       "occurred_at": "2023-01-10T00:00:00Z"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let old_receipt = res.json::<Value>().await.unwrap()["receipt"].clone();
    let res = app
        .record(json!({"subject": "user:9", "choices": {"analytics": false}, "source": "api",
                       "occurred_at": "2023-02-10T00:00:00Z"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let recent = app.record(json!({"subject": "user:10", "choices": {"analytics": true}, "source": "api"})).await;
    assert_eq!(recent.status(), StatusCode::CREATED);

    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok, "{stderr}");
    // user:7 loses two analytics events (not the one in force); user:9 the first of its two.
    assert_eq!(summary["events_pruned"], 3, "{summary}");
    assert_eq!(summary["checkpoints"], 2);
    assert_eq!(summary["kept_in_force"], 2, "the states of user:7 and user:9 rest on expired events");
    assert_eq!(summary["by_purpose"], json!({"acme": {"analytics": 3}}));
    assert_eq!(summary["broken_chains"], json!([]));

    let events = app.events_of("user:7").await;
    let kept: Vec<(&str, &str)> =
        events.iter().map(|e| (e["purpose"].as_str().unwrap(), e["occurred_at"].as_str().unwrap())).collect();
    assert_eq!(kept, [("marketing_email", "2023-01-15T00:00:00Z"), ("analytics", "2023-03-01T00:00:00Z")]);
    let analytics = &app.consents_of("user:7").await["purposes"]["analytics"];
    assert_eq!(
        (analytics["decision"].as_str(), analytics["updated_at"].as_str()),
        (Some("granted"), Some("2023-03-01T00:00:00Z"))
    );
    assert_eq!(app.events_of("user:10").await.len(), 1, "recent events stay");

    let (ok, report) = verify_ledger(&app);
    assert!(ok, "{report}");
    assert_eq!((report["checkpoints"].as_u64(), report["broken"].clone()), (Some(2), json!([])));

    // Nothing more to prune; then a new decision moves the state off the old event, which goes.
    let (_, again, _) = cli_json(&app, &["retention", "run"], &[]);
    assert_eq!(again["events_pruned"], 0);
    let res = app.record(json!({"subject": "user:7", "choices": {"analytics": false}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, third, _) = cli_json(&app, &["retention", "run"], &[]);
    assert_eq!(third["events_pruned"], 1, "{third}");
    let kept: Vec<String> = app.events_of("user:7").await.iter().map(|e| e["purpose"].to_string()).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let (ok, report) = verify_ledger(&app);
    assert!(ok, "{report}");

    // The proof bundles carry the checkpoints and verify offline; user:9's old receipt names a
    // pruned event, which its checkpoint accounts for.
    for subject in ["user:7", "user:9"] {
        let text = app.get(&format!("/v1/subjects/{subject}/proof")).send().await.unwrap().text().await.unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(bundle["checkpoints"].as_array().map(Vec::len), Some(1), "{subject}");
        let (ok, report) = crate::rights::proof_verify(&text);
        assert!(ok, "{subject}: {report}");
        assert_eq!(report["checkpoints"], 1);
    }
    let res =
        app.client.post(app.url("/v1/receipts/verify")).json(&json!({"receipt": old_receipt})).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["valid"], true, "receipts are kept and still verify");

    // A kept event removed behind the pruning's back: the database refuses, though a checkpoint
    // covers its position; removed past the trigger, it is caught: its bridge goes unused, the
    // next event's bridge does not start where the chain is.
    let refused = try_sql(&app, "DELETE FROM consent_events WHERE purpose_key = 'marketing_email'");
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    delete_past_the_trigger(&app, "purpose_key = 'marketing_email'");
    let (ok, report) = verify_ledger(&app);
    assert!(!ok);
    let broken = report["broken"].to_string();
    assert!(broken.contains("checkpoint:") && report["broken"].as_array().unwrap().len() == 2, "{report}");
}

/// A checkpoint row with a value that cannot be read (a timestamp made malformed by hand: any
/// text on SQLite, `infinity` on PostgreSQL, which no chrono time holds) does not stop
/// `consentry ledger verify`: it is listed as broken, with the kept events it bridged, the other
/// checkpoint still verifies, every event is walked, and the exit code is 1.
async fn a_checkpoint_row_that_cannot_be_read_is_reported_broken_and_the_rest_verified(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    for (granted, at) in [(true, "2023-01-10T00:00:00Z"), (false, "2023-02-10T00:00:00Z")] {
        let res = app
            .record(json!({"subject": "user:9", "choices": {"analytics": granted}, "source": "api", "occurred_at": at}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && summary["events_pruned"] == 3 && summary["checkpoints"] == 2, "{summary} {stderr}");
    let text = app.get("/v1/subjects/user:7/proof").send().await.unwrap().text().await.unwrap();
    let subject = serde_json::from_str::<Value>(&text).unwrap()["subject_ids"][0].as_str().unwrap().to_owned();
    let malformed = if app.database_url.starts_with("postgres") { "infinity" } else { "not a time" };
    exec_sql(
        &app,
        &format!("UPDATE ledger_checkpoints SET first_occurred_at = '{malformed}' WHERE subject_id = '{subject}'"),
    );
    let out = app.cli(&["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is printed");
    // user:7's checkpoint, then its two kept events, whose bridges it held.
    assert_eq!(report["broken"][0], format!("checkpoint:{subject}"), "{report}");
    assert_eq!(report["broken"].as_array().unwrap().len(), 3, "{report}");
    // user:9's checkpoint verified; all 3 kept events were walked (user:7's 2, user:9's 1).
    assert_eq!((report["checkpoints"].as_u64(), report["events"].as_u64()), (Some(1), Some(3)), "{report}");
    assert_eq!(report["subjects"], 2, "{report}");
}

/// A checkpoint is signed: changing what it says, or removing it, breaks verification.
async fn an_altered_checkpoint_is_caught_by_ledger_verify_and_proof_verify(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && summary["events_pruned"] == 2, "{summary} {stderr}");
    let text = app.get("/v1/subjects/user:7/proof").send().await.unwrap().text().await.unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let subject = bundle["subject_ids"][0].as_str().unwrap().to_owned();

    // The count of pruned events changed in the row: its columns no longer match what is signed.
    exec_sql(&app, "UPDATE ledger_checkpoints SET events = 1");
    let (ok, report) = verify_ledger(&app);
    assert!(!ok);
    // The checkpoint, then the two kept events it bridged, which no longer link.
    assert_eq!(report["broken"][0], format!("checkpoint:{subject}"), "{report}");
    assert_eq!(report["broken"].as_array().unwrap().len(), 3, "{report}");
    exec_sql(&app, "UPDATE ledger_checkpoints SET events = 2");
    assert!(verify_ledger(&app).0);

    // Its signature altered.
    exec_sql(&app, "UPDATE ledger_checkpoints SET jws = jws || 'A'");
    let (ok, report) = verify_ledger(&app);
    assert!(!ok && report["broken"].to_string().contains("checkpoint:"), "{report}");

    // Removed: the kept events after the gaps no longer link.
    exec_sql(&app, "DELETE FROM ledger_checkpoints");
    let (ok, report) = verify_ledger(&app);
    assert!(!ok);
    assert_eq!(report["broken"].as_array().unwrap().len(), 2, "both bridged events: {report}");

    // And no event can be deleted without a checkpoint covering it (the database refuses).
    let url = app.database_url.clone();
    let refused = if url.starts_with("postgres") {
        diesel::sql_query("DELETE FROM consent_events").execute(&mut diesel::PgConnection::establish(&url).unwrap())
    } else {
        use diesel::connection::SimpleConnection;
        let mut conn = diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
        diesel::sql_query("DELETE FROM consent_events").execute(&mut conn)
    };
    assert!(refused.unwrap_err().to_string().contains("append-only"));

    // In a proof bundle: a changed checkpoint fails its signature.
    let mut forged = bundle.clone();
    let jws = forged["checkpoints"][0].as_str().unwrap().to_owned();
    forged["checkpoints"][0] =
        json!(format!("{}{}", &jws[..jws.len() - 2], if jws.ends_with('A') { "BB" } else { "AA" }));
    let (ok, report) = crate::rights::proof_verify(&forged.to_string());
    assert!(!ok);
    assert!(report["problems"].to_string().contains("checkpoint 1:"), "{report}");
    // Without it, the kept events after the gaps do not link.
    let mut cut = bundle.clone();
    cut.as_object_mut().unwrap().remove("checkpoints");
    let (ok, report) = crate::rights::proof_verify(&cut.to_string());
    assert!(!ok, "{report}");
    assert!(report["problems"].to_string().contains("does not hold"), "{report}");
}

/// 11 CCR §7101(a): records of consumer requests (opt-outs of sale/sharing among them) are kept
/// at least 24 months. A purpose recording opt-outs refuses a shorter `retention_days`; the
/// setting for opt-out requests refuses one too (refused, not clamped: the operator sees it).
async fn opt_out_records_are_kept_at_least_24_months_11_ccr_7101(app: TestApp) {
    app.seed().await;
    let sale = |days: u32| {
        json!({"title": "Sale", "description": "Sale or sharing", "kind": "processing", "consent_model": "opt_out",
               "legal_basis": "consent", "gpc_applies": true, "retention_days": days})
    };
    let problem = assert_problem(app.put_purpose("sale_sharing", sale(730)).await, 400).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("retention_days") && detail.contains("11 CCR §7101"), "{problem}");
    assert_eq!(app.put_purpose("sale_sharing", sale(731)).await.status(), StatusCode::OK);
    // An opt-in purpose with an opt-out region records opt-outs there too.
    let regional = json!({"title": "Ads", "description": "Ads", "kind": "processing", "consent_model": "opt_in",
                          "legal_basis": "consent", "gpc_applies": false, "regions": {"US-CA": "opt_out"},
                          "retention_days": 90});
    assert_problem(app.put_purpose("ads", regional).await, 400).await;
    assert_problem(app.put_purpose("sale_sharing", sale(0)).await, 400).await;

    // The setting: shorter than 24 months stops the command.
    let (ok, _, stderr) =
        cli_json(&app, &["retention", "run"], &[("CONSENTRY__RETENTION__OPT_OUT_REQUESTS_DAYS", "700")]);
    assert!(!ok && stderr.contains("11 CCR §7101"), "{stderr}");

    // With 731 days: a request completed three years ago goes, one completed now and an open
    // one stay.
    for subject in ["user:1", "user:2", "user:3"] {
        let res = app
            .post("/v1/opt-outs", &json!({"subject": subject, "channel": "web_form", "scope": "sale_sharing"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    exec_sql(
        &app,
        "UPDATE opt_out_requests SET completed_at = received_at WHERE id IN \
         (SELECT id FROM opt_out_requests ORDER BY received_at LIMIT 2)",
    );
    let old = if app.database_url.starts_with("postgres") {
        "UPDATE opt_out_requests SET completed_at = completed_at - INTERVAL '1096 days' WHERE id = \
         (SELECT id FROM opt_out_requests WHERE completed_at IS NOT NULL ORDER BY received_at LIMIT 1)"
    } else {
        "UPDATE opt_out_requests SET completed_at = datetime(completed_at, '-1096 days') WHERE id = \
         (SELECT id FROM opt_out_requests WHERE completed_at IS NOT NULL ORDER BY received_at LIMIT 1)"
    };
    exec_sql(&app, old);
    let (ok, summary, stderr) =
        cli_json(&app, &["retention", "run"], &[("CONSENTRY__RETENTION__OPT_OUT_REQUESTS_DAYS", "731")]);
    assert!(ok, "{stderr}");
    assert_eq!(summary["opt_out_requests_pruned"], 1, "{summary}");
    let list = app.get("/v1/opt-outs").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(list["opt_outs"].as_array().unwrap().len(), 2);
    // Unset: kept for ever.
    exec_sql(&app, "UPDATE opt_out_requests SET completed_at = received_at");
    let (_, summary, _) = cli_json(&app, &["retention", "run"], &[]);
    assert_eq!(summary["opt_out_requests_pruned"], 0);

    // `consentry apply` sets retention_days under the same rule.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.toml");
    let purpose = |key: &str, model: &str, days: u32| {
        format!(
            "[purposes.{key}]\ntitle = \"{key}\"\ndescription = \"d\"\nkind = \"processing\"\n\
             consent_model = \"{model}\"\nlegal_basis = \"consent\"\ngpc_applies = false\nretention_days = {days}\n"
        )
    };
    std::fs::write(&file, format!("tenant = \"acme\"\n{}", purpose("sale_sharing", "opt_out", 365))).unwrap();
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("11 CCR §7101"), "{stderr}");
    std::fs::write(&file, format!("tenant = \"acme\"\n{}", purpose("statistics", "opt_in", 45))).unwrap();
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = app.get("/v1/purposes/statistics").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(stats["retention_days"], 45);
}

/// `retention.worker` prunes every `retention.interval` without a command.
async fn the_retention_worker_prunes_every_interval(mut app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    assert_eq!(app.events_of("user:7").await.len(), 4);
    app.restart(|s| {
        s.retention.worker = true;
        s.retention.interval = std::time::Duration::from_millis(200);
    })
    .await;
    let mut left = 4;
    for _ in 0..50 {
        left = app.events_of("user:7").await.len();
        if left == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 2);
    assert!(verify_ledger(&app).0);
}

const CSV: &str = "subject,purpose,decision,occurred_at,policy_revision,region\n\
                   \" email: Ada@Example.com \",marketing_email,granted,2023-04-01T10:00:00Z,2021-02-01,FR\n\
                   user:7,analytics,maybe,2023-01-01T00:00:00Z,,\n\
                   user:7,no_such,granted,2023-01-01T00:00:00Z,,\n\
                   phone:+49 30 1234567,analytics,granted,2023-01-01T00:00:00Z,,\n\
                   user:7,analytics,granted,2022-06-01T00:00:00Z,,US-CA\n";

async fn post_import(app: &TestApp, content_type: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/imports"))
        .bearer_auth(&app.token)
        .header("Content-Type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Issue 11, item 8: the bulk endpoint, the rules and `line N: <reason>` of `consentry import`,
/// idempotent with it.
async fn the_import_endpoint_shares_the_cli_rules_and_is_idempotent(app: TestApp) {
    app.seed().await;
    let res = post_import(&app, "text/csv; charset=utf-8", CSV).await;
    assert_eq!(res.status(), StatusCode::OK);
    let summary: Value = res.json().await.unwrap();
    assert_eq!(
        (summary["rows"].as_u64(), summary["imported"].as_u64(), summary["failed"].as_u64()),
        (Some(5), Some(2), Some(3)),
        "{summary}"
    );
    let errors: Vec<&str> = summary["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(errors.len(), 3);
    assert!(errors[0].starts_with("line 3: decision:"), "{errors:?}");
    assert!(errors[1].starts_with("line 4:") && errors[1].contains("no_such"), "{errors:?}");
    assert!(errors[2].starts_with("line 5: subject:"), "{errors:?}");
    assert!(!summary.to_string().contains("+49 30"), "no phone number in the answer");
    let events = app.events_of("email:ada@example.com").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["source"].as_str(), events[0]["occurred_at"].as_str()),
        (Some("import"), Some("2023-04-01T10:00:00Z"))
    );

    // Again: nothing added.
    let again: Value = post_import(&app, "text/csv", CSV).await.json().await.unwrap();
    assert_eq!((again["imported"].as_u64(), again["already_imported"].as_u64()), (Some(0), Some(2)), "{again}");
    // The command knows the rows the endpoint imported: one code path, one set of keys.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    std::fs::write(&path, CSV).unwrap();
    let (_, cli, _) = cli_json(&app, &["import", "--format", "csv", path.to_str().unwrap()], &[]);
    assert_eq!((cli["imported"].as_u64(), cli["already_imported"].as_u64()), (Some(0), Some(2)), "{cli}");
    assert_eq!(app.events_of("email:ada@example.com").await.len(), 1);

    // NDJSON.
    let ndjson = "{\"subject\":\"user:8\",\"purpose\":\"analytics\",\"decision\":\"granted\",\"occurred_at\":\"2024-05-01T00:00:00Z\"}\n\
                  {\"subject\":\"user:8\"}\n";
    let res: Value = post_import(&app, "application/x-ndjson", ndjson).await.json().await.unwrap();
    assert_eq!((res["imported"].as_u64(), res["failed"].as_u64()), (Some(1), Some(1)), "{res}");
    assert!(res["errors"][0].as_str().unwrap().starts_with("line 2: purpose: is required"), "{res}");
    let res: Value = post_import(&app, "application/x-ndjson", ndjson).await.json().await.unwrap();
    assert_eq!(res["already_imported"], 1);
    assert!(verify_ledger(&app).0);
}

/// A refused row names the column of the row at fault, once: `purpose` (a write names it
/// `choices.<purpose>`, an import row in its `purpose` column), `region` (not `region: region:`),
/// and an NDJSON line that is not JSON says where, as `line N` and its column (not serde's
/// `at line 1 column M`, line 1 being the line alone).
async fn import_errors_name_the_rows_column_once(app: TestApp) {
    const REGION: &str = "'Atlantis' is not an ISO 3166-1 alpha-2 or ISO 3166-2 region code (e.g. 'US' or 'US-CA')";
    app.seed().await;
    let csv = "subject,purpose,decision,occurred_at,policy_revision,region\n\
               user:7,no_such,granted,2023-01-01T00:00:00Z,,\n\
               user:7,analytics,granted,2023-01-01T00:00:00Z,,Atlantis\n\
               user:7,necessary,denied,2023-01-01T00:00:00Z,,\n";
    let summary: Value = post_import(&app, "text/csv", csv).await.json().await.unwrap();
    assert_eq!(
        summary["errors"],
        json!([
            "line 2: purpose: no purpose 'no_such' is defined for this tenant",
            format!("line 3: region: {REGION}"),
            "line 4: purpose: 'necessary' is strictly necessary (notice_only) and cannot be refused",
        ]),
        "{summary}"
    );
    let ndjson = "{\"subject\":\"user:8\",\"purpose\":\"analytics\",\"decision\":\"granted\",\"occurred_at\":\"2024-05-01T00:00:00Z\"}\n\
                  {\"subject\":\"user:8\" \"purpose\":\"analytics\"}\n\
                  {\"subject\":\"user:8\",\"purpose\":\"analytics\"}\n\
                  {\"subject\":\"user:8\",\"purpose\":\"no_such\",\"decision\":\"granted\",\"occurred_at\":\"2024-05-01T00:00:00Z\"}\n";
    let summary: Value = post_import(&app, "application/x-ndjson", ndjson).await.json().await.unwrap();
    assert_eq!(summary["imported"], 1, "{summary}");
    assert_eq!(
        summary["errors"],
        json!([
            "line 2: expected `,` or `}` at column 21",
            "line 3: decision: is required",
            "line 4: purpose: no purpose 'no_such' is defined for this tenant",
        ]),
        "{summary}"
    );
    // The API's writes keep naming the purpose as the body does, and the region once.
    let res = app.record(json!({"subject": "user:7", "choices": {"no_such": true}, "source": "api"})).await;
    assert_eq!(
        assert_problem(res, 400).await["detail"],
        "choices.no_such: no purpose 'no_such' is defined for this tenant"
    );
    let res = app
        .record(json!({"subject": "user:7", "choices": {"analytics": true}, "source": "api", "region": "Atlantis"}))
        .await;
    assert_eq!(assert_problem(res, 400).await["detail"], format!("region: {REGION}"));
}

/// Refusals: no token 401, a token without `consents:write` 403, another media type 415, a body
/// above `max_import_bytes` 413 (64 KiB in the tests).
async fn the_import_endpoint_needs_a_token_with_consents_write_and_csv_or_ndjson(app: TestApp) {
    app.seed().await;
    let url = app.url("/v1/imports");
    let res = app.client.post(&url).header("Content-Type", "text/csv").body(CSV).send().await.unwrap();
    assert_problem(res, 401).await;
    let (reader, _) = app.issue_token("acme", &["consents:read", "consents:check"], None);
    let res =
        app.client.post(&url).bearer_auth(reader).header("Content-Type", "text/csv").body(CSV).send().await.unwrap();
    let problem = assert_problem(res, 403).await;
    assert!(problem["detail"].as_str().unwrap().contains("consents:write"));
    let (writer, _) = app.issue_token("acme", &["consents:write"], None);
    let res =
        app.client.post(&url).bearer_auth(&writer).header("Content-Type", "text/csv").body(CSV).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let problem = assert_problem(post_import(&app, "application/json", "{}").await, 415).await;
    assert!(problem["detail"].as_str().unwrap().contains("text/csv"), "{problem}");
    let big = format!(
        "subject,purpose,decision,occurred_at\n{}",
        "user:1,analytics,granted,2023-01-01T00:00:00Z\n".repeat(2000)
    );
    let problem = assert_problem(post_import(&app, "text/csv", &big).await, 413).await;
    assert!(problem["detail"].as_str().unwrap().contains("max_import_bytes"), "{problem}");
    assert!(app.events_of("user:1").await.is_empty(), "nothing of a refused body is written");
    // A body whose first line is not the header (found by the contract fuzzer: "{}" was read as
    // a header and answered 200 with nothing imported) is refused, naming the missing columns.
    let problem = assert_problem(post_import(&app, "text/csv", "{}").await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "body", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("the header has no subject, purpose, decision, occurred_at columns"), "{problem}");
    let headless = "user:1,analytics,granted,2023-01-01T00:00:00Z\n";
    let problem = assert_problem(post_import(&app, "text/csv", headless).await, 400).await;
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("no subject, purpose, decision"), "{problem}");
}

/// The summary's `kept_in_force` counts every expired event kept as the evidence of a state in
/// force (GDPR Art. 7(1)), also of subjects with nothing else to prune, which the pruning scan
/// never visits; a run with nothing to prune still reports them.
async fn kept_in_force_counts_every_expired_event_a_state_rests_on(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    // user:11: its only event is expired and in force. user:12: its expired analytics event is
    // in force, its last event is of a purpose kept for ever. user:13: the first of two expired
    // analytics events goes, the second is in force.
    let csv = "subject,purpose,decision,occurred_at\n\
               user:11,analytics,granted,2023-01-05T00:00:00Z\n\
               user:12,analytics,granted,2023-01-05T00:00:00Z\n\
               user:12,marketing_email,granted,2023-01-20T00:00:00Z\n\
               user:13,analytics,granted,2023-01-05T00:00:00Z\n\
               user:13,analytics,denied,2023-01-06T00:00:00Z\n";
    let res = post_import(&app, "text/csv", csv).await;
    assert_eq!(res.json::<Value>().await.unwrap()["imported"], 5);
    // A recent event, not expired: not counted.
    let res = app.record(json!({"subject": "user:14", "choices": {"analytics": true}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok, "{stderr}");
    // Pruned: user:7's two superseded analytics events, user:13's first one.
    assert_eq!(summary["events_pruned"], 3, "{summary}");
    // Kept: the analytics event in force of user:7, user:11, user:12 and user:13.
    assert_eq!(summary["kept_in_force"], 4, "{summary}");
    let (ok, again, _) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok);
    assert_eq!((again["events_pruned"].as_u64(), again["kept_in_force"].as_u64()), (Some(0), Some(4)), "{again}");
    for (subject, left) in [("user:7", 2), ("user:11", 1), ("user:12", 2), ("user:13", 1), ("user:14", 1)] {
        assert_eq!(app.events_of(subject).await.len(), left, "{subject}");
    }
}

/// The ledger is append-only (GDPR Art. 7(1): the evidence of consent is kept): a DELETE outside
/// a retention run is refused, even of an event at or below its subject's checkpoint
/// (`through_seq`) that the run kept; an event a state rests on is refused even when marked as
/// being pruned; a retention run still prunes, and leaves no mark behind.
async fn only_a_retention_run_deletes_events_even_below_a_checkpoint(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    // Emptying the table at once is refused too (PostgreSQL's TRUNCATE fires no row trigger).
    let empty =
        if app.database_url.starts_with("postgres") { "TRUNCATE consent_events" } else { "DELETE FROM consent_events" };
    let message = try_sql(&app, empty).expect_err(empty).to_string();
    assert!(message.contains("append-only"), "{empty}: {message}");
    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && summary["events_pruned"] == 2, "{summary} {stderr}");
    // user:7's marketing_email event (seq 2) is below the checkpoint (through_seq 3), in force.
    for filter in [
        "purpose_key = 'marketing_email'",
        "purpose_key = 'analytics'",
        "seq <= (SELECT MAX(through_seq) FROM ledger_checkpoints)",
    ] {
        let refused = try_sql(&app, &format!("DELETE FROM consent_events WHERE {filter}"));
        let message = refused.expect_err(filter).to_string();
        assert!(message.contains("append-only"), "{filter}: {message}");
    }
    // Marked as a run marks what it prunes: the evidence of a state in force still stays.
    let refused = try_sql(
        &app,
        "INSERT INTO ledger_pruning (event_id) SELECT id FROM consent_events WHERE purpose_key = 'marketing_email'; \
         DELETE FROM consent_events WHERE purpose_key = 'marketing_email'",
    );
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    exec_sql(&app, "DELETE FROM ledger_pruning");
    assert_eq!(app.events_of("user:7").await.len(), 2);
    assert!(verify_ledger(&app).0);

    // A new decision moves the state off the old analytics event: the run prunes it.
    let res = app.record(json!({"subject": "user:7", "choices": {"analytics": false}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && summary["events_pruned"] == 1, "{summary} {stderr}");
    assert_eq!(app.events_of("user:7").await.len(), 2);
    assert!(verify_ledger(&app).0);
    // No mark is left behind for a later DELETE to use.
    let url = app.database_url.clone();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let q = "SELECT COUNT(*) AS n FROM ledger_pruning";
    let marks = if url.starts_with("postgres") {
        diesel::sql_query(q).get_result::<Count>(&mut diesel::PgConnection::establish(&url).unwrap())
    } else {
        diesel::sql_query(q)
            .get_result::<Count>(&mut diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap())
    };
    assert_eq!(marks.unwrap().n, 0);
}

/// Key rotation: a retired receipt key leaves /.well-known/jwks.json after its `publish_until`
/// date, but the checkpoints and receipts it signed stay evidence (GDPR Art. 7(1)): `ledger
/// verify`, the retention run and proof bundles check them with the ledger's key history, each
/// key pinned by its RFC 7638 thumbprint (its `kid`). A changed checkpoint still fails.
async fn what_a_retired_key_signed_still_verifies_after_it_leaves_the_jwks(mut app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    let res = app
        .record(json!({"subject": "user:9", "choices": {"analytics": true}, "source": "api",
                       "occurred_at": "2023-01-10T00:00:00Z"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .record(json!({"subject": "user:9", "choices": {"analytics": false}, "source": "api",
                       "occurred_at": "2023-02-10T00:00:00Z"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (ok, summary, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && summary["events_pruned"] == 3, "{summary} {stderr}");
    let jwks = |app: &TestApp| {
        let url = app.url("/.well-known/jwks.json");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let old_kid = jwks(&app).await["keys"][0]["kid"].as_str().unwrap().to_owned();

    // Rotate, then let the retired key's date pass (moved into the past in the key file).
    let out = app.cli(&["receipts", "rotate-key", "--publish-until", "2999-12-31"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let key_file = app.settings.receipts.key_file.clone().unwrap();
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    for key in file["keys"].as_array_mut().unwrap() {
        if key["kid"] == old_kid.as_str() {
            key["publish_until"] = json!("2000-01-01");
        }
    }
    std::fs::write(&key_file, serde_json::to_string(&file).unwrap()).unwrap();
    app.restart(|_| {}).await;
    let published = jwks(&app).await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 1, "{published}");
    assert_eq!(published["keys"][0]["kid"], new_kid.as_str());

    let (ok, report) = verify_ledger(&app);
    assert!(ok, "checkpoints signed by the retired key: {report}");
    assert_eq!(report["checkpoints"], 2);
    let (ok, again, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && again["broken_chains"] == json!([]), "{again} {stderr}");
    let mut bundles = Vec::new();
    for subject in ["user:7", "user:9"] {
        let text = app.get(&format!("/v1/subjects/{subject}/proof")).send().await.unwrap().text().await.unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let kids: Vec<&str> =
            bundle["jwks"]["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{subject}: {kids:?}");
        let (ok, report) = crate::rights::proof_verify(&text);
        assert!(ok, "{subject}: {report}");
        assert_eq!(report["checkpoints"], 1);
        bundles.push(bundle);
    }
    // Pinned offline: the published JWKS no longer holds the retired key, the ledger's key
    // history (`consentry ledger keys`) does.
    let (ok, report) = crate::rights::proof_verify_with(&bundles[1].to_string(), Some(&published));
    assert!(!ok && report["problems"].to_string().contains("not one of the trusted keys"), "{report}");
    let (ok, history, stderr) = cli_json(&app, &["ledger", "keys"], &[]);
    assert!(ok, "{stderr}");
    let kids: Vec<&str> = history["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [old_kid.as_str(), new_kid.as_str()]);
    let (ok, report) = crate::rights::proof_verify_with(&bundles[1].to_string(), Some(&history));
    assert!(ok && report["keys_pinned"] == true, "{report}");

    // The retention run checks the old checkpoint before it extends it, signed with the new key.
    let res = app.record(json!({"subject": "user:7", "choices": {"analytics": false}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (ok, third, stderr) = cli_json(&app, &["retention", "run"], &[]);
    assert!(ok && third["events_pruned"] == 1 && third["broken_chains"] == json!([]), "{third} {stderr}");

    // The key file loses the retired key altogether: the ledger's history still has it.
    file["keys"].as_array_mut().unwrap().retain(|k| k["kid"] != old_kid.as_str());
    std::fs::write(&key_file, serde_json::to_string(&file).unwrap()).unwrap();
    let (ok, report) = verify_ledger(&app);
    assert!(ok, "{report}");
    // A history row whose key is not the one its kid names (its thumbprint) is not used.
    let old_x = bundles[0]["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .map(|k| k["x"].as_str().unwrap().to_owned())
        .unwrap();
    let new_x = published["keys"][0]["x"].as_str().unwrap();
    exec_sql(&app, &format!("UPDATE ledger_keys SET x = '{new_x}' WHERE kid = '{old_kid}'"));
    let (ok, report) = verify_ledger(&app);
    assert!(!ok && report["broken"].to_string().contains("checkpoint:"), "{report}");
    exec_sql(&app, &format!("UPDATE ledger_keys SET x = '{old_x}' WHERE kid = '{old_kid}'"));
    assert!(verify_ledger(&app).0);

    // A changed checkpoint still fails, in the database and in a bundle.
    exec_sql(&app, "UPDATE ledger_checkpoints SET events = events + 1");
    let (ok, report) = verify_ledger(&app);
    assert!(!ok && report["broken"].to_string().contains("checkpoint:"), "{report}");
    let mut forged = bundles[0].clone();
    let jws = forged["checkpoints"][0].as_str().unwrap().to_owned();
    let (head, rest) = jws.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&base64_url(payload)).unwrap();
    claims["events"] = json!(claims["events"].as_u64().unwrap() + 1);
    let payload = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    forged["checkpoints"][0] = json!(format!("{head}.{payload}.{signature}"));
    let (ok, report) = crate::rights::proof_verify(&forged.to_string());
    assert!(!ok);
    assert!(report["problems"].to_string().contains("checkpoint 1:"), "{report}");
}

fn base64_url(text: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text).unwrap()
}

/// The retention run's scan (tenant, purpose, `occurred_at` before the cutoff, a page after the
/// last one in (occurred_at, seq) order) is a range of `consent_events_retention`, read in order:
/// no sort, and no page reads the events of other purposes or the recent ones.
async fn the_pruning_scan_reads_its_index_in_order(app: TestApp) {
    use diesel::connection::SimpleConnection;
    seed_with_retention(&app).await;
    import_history(&app).await;
    let scan = "SELECT occurred_at, seq, subject_id FROM consent_events WHERE tenant_id = 't' \
                AND purpose_key = 'analytics' AND occurred_at < '2026-01-01 00:00:00' \
                AND occurred_at >= '2023-01-01 00:00:00' \
                AND (occurred_at > '2023-01-01 00:00:00' OR seq > 1) ORDER BY occurred_at, seq LIMIT 10000";
    #[derive(diesel::QueryableByName)]
    struct PgPlan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(diesel::QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let url = app.database_url.clone();
    let plan: Vec<String> = if url.starts_with("postgres") {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        // Three rows: without this the planner reads the table itself, whatever the indexes.
        conn.batch_execute("SET enable_seqscan = off").unwrap();
        let rows = diesel::sql_query(format!("EXPLAIN {scan}")).load::<PgPlan>(&mut conn).unwrap();
        rows.into_iter().map(|r| r.line).collect()
    } else {
        let mut conn = diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
        let rows = diesel::sql_query(format!("EXPLAIN QUERY PLAN {scan}")).load::<SqlitePlan>(&mut conn).unwrap();
        rows.into_iter().map(|r| r.detail).collect()
    };
    let plan = plan.join("\n");
    assert!(plan.contains("consent_events_retention"), "{plan}");
    assert!(!plan.contains("Sort") && !plan.contains("TEMP B-TREE"), "read in index order: {plan}");
}

/// The time of row `n` of [`large_history`]: one minute apart from 2023-01-01.
fn minute(n: usize) -> String {
    (chrono::DateTime::parse_from_rfc3339("2023-01-01T00:00:00Z").unwrap() + chrono::Duration::minutes(n as i64))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// 200 subjects (`user:i`, or `email:person<i>@example.com` for odd i) with five decisions each,
/// interleaved (subject after subject, then the next decision of each), one minute apart:
/// analytics granted, marketing_email granted, analytics denied, marketing_email denied,
/// analytics granted. A bad row (`decision` "perhaps") stands in the middle, at line 503.
fn large_history() -> String {
    let mut csv = String::from("subject,purpose,decision,occurred_at\n");
    for j in 0..5 {
        for i in 0..200 {
            if j * 200 + i == 501 {
                csv.push_str("user:bad,analytics,perhaps,2023-01-01T00:00:00Z\n");
            }
            let subject = if i % 2 == 0 { format!("user:{i}") } else { format!("email:person{i}@example.com") };
            let purpose = if j % 2 == 0 { "analytics" } else { "marketing_email" };
            let decision = if (j / 2) % 2 == 0 { "granted" } else { "denied" };
            csv.push_str(&format!("{subject},{purpose},{decision},{}\n", minute(j * 200 + i)));
        }
    }
    csv
}

/// Issue 11, item 8, at volume: one import writes many subjects with several rows each in its
/// batches; each subject's rows chain in file order (`ledger verify` passes), the state follows
/// the newest `occurred_at` but never overrides a newer live choice, a bad row in the middle is
/// reported at its line while the rows around it are kept, and importing the file again adds
/// nothing.
async fn a_large_import_chains_each_subject_in_file_order_keeps_the_good_rows_and_adds_nothing_again(app: TestApp) {
    app.seed().await;
    // A live choice, newer than every imported row of user:4.
    let res = app.record(json!({"subject": "user:4", "choices": {"analytics": false}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.csv");
    std::fs::write(&path, large_history()).unwrap();
    let path = path.to_str().unwrap();

    let (ok, summary, stderr) = cli_json(&app, &["import", "--format", "csv", path], &[]);
    assert!(!ok, "a refused row fails the command");
    assert_eq!(
        (
            summary["rows"].as_u64(),
            summary["imported"].as_u64(),
            summary["events"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(1001), Some(1000), Some(1000), Some(1)),
        "{summary} {stderr}"
    );
    assert!(stderr.contains("line 503: decision: 'perhaps' is neither granted nor denied"), "{stderr}");
    // The rows just before and after the bad one (same batch) are kept.
    let events = app.events_of("email:person101@example.com").await;
    let times: Vec<&str> = events.iter().map(|e| e["occurred_at"].as_str().unwrap()).collect();
    assert_eq!(times, (0..5).map(|j| minute(j * 200 + 101)).collect::<Vec<_>>(), "in file order");
    assert!(events.iter().all(|e| e["source"] == "import"));
    assert_eq!(app.events_of("user:102").await.len(), 5);
    // user:6's newest decision by occurred_at is its marketing_email denial (row 3).
    let marketing = &app.consents_of("user:6").await["purposes"]["marketing_email"];
    assert_eq!((marketing["status"].as_str(), marketing["updated_at"].as_str()), (Some("denied"), Some(&*minute(606))));
    // user:4's live denial is newer than its imported grants: it stays in force.
    assert_eq!(app.consents_of("user:4").await["purposes"]["analytics"]["status"], "denied");
    // Its imported analytics denial is history (2023), not a repeat of the live denial in force:
    // every imported row is an event.
    assert_eq!(app.events_of("user:4").await.len(), 6, "the live event and five imported");
    let (verified, report) = verify_ledger(&app);
    assert!(verified, "{report}");
    assert_eq!(report["events"], 1001, "{report}");

    // Again: nothing added, the same row refused.
    let (_, again, stderr) = cli_json(&app, &["import", "--format", "csv", path], &[]);
    assert_eq!(
        (again["imported"].as_u64(), again["already_imported"].as_u64(), again["failed"].as_u64()),
        (Some(0), Some(1000), Some(1)),
        "{again} {stderr}"
    );
    assert!(stderr.contains("line 503:"), "{stderr}");
    assert_eq!(verify_ledger(&app).1["events"], 1001);
}

/// Retention locks the subjects it prunes with the statement the ledger's writes lock theirs with
/// (`backend::lock_subjects`), and PostgreSQL keeps one plan per prepared statement and
/// connection. A write transaction's `SET LOCAL enable_seqscan = off` does not replan a statement
/// whose generic plan was cached before (`Plans::Generic`), so a plan made for retention while
/// `data_subjects` was small would be the scan every later write batch on that connection locks
/// with. Retention plans its pruning as the writes do: on one connection, after a pruning run and
/// a write to a pruned subject, no prepared statement has been planned both ways
/// (`pg_prepared_statements`: custom and generic plans), and the lock's plans were generic only.
/// On SQLite (no plan cache across transactions) the same run and write succeed.
async fn pruning_plans_the_subject_lock_it_shares_with_writes_as_writes_do(app: TestApp) {
    use consentry::db::AnyConnection;
    use consentry::ledger::{record_one, Outcome};

    #[derive(diesel::QueryableByName, Debug)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        custom_plans: i64,
    }

    seed_with_retention(&app).await;
    import_history(&app).await;
    let mut conn = super::consents::raw_connection(&app);
    let keys = consentry::receipts::ReceiptKeys::load(&app.settings).unwrap();
    let retention = consentry::service::retention::Retention { keys: &keys, opt_out_requests_days: None };
    let summary = consentry::service::retention::run(&mut conn, &retention, chrono::Utc::now()).unwrap();
    assert_eq!(summary.events_pruned, 2, "user:7's two expired analytics events not in force: {summary:?}");

    let mut submission = crate::helpers::api_submission(&mut conn, "user:7", "analytics", false);
    let written = record_one(&mut conn, &mut submission).unwrap();
    assert!(matches!(written, Outcome::Fresh { .. }), "{written:?}");

    let AnyConnection::Postgresql(c) = &mut conn else { return };
    let prepared: Vec<Prepared> =
        diesel::sql_query("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements").load(c).unwrap();
    let both: Vec<&Prepared> = prepared.iter().filter(|p| p.generic_plans > 0 && p.custom_plans > 0).collect();
    assert!(both.is_empty(), "statements planned both generically and for their parameters: {both:#?}");
    let lock = prepared.iter().find(|p| p.statement.contains("FOR NO KEY UPDATE) d")).expect("the subject lock");
    assert_eq!((lock.custom_plans, lock.generic_plans > 1), (0, true), "pruning's lock and the write's: {lock:?}");
}

/// The change feed's cursor is the `seq` of the last event read. An imported event whose
/// `occurred_at` is older than its purpose's retention is read from the feed, then pruned: a
/// reader holding a cursor at it (or at any event before it) resumes where it was, and reads
/// exactly the events after it that remain. Before, the cursor of a pruned event was refused
/// ("is not a cursor from next_cursor") and its reader had to start again from the beginning
/// (found by a trial).
async fn a_feed_cursor_at_a_pruned_event_still_resumes_where_it_was(app: TestApp) {
    seed_with_retention(&app).await;
    import_history(&app).await;
    let recent = app.record(json!({"subject": "user:11", "choices": {"analytics": true}, "source": "api"})).await;
    assert_eq!(recent.status(), StatusCode::CREATED);
    let app_ref = &app;
    let page = move |after: String| async move {
        let url = if after.is_empty() {
            "/v1/events?limit=1".to_owned()
        } else {
            format!("/v1/events?limit=1000&after={after}")
        };
        let res = app_ref.get(&url).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        body
    };
    // Every cursor the feed hands out, one event a page, and what followed each.
    let mut cursors: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut after = String::new();
    loop {
        let url = if after.is_empty() {
            "/v1/events?limit=1".to_owned()
        } else {
            format!("/v1/events?limit=1&after={after}")
        };
        let body: Value = app.get(&url).send().await.unwrap().json().await.unwrap();
        if body["events"].as_array().unwrap().is_empty() {
            break;
        }
        let read = body["events"][0]["id"].as_str().unwrap().to_owned();
        after = body["next_cursor"].as_str().unwrap().to_owned();
        let rest = page(after.clone()).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        cursors.push((after.clone(), read, rest));
    }
    assert_eq!(cursors.len(), 5, "four imported events and a recent one: {cursors:?}");

    let out = app.cli(&["retention", "run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events_pruned"], 2, "{summary}");
    let remaining: Vec<String> = page("0".to_owned()).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(remaining.len(), 3);
    let at_pruned = cursors.iter().filter(|(_, read, _)| !remaining.contains(read)).count();
    assert_eq!(at_pruned, 2, "two of the cursors name an event that is gone");
    for (cursor, _, before) in &cursors {
        let expected: Vec<&String> = before.iter().filter(|id| remaining.contains(id)).collect();
        let now = page(cursor.clone()).await;
        let ids: Vec<&str> = now["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, expected, "after {cursor}");
    }
    // A number that never was an event's position is still refused.
    let res = app.get("/v1/events?after=999999999").send().await.unwrap();
    assert_problem(res, 400).await;
}

/// Retention keeps a pruned event's place in the feed so that a cursor at it resumes
/// (`pruned_feed_positions`), but not a row for every event it ever pruned: the places before
/// every remaining event are equivalent (a cursor at any of them resumes at the start), and one
/// of them stands for the rest. The table held one row per pruned event, for ever.
async fn the_places_of_events_pruned_before_every_remaining_one_are_kept_as_one(app: TestApp) {
    use diesel::RunQueryDsl;
    seed_with_retention(&app).await;
    // Three decisions of user:9 long ago, each in a transaction of its own; the last is in force.
    for (granted, at) in [(true, "2023-01-10"), (false, "2023-02-10"), (true, "2023-03-10")] {
        let res = app
            .record(json!({"subject": "user:9", "choices": {"analytics": granted}, "source": "api",
                           "occurred_at": format!("{at}T00:00:00Z")}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = app.record(json!({"subject": "user:11", "choices": {"analytics": true}, "source": "api"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let ids = |body: &Value| -> Vec<String> {
        body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    // Every cursor the feed hands out, one event a page.
    let mut cursors: Vec<(String, String)> = Vec::new();
    let mut url = "/v1/events?limit=1".to_owned();
    loop {
        let body: Value = app.get(&url).send().await.unwrap().json().await.unwrap();
        let Some(read) = ids(&body).pop() else { break };
        let cursor = body["next_cursor"].as_str().unwrap().to_owned();
        url = format!("/v1/events?limit=1&after={cursor}");
        cursors.push((cursor, read));
    }
    assert_eq!(cursors.len(), 4, "{cursors:?}");

    let out = app.cli(&["retention", "run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events_pruned"], 2, "the first two decisions: {summary}");
    let mut conn = super::consents::raw_connection(&app);
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows =
        diesel::sql_query("SELECT COUNT(*) AS n FROM pruned_feed_positions").get_result::<Count>(&mut conn).unwrap();
    assert_eq!(rows.n, 1, "two places before every remaining event, kept as one");

    let remaining = ids(&app.get("/v1/events?limit=1000").send().await.unwrap().json::<Value>().await.unwrap());
    assert_eq!(remaining.len(), 2, "{remaining:?}");
    for (n, (cursor, read)) in cursors.iter().enumerate() {
        let res = app.get(&format!("/v1/events?limit=1000&after={cursor}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "after {cursor}");
        let expected: Vec<String> =
            cursors[n + 1..].iter().map(|(_, id)| id.clone()).filter(|id| remaining.contains(id)).collect();
        assert_eq!(ids(&res.json().await.unwrap()), expected, "after {cursor} (it read {read})");
    }
    // A number past every place the feed handed out is still refused.
    let res = app.get("/v1/events?after=999999999").send().await.unwrap();
    assert_problem(res, 400).await;
    // Another run keeps it so (nothing more to prune, nothing more to compact).
    let out = app.cli(&["retention", "run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows =
        diesel::sql_query("SELECT COUNT(*) AS n FROM pruned_feed_positions").get_result::<Count>(&mut conn).unwrap();
    assert_eq!(rows.n, 1);
}
