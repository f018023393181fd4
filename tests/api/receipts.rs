//! Signed consent receipts (issue 11, item 1): every accepted submission returns a compact JWS
//! that a third party verifies with the published keys alone (GDPR Art. 7(1): the controller
//! must be able to demonstrate consent; ISO/IEC TS 27560 consent record fields).

use crate::helpers::{TestApp, VISITOR};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::backend_tests!(
    a_public_receipt_verifies_with_webcrypto_and_fails_after_a_claim_changes,
    a_server_side_receipt_names_a_pseudonym_and_replays_with_its_key,
    a_retired_key_stays_published_until_its_date,
    verify_answers_invalid_for_anything_that_is_not_a_receipt,
    a_missing_key_file_is_not_replaced_once_receipts_exist,
    during_a_rolling_restart_every_instance_verifies_the_new_keys_receipts,
);

pub(crate) fn claims_of(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&B64.decode(payload).expect("base64url")).expect("JSON claims")
}

fn header_of(jws: &str) -> Value {
    serde_json::from_slice(&B64.decode(jws.split('.').next().unwrap()).unwrap()).unwrap()
}

/// The same JWS with its claims replaced (signature kept): what a forger would produce.
fn with_claims(jws: &str, claims: &Value) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(claims).unwrap()), parts[2])
}

async fn jwks(app: &TestApp) -> Value {
    let res = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn verify(app: &TestApp, receipt: &str) -> Value {
    let res = app.client.post(app.url("/v1/receipts/verify")).json(&json!({"receipt": receipt})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Runs `tests/support/verify_receipt.mjs` (Node's WebCrypto, no Consentry code): `Some(claims)`
/// when the receipt verifies against `jwks`, `None` when not.
fn verify_with_webcrypto(jwks: &Value, receipt: &str) -> Option<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::to_vec(jwks).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/verify_receipt.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(&path)
        .arg(receipt)
        .output()
        .expect("node runs (Node 20 or later is needed by the SDK's tests too)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Some(serde_json::from_str(&stdout).expect("the script prints the claims"))
    } else {
        assert!(stdout.starts_with("invalid"), "the script failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        None
    }
}

async fn a_public_receipt_verifies_with_webcrypto_and_fails_after_a_claim_changes(app: TestApp) {
    let site = app.seed().await;
    let res = app
        .visitor_post(
            &site,
            &json!({"visitor_id": VISITOR, "choices": {"analytics": true, "marketing_email": false},
                    "policy_revision": "2021-02-01", "source": "banner", "region": "FR"}),
        )
        .header("Sec-GPC", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let receipt = body["receipt"].as_str().expect("a receipt").to_owned();

    let header = header_of(&receipt);
    assert_eq!(header["alg"], "EdDSA");
    let keys = jwks(&app).await;
    assert_eq!(header["kid"], keys["keys"][0]["kid"]);
    assert_eq!(keys["keys"][0]["kty"], "OKP");
    assert_eq!(keys["keys"][0]["crv"], "Ed25519");

    // Verified by an independent implementation, from the JWKS alone.
    let claims = verify_with_webcrypto(&keys, &receipt).expect("WebCrypto verifies the receipt");
    assert_eq!(claims, claims_of(&receipt));

    // What it says: the events written, with the hashes of the chain.
    let events = app.events_of(&format!("visitor:{VISITOR}")).await;
    let listed: Vec<Value> = events.iter().map(|e| json!({"id": e["id"], "hash": e["hash"]})).collect();
    assert_eq!(claims["events"], json!(listed));
    assert_eq!(json!(body["event_ids"]), json!(events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()));
    assert_eq!(claims["source"], "banner");
    assert_eq!(claims["region"], "FR");
    assert_eq!(claims["gpc"], true);
    assert_eq!(claims["policy_revision"], "2021-02-01");
    assert_eq!(
        claims["policies"],
        json!([{"key": "privacy", "revision_date": "2021-02-01", "url": "https://www.example.com/privacy", "sha256": null}])
    );
    let purposes = claims["purposes"].as_array().unwrap();
    // GPC first (11 CCR §7025), then the choices.
    assert_eq!(
        purposes[0],
        json!({"purpose": "sale_sharing", "decision": "denied", "consent_model": "opt_out", "source": "gpc"})
    );
    assert!(purposes.contains(
        &json!({"purpose": "analytics", "decision": "granted", "consent_model": "opt_in", "source": "banner"})
    ));
    assert!(claims["sub"].as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()), "a pseudonymous id");
    assert!(claims["jti"].as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()));
    assert_eq!(claims["tenant"].as_str().map(str::len), Some(36));
    assert!(claims["site"].is_string());

    let ours = verify(&app, &receipt).await;
    assert_eq!(ours["valid"], true);
    assert_eq!(ours["claims"], claims);

    // Any claim changed: the signature no longer holds, for WebCrypto and for the service.
    for (field, value) in [
        (
            "purposes",
            json!([{"purpose": "analytics", "decision": "denied", "consent_model": "opt_in", "source": "banner"}]),
        ),
        ("time", json!("2020-01-01T00:00:00.000000Z")),
        ("sub", json!(uuid::Uuid::new_v4().to_string())),
    ] {
        let mut forged = claims.clone();
        forged[field] = value;
        let forged = with_claims(&receipt, &forged);
        assert_eq!(verify_with_webcrypto(&keys, &forged), None, "changed {field}");
        let verdict = verify(&app, &forged).await;
        assert_eq!(verdict["valid"], false, "changed {field}");
        assert_eq!(verdict["reason"], "the signature does not match the content");
    }
}

async fn a_server_side_receipt_names_a_pseudonym_and_replays_with_its_key(app: TestApp) {
    app.seed().await;
    let body = json!({"subject": "email:Ada@Example.com", "choices": {"marketing_email": true},
                      "policy_revision": "2021-02-01", "source": "api"});
    let send = || app.post("/v1/consents", &body).header("Idempotency-Key", "receipt-replay-1").send();
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let receipt = first["receipt"].as_str().expect("a receipt").to_owned();
    let payload = String::from_utf8(B64.decode(receipt.split('.').nth(1).unwrap()).unwrap()).unwrap();
    // The address, not "ada" alone: ids and hashes are hex, where "ada" turns up by chance.
    assert!(!payload.to_lowercase().contains("ada@example.com"), "never a raw email in a receipt: {payload}");
    assert!(!payload.contains('@'), "never a raw email in a receipt: {payload}");
    let claims = claims_of(&receipt);
    assert_eq!(claims["source"], "api");
    assert!(claims.get("site").is_none());
    assert_eq!(claims["events"].as_array().unwrap().len(), 1);
    assert_eq!(claims["purposes"][0]["consent_model"], "opt_in");

    // A retry under the same key writes nothing and returns the same receipt.
    let again = send().await.unwrap();
    assert_eq!(again.headers().get("Idempotent-Replayed").unwrap(), "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["receipt"], first["receipt"]);
    assert_eq!(verify(&app, &receipt).await["valid"], true);

    // An opt-out request (a server-side write) gets one too.
    let res = app
        .post("/v1/opt-outs", &json!({"subject": "email:ada@example.com", "channel": "email", "scope": "sale_sharing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let opt_out: Value = res.json().await.unwrap();
    let claims = claims_of(opt_out["receipt"].as_str().expect("a receipt"));
    assert_eq!(claims["source"], "opt_out_request");
    assert_eq!(claims["purposes"][0]["decision"], "denied");
}

async fn a_retired_key_stays_published_until_its_date(mut app: TestApp) {
    let site = app.seed().await;
    let receipt =
        app.record_visitor(&site, VISITOR, json!({"analytics": true})).await["receipt"].as_str().unwrap().to_owned();
    let key_file = app.settings.receipts.key_file.clone().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is readable by its owner only");
    }
    let old_kid = header_of(&receipt)["kid"].as_str().unwrap().to_owned();

    let key_file_env = key_file.display().to_string();
    let rotate = |app: &TestApp, until: &str| {
        let out = app.cli_env(
            &["receipts", "rotate-key", "--publish-until", until],
            &[("CONSENTRY__RECEIPTS__KEY_FILE", &key_file_env)],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let new_kid = rotate(&app, "2999-12-31");
    app.restart(|_| {}).await;
    let keys = jwks(&app).await;
    let kids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![old_kid.as_str(), new_kid.as_str()]);
    assert_eq!(verify(&app, &receipt).await["valid"], true, "a retired key's receipts still verify");
    let fresh = app.record_visitor(&site, VISITOR, json!({"analytics": false})).await;
    assert_eq!(header_of(fresh["receipt"].as_str().unwrap())["kid"], new_kid);

    // A date that has passed is refused: it would unpublish the retiring key at once.
    let out = app.cli_env(
        &["receipts", "rotate-key", "--publish-until", "2000-01-01"],
        &[("CONSENTRY__RECEIPTS__KEY_FILE", &key_file_env)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not after today"), "{out:?}");

    // Once its date has passed, a retired key leaves the set: the second key's date is moved
    // into the past in the file (time passing), so it is gone; the first (kept until 2999) stays.
    let fresh = fresh["receipt"].as_str().unwrap().to_owned();
    let third = rotate(&app, "2999-12-31");
    let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    for key in file["keys"].as_array_mut().unwrap() {
        if key["kid"] == new_kid.as_str() {
            key["publish_until"] = json!("2000-01-01");
        }
    }
    std::fs::write(&key_file, serde_json::to_string(&file).unwrap()).unwrap();
    app.restart(|_| {}).await;
    let keys = jwks(&app).await;
    let kids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![old_kid.as_str(), third.as_str()]);
    let verdict = verify(&app, &fresh).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], "the header's kid names no published key");
    assert_eq!(verify(&app, &receipt).await["valid"], true);
}

async fn verify_answers_invalid_for_anything_that_is_not_a_receipt(app: TestApp) {
    for junk in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"] {
        let verdict = verify(&app, junk).await;
        assert_eq!(verdict["valid"], false, "{junk}");
        assert!(verdict["reason"].is_string());
    }
    let res = app.client.post(app.url("/v1/receipts/verify")).json(&json!({"jws": "x"})).send().await.unwrap();
    crate::helpers::assert_problem(res, 400).await;
    // Longer than the schema's maxLength (65,536): refused as the document says, not read.
    let res = app
        .client
        .post(app.url("/v1/receipts/verify"))
        .json(&json!({"receipt": "a".repeat(65_537)}))
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::assert_problem(res, 400).await;
    assert_eq!(problem["errors"][0]["field"], "receipt", "{problem}");
}

/// Once the database holds receipts, a missing receipt key file is a lost or misplaced one (a
/// command run from another directory with PostgreSQL, whose default path is relative): the
/// command refuses to start instead of making a new key whose signatures nobody could check
/// against the published ones; on a first start the file is still made.
async fn a_missing_key_file_is_not_replaced_once_receipts_exist(app: TestApp) {
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("receipt-keys.json");
    let missing_str = missing.to_str().unwrap();
    // No receipt yet: a command may make the file (a first start).
    let out = app.cli_env(&["ledger", "verify"], &[("CONSENTRY__RECEIPTS__KEY_FILE", missing_str)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(missing.exists(), "made on a first start");
    std::fs::remove_file(&missing).unwrap();

    app.seed().await;
    let res = app
        .post("/v1/consents", &json!({"subject": "user:key-1", "choices": {"marketing_email": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.json::<Value>().await.unwrap()["receipt"].is_string());

    let out = app.cli_env(&["ledger", "verify"], &[("CONSENTRY__RECEIPTS__KEY_FILE", missing_str)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without its receipt keys: {stderr}");
    assert!(stderr.contains("does not exist, but the database holds consent receipts"), "{stderr}");
    assert!(stderr.contains(missing_str), "names the file: {stderr}");
    assert!(!missing.exists(), "no new key was made");
    // With the right file, the same command runs.
    let out = app.cli(&["ledger", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A rotation during a rolling restart: an instance started after `receipts rotate-key` signs
/// with the new key while an older one still runs; the older one verifies those receipts and
/// publishes the new key (it reads the key file again for a key it does not know).
async fn during_a_rolling_restart_every_instance_verifies_the_new_keys_receipts(app: TestApp) {
    let site = app.seed().await;
    let old =
        app.record_visitor(&site, VISITOR, json!({"analytics": true})).await["receipt"].as_str().unwrap().to_owned();
    let out = app.cli(&["receipts", "rotate-key", "--publish-until", "2999-12-31"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // The new instance, on the same database and key file.
    let port = app.spawn_instance().await;
    let res = app
        .client
        .post(format!("http://127.0.0.1:{port}/v1/sites/{site}/consents"))
        .header("Origin", crate::helpers::ORIGIN)
        .json(&json!({"visitor_id": VISITOR, "choices": {"analytics": false}, "policy_revision": "2021-02-01", "source": "banner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let fresh = res.json::<Value>().await.unwrap()["receipt"].as_str().unwrap().to_owned();
    assert_eq!(header_of(&fresh)["kid"], new_kid.as_str(), "the new instance signs with the new key");
    // The instance started before the rotation.
    let verdict = verify(&app, &fresh).await;
    assert_eq!(verdict["valid"], true, "the older instance verifies the new key's receipt: {verdict}");
    assert_eq!(verify(&app, &old).await["valid"], true);
    let kids: Vec<String> =
        jwks(&app).await["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    assert!(kids.contains(&new_kid), "the older instance publishes the new key: {kids:?}");
}
