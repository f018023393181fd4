//! Global Privacy Control on the public endpoint (11 CCR §7025; GPC specification §3).

use crate::helpers::{TestApp, VISITOR};
use serde_json::{json, Value};

crate::backend_tests!(
    sec_gpc_1_denies_gpc_purposes_with_source_gpc_11_ccr_7025,
    only_the_exact_value_1_is_a_signal,
    a_grant_against_the_signal_is_recorded_but_not_allowed_11_ccr_7025_c_3,
    a_retry_that_adds_the_signal_is_not_a_replay,
    a_signal_given_twice_is_refused_and_records_nothing,
);

fn body(choices: Value) -> Value {
    json!({"visitor_id": VISITOR, "choices": choices, "policy_revision": "2021-02-01", "source": "banner"})
}

async fn sec_gpc_1_denies_gpc_purposes_with_source_gpc_11_ccr_7025(app: TestApp) {
    let site = app.seed().await;
    let res = app.visitor_post(&site, &body(json!({"analytics": true}))).header("Sec-GPC", "1").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let res: Value = res.json().await.unwrap();
    assert_eq!(res["gpc_honored"], true, "the page can show 'Opt-Out Request Honored' (§7025(c)(6))");
    let sale = &res["consents"]["purposes"]["sale_sharing"];
    assert_eq!(
        (sale["status"].as_str(), sale["source"].as_str(), sale["allowed"].as_bool()),
        (Some("denied"), Some("gpc"), Some(false))
    );
    assert_eq!(res["consents"]["purposes"]["analytics"]["status"], "granted", "other purposes are untouched");
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events[0]["source"], "gpc", "the GPC denial is recorded before the rest of the request");
    assert_eq!(events[0]["purpose"], "sale_sharing");
    // Once per state change: the signal again writes no new denial (the choice given with it
    // is a re-confirmation, recorded: issue 11, item 10).
    let again: Value = app
        .visitor_post(&site, &body(json!({"analytics": true})))
        .header("Sec-GPC", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["event_ids"].as_array().unwrap().len(), 1);
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    assert_eq!(events.iter().filter(|e| e["source"] == "gpc").count(), 1, "one GPC denial");
    assert_eq!(events.last().unwrap()["purpose"], "analytics");
    // A later request without the header does not undo it.
    let later = app.record_visitor(&site, VISITOR, json!({"analytics": false})).await;
    assert_eq!(later["consents"]["purposes"]["sale_sharing"]["status"], "denied");
    let r = app.check("sale_sharing", &[&format!("visitor:{VISITOR}")]).await;
    assert_eq!((r[0]["allowed"].as_bool(), r[0]["reason"].as_str()), (Some(false), Some("gpc")));
}

async fn only_the_exact_value_1_is_a_signal(app: TestApp) {
    let site = app.seed().await;
    for value in ["0", "true", "01", " 1x"] {
        let res: Value = app
            .visitor_post(&site, &body(json!({"analytics": true})))
            .header("Sec-GPC", value)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(res["gpc_honored"], false, "Sec-GPC: {value:?} is not a signal");
        assert_eq!(res["consents"]["purposes"]["sale_sharing"]["status"], "not_asked");
    }
}

/// `Sec-GPC` twice is refused (400 naming it) on the write and on the read that records the
/// signal: the GPC specification (§3.1) defines one field line whose value is `1`, and the two
/// lines joined are `1, 1`, which is not; guessing either way could drop the person's opt-out.
async fn a_signal_given_twice_is_refused_and_records_nothing(app: TestApp) {
    let site = app.seed().await;
    for (first, second) in [("1", "1"), ("1", "0"), ("0", "1")] {
        let res = app
            .visitor_post(&site, &body(json!({"analytics": true})))
            .header("Sec-GPC", first)
            .header("Sec-GPC", second)
            .send()
            .await
            .unwrap();
        let p = crate::helpers::assert_problem(res, 400).await;
        assert_eq!(p["errors"][0]["field"], "Sec-GPC", "{first} then {second}: {p}");
        assert_eq!(p["errors"][0]["message"], "is given more than once");
        let res = app
            .client
            .get(app.url(&format!("/v1/sites/{site}/visitors/{VISITOR}/consents")))
            .header("Origin", crate::helpers::ORIGIN)
            .header("Sec-GPC", first)
            .header("Sec-GPC", second)
            .send()
            .await
            .unwrap();
        assert_eq!(crate::helpers::assert_problem(res, 400).await["errors"][0]["field"], "Sec-GPC");
    }
    // One line with a list (two lines a proxy joined, RFC 9110 §5.3) is refused alike.
    for joined in ["1, 1", "1,0"] {
        let res =
            app.visitor_post(&site, &body(json!({"analytics": true}))).header("Sec-GPC", joined).send().await.unwrap();
        assert_eq!(crate::helpers::assert_problem(res, 400).await["errors"][0]["field"], "Sec-GPC", "{joined}");
    }
    assert!(app.events_of(&format!("visitor:{VISITOR}")).await.is_empty(), "nothing is recorded");
}

async fn a_grant_against_the_signal_is_recorded_but_not_allowed_11_ccr_7025_c_3(app: TestApp) {
    let site = app.seed().await;
    let res: Value = app
        .visitor_post(&site, &body(json!({"sale_sharing": true})))
        .header("Sec-GPC", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["gpc_conflicts"], json!(["sale_sharing"]));
    assert_eq!(res["consents"]["purposes"]["sale_sharing"]["allowed"], false);
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    let decisions: Vec<(&str, &str)> =
        events.iter().map(|e| (e["source"].as_str().unwrap(), e["decision"].as_str().unwrap())).collect();
    assert_eq!(decisions, [("gpc", "denied"), ("banner", "granted")], "both are on the record");
}

/// The same body and key, first without and then with `Sec-GPC: 1`: the signal changes the
/// request, so the second is refused rather than answered from the first (and its opt-out lost).
async fn a_retry_that_adds_the_signal_is_not_a_replay(app: TestApp) {
    let site = app.seed().await;
    let first =
        app.visitor_post(&site, &body(json!({"analytics": true}))).header("Idempotency-Key", "k").send().await.unwrap();
    assert_eq!(first.status(), 201);
    let second = app
        .visitor_post(&site, &body(json!({"analytics": true})))
        .header("Idempotency-Key", "k")
        .header("Sec-GPC", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 422);
}

mod reads {
    use crate::helpers::{TestApp, ORIGIN, VISITOR};
    use serde_json::Value;

    crate::backend_tests!(a_gpc_signal_on_a_read_is_an_opt_out_too_11_ccr_7025_b, the_gpc_support_resource_is_served);

    async fn a_gpc_signal_on_a_read_is_an_opt_out_too_11_ccr_7025_b(app: TestApp) {
        let site = app.seed().await;
        let url = app.url(&format!("/v1/sites/{site}/visitors/{VISITOR}/consents"));
        let res: Value = app
            .client
            .get(&url)
            .header("Origin", ORIGIN)
            .header("Sec-GPC", "1")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(res["gpc_honored"], true);
        assert_eq!(res["purposes"]["sale_sharing"]["source"], "gpc");
        assert_eq!(res["purposes"]["sale_sharing"]["allowed"], false);
        let events = app.events_of(&format!("visitor:{VISITOR}")).await;
        assert_eq!(events.len(), 1);
        assert_eq!((events[0]["purpose"].as_str(), events[0]["source"].as_str()), (Some("sale_sharing"), Some("gpc")));
        // Once per state change: reading again with the signal writes nothing.
        app.client.get(&url).header("Sec-GPC", "1").send().await.unwrap();
        assert_eq!(app.events_of(&format!("visitor:{VISITOR}")).await.len(), 1);
        let res: Value = app.client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(res["gpc_honored"], false, "no signal on this request");
        assert_eq!(res["purposes"]["sale_sharing"]["status"], "denied", "and the opt-out stands");
    }

    async fn the_gpc_support_resource_is_served(app: TestApp) {
        let res = app.client.get(app.url("/.well-known/gpc.json")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"gpc": true, "lastUpdate": "2026-11-29"}));
    }
}
