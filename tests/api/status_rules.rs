//! The rules of DESIGN.md "Rules that the tests must pin down": status and `allowed`.

use crate::helpers::{assert_problem, TestApp, VISITOR};
use serde_json::json;

crate::backend_tests!(
    unknown_subjects_are_not_asked,
    allowed_follows_the_consent_model,
    regional_consent_models_most_specific_code_wins,
    a_reconsent_revision_makes_older_grants_stale_for_the_purposes_it_names,
    a_revision_without_reconsent_changes_nothing,
    a_future_revision_is_not_in_force_until_its_time,
    grants_expire_after_max_age_days,
    a_purpose_added_later_is_not_asked_never_denied,
    notice_only_purposes_cannot_be_refused,
    needs_consent_follows_opt_in_purposes,
);

fn result(results: &[serde_json::Value], i: usize) -> (&serde_json::Value, &serde_json::Value, &serde_json::Value) {
    (&results[i]["allowed"], &results[i]["status"], &results[i]["reason"])
}

async fn unknown_subjects_are_not_asked(app: TestApp) {
    app.seed().await;
    let r = app.check("marketing_email", &["email:nobody@example.com"]).await;
    assert_eq!(r[0]["subject"], "email:nobody@example.com");
    assert_eq!(result(&r, 0), (&json!(false), &json!("not_asked"), &json!("not_asked")));
    let state = app.consents_of("user:nobody").await;
    assert_eq!(state["purposes"]["analytics"]["status"], "not_asked");
    assert!(state["purposes"]["analytics"].get("decision").is_none());
}

async fn allowed_follows_the_consent_model(app: TestApp) {
    app.seed().await;
    // notice_only: always allowed; opt_in: only when granted; opt_out: unless denied.
    let subjects = ["user:granted", "user:denied", "user:silent"];
    for (s, v) in [("user:granted", true), ("user:denied", false)] {
        let res =
            app.record(json!({"subject": s, "choices": {"analytics": v, "sale_sharing": v}, "source": "api"})).await;
        assert_eq!(res.status(), 201);
    }
    let opt_in = app.check("analytics", &subjects).await;
    assert_eq!(result(&opt_in, 0), (&json!(true), &json!("granted"), &json!("granted")));
    assert_eq!(result(&opt_in, 1), (&json!(false), &json!("denied"), &json!("refused")));
    assert_eq!(result(&opt_in, 2), (&json!(false), &json!("not_asked"), &json!("not_asked")));
    let opt_out = app.check("sale_sharing", &subjects).await;
    assert_eq!(result(&opt_out, 0), (&json!(true), &json!("granted"), &json!("granted")));
    assert_eq!(result(&opt_out, 1), (&json!(false), &json!("denied"), &json!("refused")));
    assert_eq!(result(&opt_out, 2), (&json!(true), &json!("not_asked"), &json!("default_opt_out")));
    let notice = app.check("necessary", &subjects).await;
    assert!(notice.iter().all(|r| r["allowed"] == true && r["reason"] == "notice_only"));
    // Results come back in request order, duplicates included.
    let order = app.check("analytics", &["user:silent", "user:granted", "user:silent"]).await;
    let names: Vec<_> = order.iter().map(|r| r["subject"].as_str().unwrap()).collect();
    assert_eq!(names, ["user:silent", "user:granted", "user:silent"]);
}

async fn regional_consent_models_most_specific_code_wins(app: TestApp) {
    app.seed().await;
    let res = app
        .put_purpose(
            "personalisation",
            json!({"title": "Personalisation", "description": "", "kind": "processing", "consent_model": "opt_in",
                   "legal_basis": "consent", "gpc_applies": false, "regions": {"US": "opt_out", "us-ca": "opt_in"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let check = |region: &'static str| {
        let app = &app;
        async move {
            let res = app
                .post(
                    "/v1/consents/check",
                    &json!({"purpose": "personalisation", "subjects": ["user:1"], "region": region}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.unwrap()["results"][0].clone()
        }
    };
    assert_eq!(check("US-NY").await["allowed"], true, "US: opt_out, silence allows");
    assert_eq!(check("US-NY").await["reason"], "default_opt_out");
    assert_eq!(check("US-CA").await["allowed"], false, "US-CA overrides US with opt_in");
    assert_eq!(check("DE").await["allowed"], false, "no entry: the default opt_in");
    let bad = app
        .post(
            "/v1/consents/check",
            &json!({"purpose": "personalisation", "subjects": ["user:1"], "region": "California"}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 400).await;
    assert_eq!(problem["errors"][0]["field"], "region");
}

async fn a_reconsent_revision_makes_older_grants_stale_for_the_purposes_it_names(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true, "marketing_email": true})).await;
    let res = app
        .post_revision("privacy", json!({"revision_date": "2022-03-01", "url": "https://www.example.com/privacy-2022", "requires_reconsent": true, "purposes": ["analytics"]}))
        .await;
    assert_eq!(res.status(), 201);
    let state = app.consents_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(state["purposes"]["analytics"]["status"], "stale");
    assert_eq!(state["purposes"]["analytics"]["allowed"], false);
    assert_eq!(state["purposes"]["marketing_email"]["status"], "granted", "not named by the revision");
    assert_eq!(state["needs_consent"], true);
    let r = app.check("analytics", &[&format!("visitor:{VISITOR}")]).await;
    assert_eq!(result(&r, 0), (&json!(false), &json!("stale"), &json!("policy_changed")));
    // Granting again under the new revision renews it: one new event.
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2022-03-01", "source": "banner"});
    let res = app.visitor_post(&site, &body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let res: serde_json::Value = res.json().await.unwrap();
    assert_eq!(res["event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(res["consents"]["purposes"]["analytics"]["status"], "granted");
    assert_eq!(res["consents"]["needs_consent"], false);
}

async fn a_revision_without_reconsent_changes_nothing(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let res = app
        .post_revision("privacy", json!({"revision_date": "2022-03-01", "url": "https://www.example.com/privacy-2022", "requires_reconsent": false}))
        .await;
    assert_eq!(res.status(), 201);
    let state = app.consents_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(state["purposes"]["analytics"]["status"], "granted");
    assert_eq!(state["purposes"]["analytics"]["allowed"], true);
}

async fn a_future_revision_is_not_in_force_until_its_time(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    let res = app
        .post_revision("privacy", json!({"revision_date": "2099-01-01", "url": "https://www.example.com/privacy-2099", "requires_reconsent": true}))
        .await;
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["in_force"], false);
    assert_eq!(body["effective_at"], "2099-01-01T00:00:00Z", "defaults to 00:00 UTC on the revision date");
    let state = app.consents_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(state["purposes"]["analytics"]["status"], "granted", "not yet in force: no reconsent");
    let config: serde_json::Value =
        app.client.get(app.url(&format!("/v1/sites/{site}/config"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["policies"][0]["revision_date"], "2021-02-01", "the config shows the revision in force");
    // A consent cannot cite a revision that is not in force.
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2099-01-01", "source": "banner"});
    let problem = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(problem["errors"][0]["field"], "policy_revision");
    assert!(problem["detail"].as_str().unwrap().contains("no revision dated 2099-01-01 is in force"));
}

async fn grants_expire_after_max_age_days(app: TestApp) {
    app.seed().await;
    // analytics has max_age_days 395.
    let old = (chrono::Utc::now() - chrono::Duration::days(396)).to_rfc3339();
    let recent = (chrono::Utc::now() - chrono::Duration::days(394)).to_rfc3339();
    for (s, when) in [("user:old", &old), ("user:recent", &recent)] {
        let res = app
            .record(json!({"subject": s, "choices": {"analytics": true}, "source": "import", "occurred_at": when}))
            .await;
        assert_eq!(res.status(), 201);
    }
    let r = app.check("analytics", &["user:old", "user:recent"]).await;
    assert_eq!(result(&r, 0), (&json!(false), &json!("expired"), &json!("expired")));
    assert_eq!(result(&r, 1), (&json!(true), &json!("granted"), &json!("granted")));
    let state = app.consents_of("user:old").await;
    assert_eq!(state["needs_consent"], true);
    // occurred_at may not lie in the future.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let res = app
        .record(json!({"subject": "user:x", "choices": {"analytics": true}, "source": "api", "occurred_at": future}))
        .await;
    let problem = assert_problem(res, 400).await;
    assert_eq!(problem["errors"][0]["field"], "occurred_at");
}

async fn a_purpose_added_later_is_not_asked_never_denied(app: TestApp) {
    let site = app.seed().await;
    app.record_visitor(&site, VISITOR, json!({"analytics": false, "marketing_email": false})).await;
    let res = app
        .put_purpose("social_media", json!({"title": "Social media", "description": "", "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
        .await;
    assert_eq!(res.status(), 201);
    let res = app.client.get(app.url(&format!("/v1/sites/{site}/visitors/{VISITOR}/consents"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let state: serde_json::Value = res.json().await.unwrap();
    assert_eq!(state["purposes"]["social_media"]["status"], "not_asked");
    assert!(state["purposes"]["social_media"].get("decision").is_none());
    assert_eq!(state["purposes"]["analytics"]["status"], "denied");
    assert_eq!(state["needs_consent"], true, "the new opt-in purpose must be asked");
}

async fn notice_only_purposes_cannot_be_refused(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"necessary": false, "analytics": true}, "policy_revision": "2021-02-01", "source": "banner"});
    let problem = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(
        problem["detail"],
        "choices.necessary: 'necessary' is strictly necessary (notice_only) and cannot be refused"
    );
    assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 0, "nothing recorded, not even analytics");
    // Accepting it is fine and records nothing for it.
    let res = app.record_visitor(&site, VISITOR, json!({"necessary": true, "analytics": true})).await;
    assert_eq!(res["event_ids"].as_array().unwrap().len(), 1);
    assert_eq!(res["consents"]["purposes"]["necessary"]["allowed"], true);
}

async fn needs_consent_follows_opt_in_purposes(app: TestApp) {
    let site = app.seed().await;
    let res = app.client.get(app.url(&format!("/v1/sites/{site}/visitors/{VISITOR}/consents"))).send().await.unwrap();
    let state: serde_json::Value = res.json().await.unwrap();
    assert_eq!(state["subject"], format!("visitor:{VISITOR}"));
    assert_eq!(state["needs_consent"], true);
    let res = app.record_visitor(&site, VISITOR, json!({"analytics": true})).await;
    assert_eq!(res["consents"]["needs_consent"], true, "marketing_email is still not asked");
    let res = app.record_visitor(&site, VISITOR, json!({"marketing_email": false})).await;
    assert_eq!(res["consents"]["needs_consent"], false, "opt_out sale_sharing does not need asking");
}
