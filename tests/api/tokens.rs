//! Management tokens over the API (issue 13): issue, list, revoke (through the tenant
//! directory's revocation cache, on every instance), and the console's one-time sign-in code.

use crate::helpers::{assert_problem, TestApp};
use serde_json::{json, Value};

crate::backend_tests!(
    an_admin_issues_a_narrow_token_that_works_only_for_its_scope,
    a_revoked_token_is_refused_by_every_instance,
    tokens_are_the_tenants_own_and_need_admin,
    a_console_sign_in_code_works_once,
    an_opt_out_is_completed_with_a_note_or_without_a_body,
);

async fn an_admin_issues_a_narrow_token_that_works_only_for_its_scope(app: TestApp) {
    app.seed().await;
    let res = app
        .post("/v1/tokens", &json!({"scopes": ["consents:check"], "label": "mailer", "ttl": "90d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.unwrap();
    let jwt = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(issued["scopes"], json!(["consents:check"]));
    assert_eq!(issued["label"], "mailer");
    assert_eq!(issued["status"], "active");
    let expires = chrono::DateTime::parse_from_rfc3339(issued["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((89 * 24..=90 * 24).contains(&days), "expires in 90 days ({days} h)");
    // It checks, and does nothing else.
    let check = app
        .client
        .post(app.url("/v1/consents/check"))
        .bearer_auth(&jwt)
        .json(&json!({"purpose": "analytics", "subjects": ["user:1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200);
    let admin = app.client.get(app.url("/v1/tokens")).bearer_auth(&jwt).send().await.unwrap();
    assert_problem(admin, 403).await;
    // Listed, without the JWT; the caller's own token is marked.
    let list: Value = app.get("/v1/tokens").send().await.unwrap().json().await.unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.get("token").is_none()), "a JWT is shown only once");
    let mailer = tokens.iter().find(|t| t["id"] == issued["id"]).unwrap();
    assert_eq!((mailer["label"].as_str(), mailer["current"].as_bool()), (Some("mailer"), Some(false)));
    assert_eq!(tokens.iter().filter(|t| t["current"] == true).count(), 1);
    // Malformed requests.
    for (body, field) in [
        (json!({"scopes": []}), "scopes"),
        (json!({"scopes": ["consents:check"], "ttl": "soon"}), "ttl"),
        (json!({"scopes": ["consents:check"], "ttl": "0s"}), "ttl"),
        (json!({"scopes": ["consents:check"], "label": ""}), "label"),
    ] {
        let res = app.post("/v1/tokens", &body).send().await.unwrap();
        let problem = assert_problem(res, 400).await;
        assert!(problem["detail"].as_str().unwrap().starts_with(field), "{problem}");
    }
    let res = app.post("/v1/tokens", &json!({"scopes": ["root"]})).send().await.unwrap();
    assert_problem(res, 400).await;
}

async fn a_revoked_token_is_refused_by_every_instance(app: TestApp) {
    app.seed().await;
    let issued: Value =
        app.post("/v1/tokens", &json!({"scopes": ["consents:read"]})).send().await.unwrap().json().await.unwrap();
    let (jwt, id) = (issued["token"].as_str().unwrap().to_owned(), issued["id"].as_str().unwrap().to_owned());
    let other = format!("http://127.0.0.1:{}", app.spawn_instance().await);
    let read = |base: String| {
        let (client, jwt) = (app.client.clone(), jwt.clone());
        async move { client.get(format!("{base}/v1/opt-outs")).bearer_auth(jwt).send().await.unwrap() }
    };
    // Both instances accept it (and so cache the tenant with it).
    assert_eq!(read(app.address.clone()).await.status(), 200);
    assert_eq!(read(other.clone()).await.status(), 200);
    let res = app.client.delete(app.url(&format!("/v1/tokens/{id}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // This instance refuses it at once.
    let body = assert_problem(read(app.address.clone()).await, 401).await;
    assert_eq!(body["detail"], "the token has been revoked");
    // The other sees the revocation through the configuration version (polled every 250 ms).
    let mut refused = false;
    for _ in 0..100 {
        if read(other.clone()).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "the other instance still accepts a revoked token");
    let list: Value = app.get("/v1/tokens").send().await.unwrap().json().await.unwrap();
    let row = list["tokens"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap().clone();
    assert_eq!(row["status"], "revoked");
    let again = app.client.delete(app.url(&format!("/v1/tokens/{id}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_problem(again, 409).await;
}

async fn tokens_are_the_tenants_own_and_need_admin(app: TestApp) {
    let other_admin = app.create_tenant("globex");
    let theirs: Value = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&other_admin)
        .json(&json!({"scopes": ["consents:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let their_id = theirs["id"].as_str().unwrap();
    // acme's admin cannot see or revoke globex's token.
    let list: Value = app.get("/v1/tokens").send().await.unwrap().json().await.unwrap();
    assert!(list["tokens"].as_array().unwrap().iter().all(|t| t["id"] != their_id));
    let res =
        app.client.delete(app.url(&format!("/v1/tokens/{their_id}"))).bearer_auth(&app.token).send().await.unwrap();
    assert_problem(res, 404).await;
    let works =
        app.client.get(app.url("/v1/opt-outs")).bearer_auth(theirs["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(works.status(), 200);
    // A token without admin can neither issue nor revoke.
    let (reader, reader_id) = app.issue_token("acme", &["consents:read"], None);
    let res = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&reader)
        .json(&json!({"scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    let res = app.client.delete(app.url(&format!("/v1/tokens/{reader_id}"))).bearer_auth(&reader).send().await.unwrap();
    assert_problem(res, 403).await;
}

async fn a_console_sign_in_code_works_once(app: TestApp) {
    app.seed().await;
    let code = {
        let pool = consentry::db::connect(&app.database_url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        let tenant = consentry::db::models::tenant::Tenant::find_by_slug(&mut conn, "acme").unwrap().unwrap();
        consentry::service::tokens::create_sign_in_code(&mut conn, &tenant.id).unwrap()
    };
    let sign_in = || app.client.post(app.url("/v1/console/sign-in")).json(&json!({"code": code})).send();
    let res = sign_in().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["label"].as_str(), body["scopes"].clone()), (Some("console"), json!(["admin"])));
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires.with_timezone(&chrono::Utc) <= chrono::Utc::now() + chrono::Duration::hours(12));
    let tokens =
        app.client.get(app.url("/v1/tokens")).bearer_auth(body["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(tokens.status(), 200);
    // Once only; an unknown code the same.
    let again = assert_problem(sign_in().await.unwrap(), 401).await;
    assert_eq!(again["detail"], "the sign-in code is unknown, used or expired");
    let res = app.client.post(app.url("/v1/console/sign-in")).json(&json!({"code": "guess"})).send().await.unwrap();
    assert_problem(res, 401).await;
}

async fn an_opt_out_is_completed_with_a_note_or_without_a_body(app: TestApp) {
    app.seed().await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let res = app
            .post("/v1/opt-outs", &json!({"subject": format!("user:{n}"), "channel": "email", "scope": "sale_sharing"}))
            .send()
            .await
            .unwrap();
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let res = app
        .client
        .post(app.url(&format!("/v1/opt-outs/{}/complete", ids[0])))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["completion_note"], Value::Null);
    let long = "x".repeat(2001);
    let res = app.post(&format!("/v1/opt-outs/{}/complete", ids[1]), &json!({"note": long})).send().await.unwrap();
    assert_problem(res, 400).await;
    let res = app
        .post(&format!("/v1/opt-outs/{}/complete", ids[1]), &json!({"note": " Partners notified "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = app.get("/v1/opt-outs?status=completed").send().await.unwrap().json().await.unwrap();
    let notes: Vec<&Value> = list["opt_outs"].as_array().unwrap().iter().map(|o| &o["completion_note"]).collect();
    assert!(notes.contains(&&json!("Partners notified")));
}
