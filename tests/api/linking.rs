//! Identity linking: a visitor who logs in, and server-side links (11 CCR §7025(c)(1)).

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use serde_json::{json, Value};

crate::backend_tests!(
    a_visitor_who_logs_in_becomes_the_user_and_keeps_a_device_opt_out_11_ccr_7025_c_1,
    bad_or_expired_identity_tokens_are_refused_and_link_nothing,
    server_side_links_merge_histories_newest_decision_wins,
    concurrent_links_end_in_one_person,
    a_shared_browser_moves_to_the_next_user_without_merging_people,
    a_write_that_waited_for_a_merge_lands_on_the_merged_person,
    a_visitor_signs_in_as_a_user_whom_another_request_is_creating,
);

/// A site with an identity secret (shown once, at creation): (site key, site id, secret).
async fn site_with_secret(app: &TestApp) -> (String, String, String) {
    let res = app.post("/v1/sites", &json!({"name": "shop", "origins": [ORIGIN]})).send().await.unwrap();
    let site: Value = res.json().await.unwrap();
    let secret = site["identity_secret"].as_str().expect("shown at creation").to_owned();
    assert_eq!(secret.len(), 64);
    let list: Value = app.get("/v1/sites").send().await.unwrap().json().await.unwrap();
    assert!(list["sites"][0].get("identity_secret").is_none(), "and never again");
    (site["site_key"].as_str().unwrap().to_owned(), site["id"].as_str().unwrap().to_owned(), secret)
}

fn identity_token(secret: &str, sub: &str, exp_in_secs: i64) -> String {
    let claims = json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + exp_in_secs});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn visit(choices: Value, token: Option<&str>) -> Value {
    let mut body =
        json!({"visitor_id": VISITOR, "choices": choices, "policy_revision": "2021-02-01", "source": "banner"});
    if let Some(t) = token {
        body["identity_token"] = json!(t);
    }
    body
}

async fn a_visitor_who_logs_in_becomes_the_user_and_keeps_a_device_opt_out_11_ccr_7025_c_1(app: TestApp) {
    app.seed().await;
    let (site, _, secret) = site_with_secret(&app).await;
    // The account granted sale/sharing long ago; on this device the browser sends GPC.
    let res = app.record(json!({"subject": "user:42", "choices": {"sale_sharing": true}, "source": "api", "occurred_at": "2026-01-01T00:00:00Z"})).await;
    assert_eq!(res.status(), 201);
    let res =
        app.visitor_post(&site, &visit(json!({"analytics": true}), None)).header("Sec-GPC", "1").send().await.unwrap();
    assert_eq!(res.status(), 201);
    // The visitor logs in.
    let token = identity_token(&secret, "42", 300);
    let res = app.visitor_post(&site, &visit(json!({"marketing_email": true}), Some(&token))).send().await.unwrap();
    assert_eq!(res.status(), 201);
    // One person: both identifiers read the same state, and the device's opt-out holds.
    let by_user = app.consents_of("user:42").await;
    let by_visitor = app.consents_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(by_user["purposes"], by_visitor["purposes"]);
    assert_eq!(by_user["purposes"]["sale_sharing"]["source"], "gpc", "an older grant never undoes a GPC opt-out");
    assert_eq!(by_user["purposes"]["analytics"]["status"], "granted");
    assert_eq!(by_user["purposes"]["marketing_email"]["status"], "granted");
    let r = app.check("sale_sharing", &["user:42"]).await;
    assert_eq!(r[0]["allowed"], false);
    // Both histories are the person's proof.
    let sources: Vec<String> =
        app.events_of("user:42").await.iter().map(|e| e["source"].as_str().unwrap().to_owned()).collect();
    assert!(sources.contains(&"api".to_owned()) && sources.contains(&"gpc".to_owned()), "{sources:?}");
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

async fn bad_or_expired_identity_tokens_are_refused_and_link_nothing(app: TestApp) {
    app.seed().await;
    let (site, site_id, secret) = site_with_secret(&app).await;
    let forged = identity_token("not the site's secret", "42", 300);
    let res = app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&forged))).send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN, "the page can read why");
    assert_eq!(
        assert_problem(res, 401).await["detail"],
        "identity_token: the token is not signed with this site's identity secret"
    );
    // A valid token with choices the site refuses: 400, and the visitor is linked to nobody
    // (the visitor's earlier decision stays theirs alone).
    let res = app.visitor_post(&site, &visit(json!({"analytics": false}), None)).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let valid = identity_token(&secret, "41", 300);
    let res = app.visitor_post(&site, &visit(json!({"no_such_purpose": true}), Some(&valid))).send().await.unwrap();
    assert_problem(res, 400).await;
    assert!(app.events_of("user:41").await.is_empty(), "a refused write links nobody");
    assert_eq!(app.consents_of("user:41").await["purposes"]["analytics"]["status"], "not_asked");
    let expired = identity_token(&secret, "42", -3600);
    let res = app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&expired))).send().await.unwrap();
    assert_eq!(assert_problem(res, 401).await["detail"], "identity_token: the token has expired");
    // Refused with the reason that applies: an unsigned token (`alg: none`, RFC 7519 §6), a
    // header asking for an extension (`crit`, RFC 7515 §4.1.11), and `exp` / `nbf` that are not
    // NumericDates (RFC 7519 §2) are not "malformed claims" nor a bad signature.
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let exp = chrono::Utc::now().timestamp() + 300;
    let unsigned = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(json!({"sub": "42", "exp": exp})));
    let signed = |header: jsonwebtoken::Header, claims: Value| {
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap())
            .unwrap()
    };
    let critical = jsonwebtoken::Header { crit: Some(vec!["exp".into()]), ..Default::default() };
    let not_a_date = "must be a NumericDate: seconds since 1970 as a JSON number (RFC 7519 §2)";
    for (token, why) in [
        (unsigned, "the token's header is malformed or names an algorithm other than HS256 (such as none)".to_owned()),
        (
            signed(critical, json!({"sub": "42", "exp": exp})),
            "the token's header asks for an extension this service does not support (crit, b64: RFC 7515 §4.1.11)"
                .to_owned(),
        ),
        (signed(Default::default(), json!({"sub": "42", "exp": "soon"})), format!("the claim 'exp' {not_a_date}")),
        (
            signed(Default::default(), json!({"sub": "42", "exp": exp, "nbf": "x"})),
            format!("the claim 'nbf' {not_a_date}"),
        ),
        (signed(Default::default(), json!({"sub": "42", "exp": -1})), "the token has expired".to_owned()),
        (
            signed(Default::default(), json!({"sub": 42, "exp": exp})),
            "the claim 'sub' must be a string: the user's id".to_owned(),
        ),
        (signed(Default::default(), json!({"sub": "42"})), "the token lacks the claim 'exp'".to_owned()),
        (
            // `sub` twice (RFC 7519 §4: claim names must be unique), written by hand.
            {
                use base64::Engine as _;
                use hmac::Mac as _;
                let header = b64(json!({"alg": "HS256", "typ": "JWT"}));
                let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(format!(r#"{{"sub":"42","sub":"43","exp":{exp}}}"#));
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(format!("{header}.{claims}").as_bytes());
                let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
                format!("{header}.{claims}.{sig}")
            },
            "the claims are malformed: they must be a JSON object giving each claim once, numbers in range".to_owned(),
        ),
    ] {
        let res = app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&token))).send().await.unwrap();
        assert_eq!(assert_problem(res, 401).await["detail"], format!("identity_token: {why}"));
    }
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 1, "nothing more recorded");
    assert!(app.events_of("user:42").await.is_empty(), "and no link");
    // Rotation: the old secret stops working at once.
    let res = app.post(&format!("/v1/sites/{site_id}/identity-secret"), &json!({})).send().await.unwrap();
    let rotated: Value = res.json().await.unwrap();
    let new_secret = rotated["identity_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let old = identity_token(&secret, "42", 300);
    assert_problem(app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&old))).send().await.unwrap(), 401)
        .await;
    let new = identity_token(new_secret, "42", 300);
    assert_eq!(
        app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&new))).send().await.unwrap().status(),
        201
    );
    assert_eq!(app.consents_of("user:42").await["purposes"]["analytics"]["status"], "granted");
    // A NumericDate may have a fraction (RFC 7519 §2): accepted (the browser moves to user 43).
    let claims = json!({"sub": "43", "exp": exp as f64 + 0.5});
    let fractional = jsonwebtoken::encode(
        &Default::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(new_secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let res =
        app.visitor_post(&site, &visit(json!({"marketing_email": true}), Some(&fractional))).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(app.consents_of("user:43").await["purposes"]["marketing_email"]["status"], "granted");
}

async fn server_side_links_merge_histories_newest_decision_wins(app: TestApp) {
    app.seed().await;
    let rec = |subject: &str, granted: bool, at: &str| json!({"subject": subject, "choices": {"marketing_email": granted}, "source": "api", "occurred_at": at});
    assert_eq!(app.record(rec("email:ada@example.com", true, "2026-02-01T00:00:00Z")).await.status(), 201);
    assert_eq!(app.record(rec("user:7", false, "2026-03-01T00:00:00Z")).await.status(), 201);
    let link = |body: Value| app.post("/v1/subjects/email:ada@example.com/links", &body).send();
    let res: Value = link(json!({"subject": "user:7"})).await.unwrap().json().await.unwrap();
    assert_eq!(res["outcome"], "merged");
    assert_eq!(
        app.consents_of("email:ada@example.com").await["purposes"]["marketing_email"]["status"],
        "denied",
        "the newer refusal wins"
    );
    let res: Value = link(json!({"subject": "user:7"})).await.unwrap().json().await.unwrap();
    assert_eq!(res["outcome"], "already");
    let res: Value = link(json!({"subject": "phone:+4930123456"})).await.unwrap().json().await.unwrap();
    assert_eq!(res["outcome"], "added");
    assert_eq!(app.consents_of("phone:+4930123456").await["purposes"]["marketing_email"]["status"], "denied");
    // The feed reports every event under the one person, with all its identifiers.
    let feed: Value = app.get("/v1/events").send().await.unwrap().json().await.unwrap();
    let people: std::collections::HashSet<&str> =
        feed["events"].as_array().unwrap().iter().map(|e| e["subject_id"].as_str().unwrap()).collect();
    assert_eq!(people.len(), 1);
    assert_eq!(feed["events"][0]["identifiers"].as_array().unwrap().len(), 3);
    let res: Value = link(json!({"subject": "email:ADA@example.com"})).await.unwrap().json().await.unwrap();
    assert_eq!(res["outcome"], "already", "the same address in other letters is the same identifier");
    assert_problem(link(json!({"subject": "email:nope"})).await.unwrap(), 400).await;
}

/// 24 links over 12 identifiers, all at once: every call succeeds and they end as one person,
/// so an opt-out under one identifier reaches all of them.
async fn concurrent_links_end_in_one_person(app: TestApp) {
    app.seed().await;
    for i in 0..12 {
        assert_eq!(
            app.record(json!({"subject": format!("user:r{i}"), "choices": {"marketing_email": true}, "source": "api"}))
                .await
                .status(),
            201
        );
    }
    let edges: Vec<(usize, usize)> = (0..12).flat_map(|i| [(i, (i + 1) % 12), (i, (i + 5) % 12)]).collect();
    let calls = edges.iter().map(|(a, b)| {
        app.post(&format!("/v1/subjects/user:r{a}/links"), &json!({"subject": format!("user:r{b}")})).send()
    });
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "user:r0", "channel": "web_form", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let subjects: Vec<String> = (0..12).map(|i| format!("user:r{i}")).collect();
    let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let r = app.check("sale_sharing", &refs).await;
    assert!(r.iter().all(|r| r["allowed"] == false), "{r:?}");
}

/// One browser, two people: Alice logs in, decides, logs out; Bob logs in on the same browser.
/// Bob's choices are Bob's; Alice's history is not merged into his.
async fn a_shared_browser_moves_to_the_next_user_without_merging_people(app: TestApp) {
    app.seed().await;
    let (site, _, secret) = site_with_secret(&app).await;
    let alice = identity_token(&secret, "alice", 300);
    let res = app.visitor_post(&site, &visit(json!({"marketing_email": true}), Some(&alice))).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let bob = identity_token(&secret, "bob", 300);
    let res = app.visitor_post(&site, &visit(json!({"marketing_email": false}), Some(&bob))).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(app.consents_of("user:alice").await["purposes"]["marketing_email"]["status"], "granted");
    assert_eq!(app.consents_of("user:bob").await["purposes"]["marketing_email"]["status"], "denied");
    assert_eq!(
        app.consents_of(&format!("visitor:{VISITOR}")).await["purposes"]["marketing_email"]["status"],
        "denied",
        "the browser is Bob's now"
    );
}

/// A write for B that resolved B's identifier before a merge of B into A committed, and locked
/// B's subject after it, lands on A (the person B's identifiers now name): the newest decision is
/// the state, and a check refuses what was refused. Before, it landed on B's retired subject,
/// and the check still allowed what the person had just refused (found in a trial: 7 of 20 races).
///
/// PostgreSQL: the test holds B's subject row locked, queues the link behind the lock, then the
/// write, and releases: the link commits first. SQLite has one writer, so the same calls run one
/// after another there.
async fn a_write_that_waited_for_a_merge_lands_on_the_merged_person(app: TestApp) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    app.seed().await;
    for subject in ["user:merge-a", "user:merge-b"] {
        let body = json!({"subject": subject, "choices": {"marketing_email": true}, "source": "api"});
        assert_eq!(app.record(body).await.status(), 201);
    }
    let link = app.post("/v1/subjects/user:merge-a/links", &json!({"subject": "user:merge-b"})).send();
    let refusal = app
        .post(
            "/v1/consents",
            &json!({"subject": "user:merge-b", "choices": {"marketing_email": false}, "source": "api"}),
        )
        .send();
    if !app.database_url.starts_with("postgres") {
        assert_eq!(link.await.unwrap().status(), 200);
        assert_eq!(refusal.await.unwrap().status(), 201);
    } else {
        let mut holder = diesel::PgConnection::establish(&app.database_url).unwrap();
        let mut watcher = diesel::PgConnection::establish(&app.database_url).unwrap();
        let b: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
            "(SELECT subject_id FROM subject_identifiers WHERE identifier = 'user:merge-b')",
        ))
        .get_result(&mut watcher)
        .unwrap();
        holder
            .batch_execute(&format!("BEGIN; SELECT 1 FROM data_subjects WHERE id = '{b}' FOR NO KEY UPDATE"))
            .unwrap();
        let link = tokio::spawn(link);
        waiting_for_locks(&mut watcher, 1).await;
        let refusal = tokio::spawn(refusal);
        waiting_for_locks(&mut watcher, 2).await;
        holder.batch_execute("COMMIT").unwrap();
        assert_eq!(link.await.unwrap().unwrap().status(), 200);
        assert_eq!(refusal.await.unwrap().unwrap().status(), 201);
    }
    for subject in ["user:merge-a", "user:merge-b"] {
        assert_eq!(app.consents_of(subject).await["purposes"]["marketing_email"]["status"], "denied", "{subject}");
    }
    let checked = app.check("marketing_email", &["user:merge-a", "user:merge-b"]).await;
    assert!(checked.iter().all(|r| r["allowed"] == false), "{checked:?}");
}

/// A browser that belongs to user 1 signs in as user 2 while another request (user 2's first
/// write elsewhere) is creating user 2: the browser moves to user 2 (201). Before, the move's
/// insert of user 2's identifier failed as a duplicate and the visitor got a 500 (found in a
/// trial: 12 of 20 races on PostgreSQL).
///
/// PostgreSQL: the test creates user 2 in a transaction it holds open, sends the visitor's
/// request, waits until it waits for that transaction, and commits. SQLite has one writer: user
/// 2 is created first.
async fn a_visitor_signs_in_as_a_user_whom_another_request_is_creating(app: TestApp) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    app.seed().await;
    let (site, _, secret) = site_with_secret(&app).await;
    let token = identity_token(&secret, "u1", 300);
    let res = app.visitor_post(&site, &visit(json!({"analytics": true}), Some(&token))).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let sign_in =
        app.visitor_post(&site, &visit(json!({"analytics": false}), Some(&identity_token(&secret, "u2", 300))));
    if !app.database_url.starts_with("postgres") {
        let first = json!({"subject": "user:u2", "choices": {"marketing_email": true}, "source": "api"});
        assert_eq!(app.record(first).await.status(), 201);
        assert_eq!(sign_in.send().await.unwrap().status(), 201);
    } else {
        let tenant_id = {
            let pool = consentry::db::connect(&app.database_url, 1).unwrap();
            let mut conn = pool.get().unwrap();
            consentry::db::models::tenant::Tenant::find_by_slug(&mut conn, "acme").unwrap().unwrap().id
        };
        let (mut holder, mut watcher) = (
            diesel::PgConnection::establish(&app.database_url).unwrap(),
            diesel::PgConnection::establish(&app.database_url).unwrap(),
        );
        let subject = uuid::Uuid::now_v7();
        holder
            .batch_execute(&format!(
                "BEGIN; \
                 INSERT INTO data_subjects (id, tenant_id, last_event_hash, created_at) \
                 VALUES ('{subject}', '{tenant_id}', '{}', now()); \
                 INSERT INTO subject_identifiers (tenant_id, identifier, subject_id, created_at) \
                 VALUES ('{tenant_id}', 'user:u2', '{subject}', now())",
                consentry::domain::ledger::GENESIS_HASH
            ))
            .unwrap();
        let sign_in = tokio::spawn(sign_in.send());
        waiting_for_locks(&mut watcher, 1).await;
        holder.batch_execute("COMMIT").unwrap();
        let res = sign_in.await.unwrap().unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    let by_user = app.consents_of("user:u2").await;
    assert_eq!(by_user["purposes"]["analytics"]["status"], "denied", "{by_user}");
    assert_eq!(app.consents_of(&format!("visitor:{VISITOR}")).await["purposes"], by_user["purposes"]);
    assert_eq!(app.consents_of("user:u1").await["purposes"]["analytics"]["status"], "granted");
}

/// Waits until `n` sessions of the database wait for a lock.
async fn waiting_for_locks(conn: &mut diesel::PgConnection, n: i64) {
    use diesel::RunQueryDsl;
    for _ in 0..400 {
        let waiting: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')",
        ))
        .get_result(conn)
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{n} requests never waited for the held subject");
}
