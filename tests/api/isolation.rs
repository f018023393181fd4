//! Tenants are isolated: no token, site key or identifier of one tenant reaches another's data.

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use serde_json::{json, Value};

crate::backend_tests!(tenants_see_only_their_own_data);

async fn tenants_see_only_their_own_data(app: TestApp) {
    let site_a = app.seed().await;
    app.record_visitor(&site_a, VISITOR, json!({"analytics": true})).await;
    let res = app
        .record(json!({"subject": "email:ada@example.com", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), 201);

    let token_b = app.create_tenant("globex");
    let b = |req: reqwest::RequestBuilder| req.bearer_auth(&token_b);
    // Tenant B sees none of A's configuration.
    let sites: Value = b(app.client.get(app.url("/v1/sites"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(sites["sites"], json!([]));
    let purposes: Value = b(app.client.get(app.url("/v1/purposes"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(purposes["purposes"], json!([]));
    assert_problem(b(app.client.get(app.url("/v1/purposes/analytics"))).send().await.unwrap(), 404).await;
    // Nor A's subjects, by the same identifiers.
    for subject in [format!("visitor:{VISITOR}"), "email:ada@example.com".to_owned()] {
        let events: Value = b(app.client.get(app.url(&format!("/v1/subjects/{subject}/events"))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(events["events"], json!([]), "{subject}");
    }
    // B cannot record against or check A's purposes.
    let res = b(app.client.post(app.url("/v1/consents")))
        .json(&json!({"subject": "email:ada@example.com", "choices": {"analytics": false}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_problem(res, 400).await["errors"][0]["field"], "choices.analytics");
    let res = b(app.client.post(app.url("/v1/consents/check")))
        .json(&json!({"purpose": "marketing_email", "subjects": ["email:ada@example.com"]}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;
    // B defines the same purpose key: A's grant still does not show through.
    let res = b(app.client.put(app.url("/v1/purposes/marketing_email")))
        .json(&json!({"title": "m", "description": "", "kind": "communication", "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res: Value = b(app.client.post(app.url("/v1/consents/check")))
        .json(&json!({"purpose": "marketing_email", "subjects": ["email:ada@example.com"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["results"][0]["status"], "not_asked");
    // A's state is untouched and A's site key only reaches A's tenant.
    assert_eq!(app.consents_of("email:ada@example.com").await["purposes"]["marketing_email"]["status"], "granted");
    let state: Value = app
        .client
        .get(app.url(&format!("/v1/sites/{site_a}/visitors/{VISITOR}/consents")))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["purposes"]["analytics"]["status"], "granted");
    assert!(state["purposes"].get("marketing_email").is_some());
}
