//! CCPA "Do Not Sell or Share" requests (Cal. Civ. Code §1798.120, 11 CCR §7026).

use crate::helpers::{assert_problem, TestApp};
use serde_json::{json, Value};

crate::backend_tests!(
    an_opt_out_request_takes_effect_at_once_and_is_due_in_15_business_days_11_ccr_7026_f,
    after_an_opt_out_the_person_is_not_asked_again_for_12_months_civ_code_1798_135_c_4,
    requests_are_listed_by_status_and_completed,
    an_opt_out_needs_a_sale_or_sharing_purpose,
);

async fn create(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/v1/opt-outs", &body).send().await.unwrap()
}

async fn an_opt_out_request_takes_effect_at_once_and_is_due_in_15_business_days_11_ccr_7026_f(app: TestApp) {
    app.seed().await;
    app.record(json!({"subject": "email:ada@example.com", "choices": {"sale_sharing": true}, "source": "api", "occurred_at": "2026-11-01T00:00:00Z"})).await;
    // Received on Saturday 2026-11-07: the 15th business day after it is Friday 2026-11-27.
    let res = create(&app, json!({"subject": "email:ada@example.com", "channel": "phone", "scope": "sale_sharing", "received_at": "2026-11-07T09:30:00Z"})).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["received_at"], "2026-11-07T09:30:00Z");
    assert_eq!(body["due_at"], "2026-11-27T09:30:00Z");
    assert_eq!(body["channel"], "phone");
    assert_eq!(body["event_ids"].as_array().unwrap().len(), 1);
    let r = app.check("sale_sharing", &["email:ada@example.com"]).await;
    assert_eq!((r[0]["allowed"].as_bool(), r[0]["reason"].as_str()), (Some(false), Some("opt_out_request")));
    let events = app.events_of("email:ada@example.com").await;
    assert_eq!(events.last().unwrap()["source"], "opt_out_request");
}

async fn after_an_opt_out_the_person_is_not_asked_again_for_12_months_civ_code_1798_135_c_4(app: TestApp) {
    app.seed().await;
    let res = create(&app, json!({"subject": "user:7", "channel": "web_form", "scope": "sale_sharing", "received_at": "2026-03-01T12:00:00Z"})).await;
    assert_eq!(res.status(), 201);
    let state = app.consents_of("user:7").await;
    assert_eq!(state["purposes"]["sale_sharing"]["reprompt_after"], "2027-03-01T12:00:00Z");
    assert!(state["purposes"]["analytics"].get("reprompt_after").is_none(), "only sale/sharing purposes");
}

async fn requests_are_listed_by_status_and_completed(app: TestApp) {
    app.seed().await;
    let old = create(&app, json!({"subject": "user:1", "channel": "authorized_agent", "scope": "sale_sharing", "received_at": "2026-01-05T10:00:00Z"})).await;
    let old: Value = old.json().await.unwrap();
    let new = create(&app, json!({"subject": "user:2", "channel": "email", "scope": "sale_sharing"})).await;
    let new: Value = new.json().await.unwrap();
    assert_eq!(new["status"], "open");
    let list = |q: &'static str| {
        let app = &app;
        async move {
            let v: Value = app.get(&format!("/v1/opt-outs{q}")).send().await.unwrap().json().await.unwrap();
            v["opt_outs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    let (old_id, new_id) = (old["id"].as_str().unwrap().to_owned(), new["id"].as_str().unwrap().to_owned());
    assert_eq!(list("?status=overdue").await, vec![old_id.clone()]);
    assert_eq!(list("?status=open").await, vec![old_id.clone(), new_id.clone()]);
    let res = app.post(&format!("/v1/opt-outs/{old_id}/complete"), &json!({})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(list("?status=completed").await, vec![old_id.clone()]);
    assert_eq!(list("?status=overdue").await, Vec::<String>::new());
    assert_eq!(list("").await.len(), 2, "completed requests are kept (11 CCR §7101)");
    assert_problem(app.post(&format!("/v1/opt-outs/{old_id}/complete"), &json!({})).send().await.unwrap(), 409).await;
    assert_problem(app.post("/v1/opt-outs/nope/complete", &json!({})).send().await.unwrap(), 404).await;
    assert_problem(app.get("/v1/opt-outs?status=pending").send().await.unwrap(), 400).await;
}

async fn an_opt_out_needs_a_sale_or_sharing_purpose(app: TestApp) {
    let res = create(&app, json!({"subject": "user:1", "channel": "phone", "scope": "sale_sharing"})).await;
    assert!(assert_problem(res, 409).await["detail"].as_str().unwrap().contains("gpc_applies"));
    let res = create(&app, json!({"subject": "user:1", "channel": "phone", "scope": "sale_sharing", "received_at": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "received_at");
    let res = create(&app, json!({"subject": "user:1", "channel": "fax", "scope": "sale_sharing"})).await;
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "channel");
}
