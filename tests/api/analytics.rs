//! Consent and opt-out analytics (issue 13): the answers are compared with counts computed from
//! the events the test wrote (read back from the change feed), before the worker rolled them up
//! (read-your-writes from the events after the cursor) and after (from the rollups alone),
//! across restarts and instances.

use crate::helpers::{assert_problem, TestApp, ORIGIN};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

crate::backend_tests!(
    consent_analytics_match_the_events_before_and_after_the_rollup,
    rollups_count_each_event_once_across_restarts_and_concurrent_workers,
    buckets_filters_and_csv_agree_with_the_totals,
    opt_out_analytics_count_requests_by_channel_with_business_days_11_ccr_7102,
    analytics_refuse_malformed_parameters_and_narrow_tokens,
    a_reconsent_preview_counts_the_people_a_revision_would_ask_again,
);

/// Every event of the tenant, from the change feed.
async fn all_events(app: &TestApp) -> Vec<Value> {
    let (mut events, mut after) = (Vec::new(), None::<String>);
    loop {
        let path = match &after {
            None => "/v1/events?limit=1000".to_owned(),
            Some(c) => format!("/v1/events?limit=1000&after={c}"),
        };
        let page: Value = app.get(&path).send().await.unwrap().json().await.unwrap();
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
}

/// What the report's totals must say, computed from the events: decisions per
/// (purpose, decision, source), and banner submission outcomes and GPC submissions, a
/// submission being the events of one subject with one `recorded_at`.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    decisions: BTreeMap<(String, String, String), i64>,
    submissions: i64,
    accept_all: i64,
    reject_all: i64,
    partial: i64,
    gpc: i64,
}

fn expected(events: &[Value], keep: impl Fn(&Value) -> bool) -> Expected {
    let mut e = Expected::default();
    let mut submissions: HashMap<(String, String), Vec<&Value>> = HashMap::new();
    for ev in events.iter().filter(|ev| keep(ev)) {
        let s = |k: &str| ev[k].as_str().unwrap().to_owned();
        *e.decisions.entry((s("purpose"), s("decision"), s("source"))).or_default() += 1;
        submissions.entry((s("subject_id"), s("recorded_at"))).or_default().push(ev);
    }
    for evs in submissions.values() {
        e.submissions += 1;
        if evs.iter().any(|ev| ev["source"] == "gpc") {
            e.gpc += 1;
        }
        let own: Vec<&&Value> = evs.iter().filter(|ev| ev["source"] != "gpc").collect();
        if own.first().is_some_and(|ev| ev["source"] == "banner") {
            let grants = own.iter().filter(|ev| ev["decision"] == "granted").count();
            match (grants, own.len() - grants) {
                (_, 0) => e.accept_all += 1,
                (0, _) => e.reject_all += 1,
                _ => e.partial += 1,
            }
        }
    }
    e
}

fn reported(totals: &Value) -> Expected {
    let mut e = Expected::default();
    for d in totals["decisions"].as_array().unwrap() {
        let s = |k: &str| d[k].as_str().unwrap().to_owned();
        e.decisions.insert((s("purpose"), s("decision"), s("source")), d["count"].as_i64().unwrap());
    }
    let sub = &totals["submissions"];
    e.submissions = sub["total"].as_i64().unwrap();
    e.accept_all = sub["accept_all"].as_i64().unwrap();
    e.reject_all = sub["reject_all"].as_i64().unwrap();
    e.partial = sub["partial"].as_i64().unwrap();
    e.gpc = sub["gpc"].as_i64().unwrap();
    e
}

async fn report(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/v1/analytics/consents?{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits until the worker has rolled up every event (nothing counted from the events).
async fn rolled_up(app: &TestApp, query: &str) -> Value {
    for _ in 0..200 {
        let r = report(app, query).await;
        if r["pending_counted"] == 0 && r["pending_events"] == 0 {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the analytics worker did not catch up");
}

fn visitor(n: u32) -> String {
    format!("0b9c3f1e-8d4a-4f6e-9a51-{n:012}")
}

/// Writes a mix: banner accept all, reject all, partial, a GPC visitor, a preference-centre
/// change, server-side decisions with a region, and an opt-out request.
async fn write_mix(app: &TestApp, site: &str) {
    let banner = |v: u32, choices: Value| json!({"visitor_id": visitor(v), "choices": choices, "policy_revision": "2021-02-01", "source": "banner"});
    for (v, choices) in [
        (1, json!({"analytics": true, "sale_sharing": true})),
        (2, json!({"analytics": true, "sale_sharing": true})),
        (3, json!({"analytics": false, "sale_sharing": false})),
        (4, json!({"analytics": true, "sale_sharing": false})),
    ] {
        let res = app.visitor_post(site, &banner(v, choices)).send().await.unwrap();
        assert_eq!(res.status(), 201);
    }
    let res =
        app.visitor_post(site, &banner(5, json!({"analytics": true}))).header("Sec-GPC", "1").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let pc = json!({"visitor_id": visitor(1), "choices": {"analytics": false}, "policy_revision": "2021-02-01", "source": "preference_centre"});
    assert_eq!(app.visitor_post(site, &pc).send().await.unwrap().status(), 201);
    for (who, region) in [("email:ada@example.com", "DE"), ("user:42", "US-CA")] {
        let res = app
            .record(json!({"subject": who, "choices": {"marketing_email": true}, "source": "api", "region": region}))
            .await;
        assert_eq!(res.status(), 201);
    }
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "user:42", "channel": "phone", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

async fn consent_analytics_match_the_events_before_and_after_the_rollup(app: TestApp) {
    let site = app.seed().await;
    write_mix(&app, &site).await;
    let events = all_events(&app).await;
    let want = expected(&events, |_| true);
    // What the test wrote, by hand: visitors 1 and 2 accept all, 3 rejects all, 4 partial; 5's
    // submission records a GPC denial of sale_sharing and a grant of analytics (accept all).
    assert_eq!((want.accept_all, want.reject_all, want.partial, want.gpc), (3, 1, 1, 1));
    assert_eq!(want.submissions, 9);
    // Right after the writes: the report includes them (from the rollups or the events after
    // the cursor), whichever the worker has reached.
    let now = report(&app, "").await;
    assert_eq!(reported(&now["totals"]), want);
    // Once rolled up: the same answer from the rollups alone.
    let later = rolled_up(&app, "").await;
    assert_eq!(reported(&later["totals"]), want);
    let sub = &later["totals"]["submissions"];
    // GPC share: 1 GPC submission among the 6 visitor submissions (5 banner, 1 preference centre).
    assert_eq!(sub["visitor_submissions"], 6);
    assert!((sub["gpc_share"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
    assert_eq!(sub["by_source"]["preference_centre"]["reject_all"], 1);
    let feed: Value = app.get("/v1/events?limit=1000").send().await.unwrap().json().await.unwrap();
    assert_eq!(later["rolled_up_to"], feed["next_cursor"], "the cursor is the feed's last position");
}

async fn rollups_count_each_event_once_across_restarts_and_concurrent_workers(mut app: TestApp) {
    let site = app.seed().await;
    write_mix(&app, &site).await;
    let first = rolled_up(&app, "").await;
    // More events, then a restart: the worker resumes from its stored cursor.
    for v in 10..20 {
        let body = json!({"visitor_id": visitor(v), "choices": {"analytics": v % 2 == 0}, "policy_revision": "2021-02-01", "source": "banner"});
        assert_eq!(app.visitor_post(&site, &body).send().await.unwrap().status(), 201);
    }
    app.restart(|_| {}).await;
    // A second instance runs its own worker on the same database.
    app.spawn_instance().await;
    // And two more workers by hand, at the same time, on their own connections.
    let url = app.database_url.clone();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let pool = consentry::db::connect(&url, 1).unwrap();
                let mut conn = pool.get().unwrap();
                consentry::service::analytics::roll_up_all(&mut conn, 1000).unwrap()
            })
        })
        .collect();
    let added: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(added <= 10, "the ten new events were rolled up at most once between the two ({added})");
    let events = all_events(&app).await;
    let after = rolled_up(&app, "").await;
    assert_eq!(reported(&after["totals"]), expected(&events, |_| true));
    assert_eq!(after["totals"]["submissions"]["total"], first["totals"]["submissions"]["total"].as_i64().unwrap() + 10);
}

async fn buckets_filters_and_csv_agree_with_the_totals(app: TestApp) {
    let site = app.seed().await;
    write_mix(&app, &site).await;
    // An import dated in the past lands on its own day (occurred_at), in another month.
    let res = app
        .record(json!({"subject": "user:7", "choices": {"analytics": true}, "source": "import", "occurred_at": "2026-01-15T12:00:00Z", "policy_revision": "2021-02-01"}))
        .await;
    assert_eq!(res.status(), 201);
    let events = all_events(&app).await;
    let today = chrono::Utc::now().date_naive();
    let range = format!("from=2026-01-01&to={today}");
    let all = rolled_up(&app, &format!("{range}&interval=month")).await;
    assert_eq!(reported(&all["totals"]), expected(&events, |_| true));
    // Every month from January to now is a bucket, empty ones included, and they add up.
    let buckets = all["buckets"].as_array().unwrap();
    assert_eq!(buckets[0]["start"], "2026-01-01");
    assert_eq!(buckets.len() as u32, chrono::Datelike::month(&today));
    let sum: i64 = buckets.iter().map(|b| b["submissions"]["total"].as_i64().unwrap()).sum();
    assert_eq!(sum, all["totals"]["submissions"]["total"].as_i64().unwrap());
    assert_eq!(buckets[0]["decisions"][0]["source"], "import");
    // Days: only the range is counted.
    let jan = report(&app, "from=2026-01-15&to=2026-01-15").await;
    assert_eq!(
        reported(&jan["totals"]),
        expected(&events, |e| e["occurred_at"].as_str().unwrap().starts_with("2026-01-15"))
    );
    // Filters: purpose, region, site (by key or id).
    let p = report(&app, &format!("{range}&purpose=analytics")).await;
    assert_eq!(reported(&p["totals"]).decisions, expected(&events, |e| e["purpose"] == "analytics").decisions);
    let r = report(&app, &format!("{range}&region=DE")).await;
    assert_eq!(reported(&r["totals"]), expected(&events, |e| e["region"] == "DE"));
    let s = report(&app, &format!("{range}&site={site}")).await;
    let site_id = events.iter().find_map(|e| e["site_id"].as_str()).unwrap().to_owned();
    assert_eq!(reported(&s["totals"]), expected(&events, |e| e["site_id"] == site_id.as_str()));
    let by_id = report(&app, &format!("{range}&site={site_id}")).await;
    assert_eq!(by_id["totals"], s["totals"]);
    // CSV, by format=csv and by Accept: the decision rows add up to the JSON's.
    for res in [
        app.get(&format!("/v1/analytics/consents?{range}&interval=week&format=csv")).send().await.unwrap(),
        app.get(&format!("/v1/analytics/consents?{range}&interval=week"))
            .header("Accept", "text/csv")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
        let text = res.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["bucket_start", "metric", "purpose", "decision", "source", "outcome", "count"]
        );
        let mut decisions: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        let mut gpc = 0;
        for row in reader.records() {
            let row = row.unwrap();
            match &row[1] {
                "decisions" => {
                    *decisions.entry((row[2].into(), row[3].into(), row[4].into())).or_default() +=
                        row[6].parse::<i64>().unwrap()
                }
                "gpc_submissions" => gpc += row[6].parse::<i64>().unwrap(),
                _ => {}
            }
        }
        let want = expected(&events, |_| true);
        assert_eq!(decisions, want.decisions);
        assert_eq!(gpc, want.gpc);
    }
}

/// Business days after `from`'s date up to and including `to`'s (weekends skipped).
fn business_days(from: chrono::NaiveDate, to: chrono::NaiveDate) -> i64 {
    use chrono::Datelike;
    let mut n = 0;
    let mut d = from;
    while d < to {
        d = d.succ_opt().unwrap();
        if d.weekday().num_days_from_monday() < 5 {
            n += 1;
        }
    }
    n
}

async fn opt_out_analytics_count_requests_by_channel_with_business_days_11_ccr_7102(app: TestApp) {
    let site = app.seed().await;
    let today = chrono::Utc::now().date_naive();
    let ago = |days: i64| (today - chrono::Duration::days(days)).and_hms_opt(9, 0, 0).unwrap().and_utc();
    let mut ids = Vec::new();
    for (n, (channel, days_ago)) in
        [("phone", 40), ("phone", 10), ("email", 30), ("web_form", 5), ("authorized_agent", 2)].into_iter().enumerate()
    {
        let res = app
            .post(
                "/v1/opt-outs",
                &json!({"subject": format!("user:{n}"), "channel": channel, "scope": "sale_sharing",
                        "received_at": ago(days_ago).to_rfc3339()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    // Complete the 10-day-old phone request and the email one, with a note.
    for id in [&ids[1], &ids[2]] {
        let res = app
            .post(&format!("/v1/opt-outs/{id}/complete"), &json!({"note": "suppressed in the CRM"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["completion_note"], "suppressed in the CRM");
    }
    // A GPC visitor: an opt-out honoured at once (11 CCR §7025).
    let body = json!({"visitor_id": visitor(9), "choices": {}, "policy_revision": "2021-02-01", "source": "banner"});
    assert_eq!(app.visitor_post(&site, &body).header("Sec-GPC", "1").send().await.unwrap().status(), 201);

    let from = today - chrono::Duration::days(60);
    let res = app.get(&format!("/v1/analytics/opt-outs?from={from}&to={today}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.unwrap();
    let channel =
        |name: &str| r["by_channel"].as_array().unwrap().iter().find(|c| c["channel"] == name).unwrap().clone();
    let names: Vec<&str> = r["by_channel"].as_array().unwrap().iter().map(|c| c["channel"].as_str().unwrap()).collect();
    assert_eq!(names, ["web_form", "gpc", "phone", "authorized_agent", "email"]);
    // The 40-day-old phone request is open past its 15 business days: overdue.
    let phone = channel("phone");
    assert_eq!(
        (phone["received"].as_i64(), phone["completed"].as_i64(), phone["open"].as_i64(), phone["overdue"].as_i64()),
        (Some(2), Some(1), Some(1), Some(1))
    );
    let phone_days = business_days(today - chrono::Duration::days(10), today);
    let email_days = business_days(today - chrono::Duration::days(30), today);
    assert_eq!(phone["median_business_days"], phone_days);
    assert_eq!(channel("email")["p95_business_days"], email_days);
    assert_eq!(channel("gpc")["received"], 1);
    assert_eq!(channel("gpc")["median_business_days"], 0);
    let t = &r["totals"];
    assert_eq!(
        (t["received"].as_i64(), t["completed"].as_i64(), t["open"].as_i64(), t["overdue"].as_i64()),
        (Some(6), Some(3), Some(3), Some(1))
    );
    // Nearest rank over [0 (GPC), phone_days, email_days]: the median is the 2nd value.
    let mut sorted = [0, phone_days, email_days];
    sorted.sort();
    assert_eq!(t["median_business_days"], sorted[1]);
    assert_eq!(t["p95_business_days"], sorted[2]);
    // Received before the range: not counted.
    let narrow: Value = app
        .get(&format!("/v1/analytics/opt-outs?from={}&to={today}", today - chrono::Duration::days(7)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(narrow["totals"]["received"], 3, "web_form, authorized_agent and GPC");
    // CSV.
    let res = app.get(&format!("/v1/analytics/opt-outs?from={from}&to={today}&format=csv")).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "channel,received,completed,open,overdue,completed_late,median_business_days,p95_business_days"
    );
    assert!(lines.contains(&format!("phone,2,1,1,1,0,{phone_days},{phone_days}").as_str()), "{text}");
    assert!(lines.last().unwrap().starts_with("all,6,3,3,1,"));
    let _ = ORIGIN;
}

async fn analytics_refuse_malformed_parameters_and_narrow_tokens(app: TestApp) {
    app.seed().await;
    for (query, field) in [
        ("interval=year", "interval: expected one of `day`, `week`, `month`"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2026-1-1", "from"),
        ("from=2000-01-01&to=2026-01-01", "from"),
        ("site=pk_nothing", "site"),
        ("region=not a region", "region"),
        ("purpose=Bad Key", "purpose"),
    ] {
        let res = app.get(&format!("/v1/analytics/consents?{query}")).send().await.unwrap();
        let body = assert_problem(res, 400).await;
        assert!(body["detail"].as_str().unwrap().starts_with(field), "{query}: {body}");
    }
    let res = app.get("/v1/analytics/opt-outs?to=tomorrow").send().await.unwrap();
    assert_problem(res, 400).await;
    let (check_only, _) = app.issue_token("acme", &["consents:check"], None);
    for path in ["/v1/analytics/consents", "/v1/analytics/opt-outs"] {
        let res = app.client.get(app.url(path)).bearer_auth(&check_only).send().await.unwrap();
        assert_problem(res, 403).await;
    }
}

async fn a_reconsent_preview_counts_the_people_a_revision_would_ask_again(app: TestApp) {
    let site = app.seed().await;
    write_mix(&app, &site).await;
    let preview = |q: &'static str| {
        let app = &app;
        async move { app.get(&format!("/v1/policies/privacy/reconsent-preview{q}")).send().await.unwrap() }
    };
    // In force now: analytics granted by visitors 2, 4 and 5 (visitor 1 withdrew it in the
    // preference centre), sale_sharing by visitors 1 and 2, marketing_email by Ada and user:42.
    let all: Value = preview("").await.json().await.unwrap();
    assert_eq!((all["grants"].as_i64(), all["people"].as_i64()), (Some(7), Some(6)));
    let analytics: Value = preview("?purposes=analytics").await.json().await.unwrap();
    assert_eq!((analytics["grants"].as_i64(), analytics["people"].as_i64()), (Some(3), Some(3)));
    let two: Value = preview("?purposes=analytics,sale_sharing").await.json().await.unwrap();
    assert_eq!((two["grants"].as_i64(), two["people"].as_i64()), (Some(5), Some(4)));
    assert_problem(preview("?purposes=nothing").await, 400).await;
}
