//! Issue 10, security 2: management tokens are refused before their `nbf`, carry the scopes of
//! their stored record whatever their claims say, and survive a rotation of the signing key
//! until they expire or are revoked; the installation's keys, identity secrets and webhook
//! secrets are stored sealed, and a missing or wrong key stops start-up.

use crate::consents::raw_connection;
use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use consentry::db::schema::{instance_keys, sites, webhooks};
use diesel::prelude::*;
use serde_json::{json, Value};

crate::backend_tests!(
    a_token_is_refused_before_its_nbf_rfc_7519_4_1_5,
    a_token_is_refused_from_the_second_of_its_exp_rfc_7519_4_1_4,
    a_token_re_signed_with_wider_scopes_keeps_its_stored_scopes,
    tokens_issued_before_a_key_rotation_stay_valid_until_revoked,
    no_secret_is_stored_in_clear_and_old_clear_rows_are_sealed_at_start,
    start_up_with_a_wrong_or_missing_key_fails_with_a_message,
    two_authorization_headers_are_refused_rfc_6750_3_1,
);

/// The signing key of management tokens as a holder of the database and its key would have
/// it: (kid, HS256 secret), the newest.
fn signing_key(app: &TestApp) -> (String, String) {
    let mut conn = raw_connection(app);
    let secrets = consentry::secrets::SecretBox::load(&app.settings, &mut conn).expect("the key opens the database");
    let (name, secret, _) =
        consentry::db::models::instance_key::InstanceKey::family(&mut conn, consentry::auth::TOKEN_KEY, &secrets)
            .unwrap()
            .pop()
            .expect("a token key");
    let kid = name.split_once(':').map_or(consentry::auth::FIRST_KID.to_owned(), |(_, k)| k.to_owned());
    (kid, secret)
}

fn header_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap()
}

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// `claims` signed with `(kid, secret)`.
fn sign(key: &(String, String), claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.0.clone());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(key.1.as_bytes()).unwrap()).unwrap()
}

async fn get_with(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

/// Sleeps until the clock reaches the whole second `t` (seconds since the epoch), waking within
/// 10 ms of it.
async fn sleep_until_second(t: i64) {
    while chrono::Utc::now().timestamp() < t {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// RFC 7519 §4.1.5: a JWT "MUST NOT be accepted for processing" before its `nbf`. Before, `nbf`
/// was ignored.
async fn a_token_is_refused_before_its_nbf_rfc_7519_4_1_5(app: TestApp) {
    let (jwt, _) = app.issue_token("acme", &["consents:read"], None);
    let mut claims = claims_of(&jwt);
    let nbf = chrono::Utc::now().timestamp() + 3;
    claims["nbf"] = json!(nbf);
    let early = sign(&signing_key(&app), &claims);
    let body = assert_problem(get_with(&app, "/v1/sites", &early).await, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("not valid yet (nbf"), "{body}");
    // Once `nbf` has passed, the same token works.
    sleep_until_second(nbf + 1).await;
    assert_eq!(get_with(&app, "/v1/sites", &early).await.status(), 200);
    // A token with `nbf` in the past is accepted as well.
    claims["nbf"] = json!(nbf - 3600);
    assert_eq!(get_with(&app, "/v1/sites", &sign(&signing_key(&app), &claims)).await.status(), 200);
}

/// RFC 7519 §4.1.4: a JWT "MUST NOT be accepted for processing" on or after its `exp`. The JWT
/// library refuses only after it (`exp < now`, in whole seconds): a token was accepted through
/// the second of its `exp`, after having been accepted (and remembered) before.
async fn a_token_is_refused_from_the_second_of_its_exp_rfc_7519_4_1_4(app: TestApp) {
    let (jwt, _) = app.issue_token("acme", &["consents:read"], None);
    let mut claims = claims_of(&jwt);
    let exp = chrono::Utc::now().timestamp() + 3;
    claims["exp"] = json!(exp);
    let expiring = sign(&signing_key(&app), &claims);
    let status = get_with(&app, "/v1/sites", &expiring).await.status();
    // Answered within the second before its exp: valid then (a host slow enough to answer
    // after it would rightly refuse it).
    if chrono::Utc::now().timestamp() < exp {
        assert_eq!(status, 200, "valid before its exp");
    }
    sleep_until_second(exp).await;
    let body = assert_problem(get_with(&app, "/v1/sites", &expiring).await, 401).await;
    assert_eq!(body["detail"], "the token has expired");
    // A token issued with a lifetime expires at its `exp`, to the second, not a fraction later.
    let (issued, _) = app.issue_token("acme", &["consents:read"], Some("4s"));
    let exp = claims_of(&issued)["exp"].as_i64().unwrap();
    let status = get_with(&app, "/v1/sites", &issued).await.status();
    // As above: issued and read within its lifetime, it is valid (a CI run under load took more
    // than the 2 s it had).
    if chrono::Utc::now().timestamp() < exp {
        assert_eq!(status, 200);
    }
    sleep_until_second(exp).await;
    let body = assert_problem(get_with(&app, "/v1/sites", &issued).await, 401).await;
    assert_eq!(body["detail"], "the token has expired");
}

/// A token's scopes are those stored when it was issued: one re-signed with wider scopes (by a
/// holder of the key) is limited to its record's. Before, the claims' scopes were used.
async fn a_token_re_signed_with_wider_scopes_keeps_its_stored_scopes(app: TestApp) {
    app.seed().await;
    let (jwt, id) = app.issue_token("acme", &["consents:check"], None);
    let mut claims = claims_of(&jwt);
    assert_eq!(claims["jti"], id.as_str());
    claims["scopes"] = json!(["admin", "consents:read", "consents:write", "consents:check"]);
    let widened = sign(&signing_key(&app), &claims);
    // The signature holds (the key is the installation's), so it is not a 401 ...
    let res = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&widened)
        .json(&json!({"scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("lacks the scope 'admin'"), "{body}");
    let res = get_with(&app, "/v1/subjects/user:1/consents", &widened).await;
    assert_problem(res, 403).await;
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&widened)
        .json(&json!({"subject": "user:1", "choices": {"analytics": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    // ... and what the record allows still works.
    let res = app
        .client
        .post(app.url("/v1/consents/check"))
        .bearer_auth(&widened)
        .json(&json!({"purpose": "analytics", "subjects": ["user:1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// `consentry tokens rotate-key`: new tokens are signed with the new key (its `kid` in the
/// header); tokens of the old key keep working until revoked; a running instance accepts
/// tokens of the new key without a restart.
async fn tokens_issued_before_a_key_rotation_stay_valid_until_revoked(mut app: TestApp) {
    let old_admin = app.token.clone();
    let (old_reader, old_reader_id) = app.issue_token("acme", &["consents:read"], None);
    assert_eq!(header_of(&old_reader)["kid"], consentry::auth::FIRST_KID);
    let out = app.cli(&["tokens", "rotate-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!kid.is_empty() && kid != consentry::auth::FIRST_KID);

    // Issued by the CLI after the rotation, used on the instance started before it.
    let (new_reader, _) = app.issue_token("acme", &["consents:read"], None);
    assert_eq!(header_of(&new_reader)["kid"], kid.as_str());
    assert_eq!(get_with(&app, "/v1/sites", &new_reader).await.status(), 200);
    assert_eq!(get_with(&app, "/v1/sites", &old_reader).await.status(), 200);

    // After a restart the server signs with the new key too; old tokens still work.
    app.restart(|_| {}).await;
    let res = app.post("/v1/tokens", &json!({"scopes": ["consents:check"]})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.unwrap();
    assert_eq!(header_of(issued["token"].as_str().unwrap())["kid"], kid.as_str());
    assert_eq!(get_with(&app, "/v1/sites", issued["token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(get_with(&app, "/v1/sites", &old_admin).await.status(), 200);
    assert_eq!(get_with(&app, "/v1/sites", &old_reader).await.status(), 200);

    // Revoking an old-key token ends it.
    let res = app
        .client
        .delete(app.url(&format!("/v1/tokens/{old_reader_id}")))
        .bearer_auth(&old_admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let body = assert_problem(get_with(&app, "/v1/sites", &old_reader).await, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");

    // A header naming a key that does not exist, or the old key's signature under the new
    // key's `kid`, is refused.
    let claims = claims_of(&new_reader);
    let forged = sign(&("no-such-key".to_owned(), signing_key(&app).1), &claims);
    assert_problem(get_with(&app, "/v1/sites", &forged).await, 401).await;
    let mut old_key = signing_key(&app);
    old_key.1 = "not the key".into();
    assert_problem(get_with(&app, "/v1/sites", &sign(&old_key, &claims)).await, 401).await;
}

fn instance_key_rows(conn: &mut consentry::db::AnyConnection) -> Vec<(String, String)> {
    instance_keys::table.select((instance_keys::name, instance_keys::secret)).load(conn).unwrap()
}

/// The rows hold no secret in clear (read directly); rows of an earlier release, in clear,
/// are sealed at the next start and keep working.
async fn no_secret_is_stored_in_clear_and_old_clear_rows_are_sealed_at_start(mut app: TestApp) {
    app.seed().await;
    let res = app.post("/v1/sites", &json!({"name": "shop", "origins": [ORIGIN]})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let site: Value = res.json().await.unwrap();
    let (site_id, site_key) = (site["id"].as_str().unwrap(), site["site_key"].as_str().unwrap());
    let identity_secret = site["identity_secret"].as_str().unwrap().to_owned();
    let res = app
        .post("/v1/webhooks", &json!({"url": "https://crm.example.com/hooks", "events": ["consent.changed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook: Value = res.json().await.unwrap();
    let (hook_id, hook_secret) = (hook["id"].as_str().unwrap(), hook["secret"].as_str().unwrap().to_owned());
    let token_key = signing_key(&app).1;

    let mut conn = raw_connection(&app);
    let keys = instance_key_rows(&mut conn);
    assert!(keys.len() >= 2, "the token and unsubscribe keys: {keys:?}");
    for (name, stored) in &keys {
        assert!(stored.starts_with("enc:v1:"), "instance key {name} is sealed");
        assert!(!stored.contains(&token_key));
    }
    let stored_identity: Option<String> =
        sites::table.find(site_id).select(sites::identity_secret).first(&mut conn).unwrap();
    let stored_identity = stored_identity.unwrap();
    assert!(stored_identity.starts_with("enc:v1:") && !stored_identity.contains(&identity_secret));
    let stored_hook: String = webhooks::table.find(hook_id).select(webhooks::secret).first(&mut conn).unwrap();
    assert!(stored_hook.starts_with("enc:v1:") && !stored_hook.contains(&hook_secret));
    // The same in every column: no plaintext anywhere in those tables.
    let all_sites: Vec<Option<String>> = sites::table.select(sites::identity_secret).load(&mut conn).unwrap();
    assert!(all_sites.iter().flatten().all(|s| s.starts_with("enc:v1:")), "{all_sites:?}");

    // The identity secret still verifies identity tokens.
    let identity = |secret: &str| {
        let claims = json!({"sub": "42", "exp": chrono::Utc::now().timestamp() + 300});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let visit = |token: String| {
        json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01",
               "source": "banner", "identity_token": token})
    };
    let res = app.visitor_post(site_key, &visit(identity(&identity_secret))).send().await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    // An earlier release's rows: in clear. (SQLite: wait for the server's writers.)
    if let consentry::db::AnyConnection::Sqlite(c) = &mut conn {
        diesel::sql_query("PRAGMA busy_timeout = 10000").execute(c).unwrap();
    }
    diesel::update(instance_keys::table.find(consentry::auth::TOKEN_KEY))
        .set(instance_keys::secret.eq(&token_key))
        .execute(&mut conn)
        .unwrap();
    diesel::update(sites::table.find(site_id))
        .set(sites::identity_secret.eq(Some(&identity_secret)))
        .execute(&mut conn)
        .unwrap();
    diesel::update(webhooks::table.find(hook_id)).set(webhooks::secret.eq(&hook_secret)).execute(&mut conn).unwrap();
    app.restart(|_| {}).await;
    for (name, stored) in instance_key_rows(&mut conn) {
        assert!(stored.starts_with("enc:v1:"), "instance key {name} is sealed at start");
    }
    let stored_identity: Option<String> =
        sites::table.find(site_id).select(sites::identity_secret).first(&mut conn).unwrap();
    assert!(stored_identity.unwrap().starts_with("enc:v1:"));
    let stored_hook: String = webhooks::table.find(hook_id).select(webhooks::secret).first(&mut conn).unwrap();
    assert!(stored_hook.starts_with("enc:v1:"));
    // Nothing was lost: the old token key, identity secret and webhook secret are the same.
    assert_eq!(signing_key(&app).1, token_key);
    assert_eq!(app.get("/v1/sites").send().await.unwrap().status(), 200, "the admin token still works");
    let res = app.visitor_post(site_key, &visit(identity(&identity_secret))).send().await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let secrets = consentry::secrets::SecretBox::load(&app.settings, &mut conn).unwrap();
    assert_eq!(secrets.open(&consentry::secrets::webhook_secret_context(hook_id), &stored_hook).unwrap(), hook_secret);
}

/// A key file that does not open the stored secrets, or none while they are sealed, stops
/// start-up (server and CLI) with a message naming the problem; nothing is served.
async fn start_up_with_a_wrong_or_missing_key_fails_with_a_message(app: TestApp) {
    let key_file = app.settings.secrets.key_file.clone().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the generated key file is its owner's only");
    }
    let wrong = key_file.with_file_name("wrong.key");
    std::fs::write(&wrong, format!("{}\n", B64.encode([9u8; 32]))).unwrap();
    let mut settings = app.settings.clone();
    settings.secrets.key_file = Some(wrong.clone());
    let err = consentry::startup::Application::build(settings.clone()).await.err().expect("refused").to_string();
    assert!(err.contains("does not open the secrets stored in the database"), "{err}");
    assert!(err.contains(&wrong.display().to_string()) && err.contains("refusing to start"), "{err}");

    let wrong_path = wrong.display().to_string();
    let out = app.cli_env(&["migrate"], &[("CONSENTRY__SECRETS__KEY_FILE", &wrong_path)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not open the secrets stored in the database"), "{stderr}");

    // The key given in the environment instead: the same check.
    let out = app.cli_env(&["migrate"], &[("CONSENTRY__SECRETS__KEY", &B64.encode([9u8; 32]))]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from secrets.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No key file at all while the database holds sealed secrets: no new key is made up.
    let missing = key_file.with_file_name("missing.key");
    settings.secrets.key_file = Some(missing.clone());
    let err = consentry::startup::Application::build(settings).await.err().expect("refused").to_string();
    assert!(err.contains("does not exist") && err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists(), "no key was generated over sealed secrets");

    // The right key, given in the environment, works.
    let right = std::fs::read_to_string(&key_file).unwrap();
    let out = app.cli_env(&["migrate"], &[("CONSENTRY__SECRETS__KEY", right.trim())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// RFC 6750 §3.1 (invalid_request): a request with two Authorization headers is refused (400
/// naming the header) whatever their order, rather than acting as whichever came first: with
/// another tenant's token first, it acted as that tenant.
async fn two_authorization_headers_are_refused_rfc_6750_3_1(app: TestApp) {
    app.seed().await;
    let other = app.create_tenant("other-shop");
    let body = json!({"subject": "user:two-auth", "choices": {"marketing_email": true}, "source": "api"});
    for (first, second) in [(&other, &app.token), (&app.token, &other)] {
        let res = app
            .client
            .post(app.url("/v1/consents"))
            .header("Authorization", format!("Bearer {first}"))
            .header("Authorization", format!("Bearer {second}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, 400).await;
        assert_eq!(problem["errors"][0]["field"], "Authorization", "{problem}");
    }
    let checked = app.check("marketing_email", &["user:two-auth"]).await;
    assert_eq!(checked[0]["status"], "not_asked", "nothing was written: {checked:?}");
    assert_eq!(app.record(body).await.status(), 201, "one header works");
}
