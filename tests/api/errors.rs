//! Bad input gets an RFC 9457 problem body that says which field and why; nothing is lost.

use crate::helpers::{assert_problem, TestApp, ORIGIN, VISITOR};
use serde_json::json;

crate::backend_tests!(
    malformed_json_is_a_problem,
    a_byte_order_mark_before_the_json_is_ignored_rfc_8259_8_1,
    a_wrong_type_names_the_field,
    unknown_fields_are_refused_by_name,
    a_missing_field_is_named,
    oversized_bodies_are_413,
    non_json_bodies_are_415,
    unknown_routes_are_404_problems,
    bad_identifiers_say_why,
    authentication_failures_are_401_problems,
    missing_scopes_are_403_problems,
    check_of_more_than_10000_subjects_is_413,
    unsupported_methods_are_405_with_allow,
    the_api_document_and_its_browsable_docs_are_served,
    nul_characters_and_trailing_data_are_refused_alike_on_both_databases,
    requests_the_http_layer_cannot_read_get_problem_bodies,
    bad_query_parameters_are_named_with_what_they_take,
);

/// A query parameter of the wrong type is a 400 problem naming it and what it takes (from its
/// documented schema), not serde's text ("invalid digit found in string"); a value the type
/// takes but the endpoint does not (a limit out of range) reads the same.
async fn bad_query_parameters_are_named_with_what_they_take(app: TestApp) {
    for (path, field, message) in [
        ("/v1/events?limit=abc", "limit", "expected a whole number from 1 to 1000"),
        ("/v1/events?limit=", "limit", "expected a whole number from 1 to 1000"),
        ("/v1/events?limit=0", "limit", "expected a whole number from 1 to 1000"),
        ("/v1/events?limit=1001", "limit", "expected a whole number from 1 to 1000"),
        ("/v1/events?limit=10&limit=20", "limit", "is given more than once"),
        (
            "/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries?limit=1.5",
            "limit",
            "expected a whole number from 1 to 1000",
        ),
        ("/v1/opt-outs?status=closed", "status", "expected one of `open`, `overdue`, `completed`"),
        ("/v1/purposes/analytics/suppressions?format=xml", "format", "expected `csv` or `ndjson`"),
    ] {
        let res = app.get(path).send().await.unwrap();
        let problem = assert_problem(res, 400).await;
        assert_eq!(problem["detail"], format!("{field}: {message}"), "{path}: {problem}");
        assert_eq!(problem["errors"], json!([{"field": field, "message": message}]), "{path}");
        assert_eq!(problem["type"], "https://consentry.dev/problems/invalid-request");
    }
    let res = app.client.delete(app.url("/v1/subjects/user:7?keep_opt_out=maybe")).bearer_auth(&app.token).send().await;
    let problem = assert_problem(res.unwrap(), 400).await;
    assert_eq!(problem["detail"], "keep_opt_out: expected true or false");
}

/// Sends `request` as raw bytes on a new connection; returns what came back until the server
/// closed it.
fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let address = app.address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Issue 10, security 4: what actix-http refuses before the application sees it (RFC 9110
/// §15.5.1 400; RFC 6585 §5 431) came back with an empty body. Every 4xx is a problem body
/// (RFC 9457).
async fn requests_the_http_layer_cannot_read_get_problem_bodies(app: TestApp) {
    let many_headers: Vec<u8> = (0..100).flat_map(|i| format!("X-H{i}: 1\r\n").into_bytes()).collect();
    let query: Vec<u8> = (0..10_000).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&").into_bytes();
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("100 header fields", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n", &many_headers[..], b"\r\n"].concat(), 431),
        ("a malformed request line", b"GET /he\x01lthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("10,000 query parameters", [b"GET /v1/sites?", &query[..], b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat(), 400),
        (
            "a 100 KB path segment",
            [b"GET /v1/subjects/", &vec![b'a'; 100_000][..], b"/events HTTP/1.1\r\nHost: x\r\n\r\n"].concat(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let answer = raw_exchange(&app, &request);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{what}: {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{what}: {head}");
        assert!(head.contains("\r\ncontent-type: application/problem+json\r\n"), "{what}: {head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{what}: {head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        assert_eq!(problem["status"], status, "{what}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
    }
    // answers to requests before a malformed one on the same connection are left as they are
    let answer = raw_exchange(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /he\x01 HTTP/1.1\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("{\"status\":\"ok\"}HTTP/1.1 400 "),
        "{answer}"
    );
    let (_, last) = answer.split_once("}HTTP/1.1 400 ").unwrap();
    let (head, body) = last.split_once("\r\n\r\n").unwrap();
    let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        problem["detail"],
        "the request line or a header field is malformed, or the URL is longer than 65,534 bytes"
    );
    // A request id, as every answer has, in the head and the body.
    let id = problem["request_id"].as_str().unwrap_or_else(|| panic!("no request id: {body}"));
    assert!(head.contains(&format!("\r\nx-request-id: {id}\r\n")), "{head}");
}

/// PostgreSQL text cannot hold U+0000 and SQLite can: both refuse it up front, with a 400 and
/// nothing stored. Data after the JSON object is not JSON (RFC 8259 §2).
async fn nul_characters_and_trailing_data_are_refused_alike_on_both_databases(app: TestApp) {
    let site = app.seed().await;
    let res =
        app.post("/v1/sites", &json!({"name": "a\u{0}b", "origins": ["https://a.example"]})).send().await.unwrap();
    let problem = assert_problem(res, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("NUL"), "{problem}");
    for path in [
        "/v1/sites/%00/config".to_owned(),
        format!("/v1/sites/{site}/config?region=%00"),
        "/v1/opt-outs?status=%00".into(),
    ] {
        let problem = assert_problem(app.get(&path).send().await.unwrap(), 400).await;
        assert!(problem["detail"].as_str().unwrap().contains("NUL"), "{path}: {problem}");
    }
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .body(r#"{"subject": "user:1", "choices": {"analytics": true}, "source": "api"}GARBAGE"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("nothing may follow"), "{problem}");
    let sites: serde_json::Value = app.get("/v1/sites").send().await.unwrap().json().await.unwrap();
    assert_eq!(sites["sites"].as_array().unwrap().len(), 1, "no site with a NUL was stored");
    assert!(app.events_of("user:1").await.is_empty(), "nothing was recorded from the body with trailing data");
}

async fn malformed_json_is_a_problem(app: TestApp) {
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"subject\": ")
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400).await;
    assert_eq!(p["type"], "https://consentry.dev/problems/malformed-body");
    assert!(p["detail"].as_str().unwrap().contains("EOF while parsing"), "{p}");
}

async fn a_wrong_type_names_the_field(app: TestApp) {
    let site = app.seed().await;
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": "yes"}, "policy_revision": "2021-02-01", "source": "banner"});
    let p = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(p["errors"][0]["field"], "choices.analytics");
    assert!(
        p["detail"].as_str().unwrap().starts_with("choices.analytics: invalid type: a string, expected a boolean"),
        "{p}"
    );
    let body = json!({"visitor_id": VISITOR, "choices": {"analytics": true}, "policy_revision": "2021-02-01", "source": "carrier_pigeon"});
    let p = assert_problem(app.visitor_post(&site, &body).send().await.unwrap(), 400).await;
    assert_eq!(p["errors"][0]["field"], "source");
    assert!(p["detail"].as_str().unwrap().contains("unknown variant `carrier_pigeon`"), "{p}");
}

async fn unknown_fields_are_refused_by_name(app: TestApp) {
    let res = app
        .post("/v1/sites", &json!({"name": "x", "origins": ["https://a.example"], "orignis": []}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("unknown field `orignis`"), "{p}");
}

async fn a_missing_field_is_named(app: TestApp) {
    app.seed().await;
    let res = app.record(json!({"subject": "user:1", "source": "api"})).await;
    let p = assert_problem(res, 400).await;
    assert_eq!(p["errors"][0]["field"], "choices", "{p}");
    assert_eq!(p["detail"], "choices: missing field `choices`");
    // A key given twice inside choices is refused, not silently resolved.
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(r#"{"subject":"user:1","source":"api","choices":{"analytics":true,"analytics":false}}"#)
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400).await;
    assert_eq!(p["detail"], "choices: 'analytics' is given twice");
}

async fn oversized_bodies_are_413(app: TestApp) {
    let big = "x".repeat(5 * 1024 * 1024);
    let res = app.post("/v1/sites", &json!({"name": big, "origins": []})).send().await.unwrap();
    let p = assert_problem(res, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("4194304 bytes"), "{p}");
}

async fn non_json_bodies_are_415(app: TestApp) {
    let res = app
        .client
        .post(app.url("/v1/sites"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 415).await;
    assert_eq!(p["detail"], "Content-Type must be application/json (UTF-8, RFC 8259 §8.1), not text/plain");
    let res = app
        .client
        .post(app.url("/v1/sites"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json; charset=utf-16")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415).await;
    let res = app
        .client
        .post(app.url("/v1/sites"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(res, 415).await["detail"],
        "Content-Encoding 'gzip' is not accepted; send the body unencoded"
    );
    // Content-Type given twice (RFC 9110 §5.3: a singleton field), in either order: 400 naming
    // it, and no site is created (the first line used to count).
    for (first, second) in [("application/json", "text/plain"), ("text/plain", "application/json")] {
        let res = app
            .client
            .post(app.url("/v1/sites"))
            .bearer_auth(&app.token)
            .header("content-type", first)
            .header("content-type", second)
            .body(r#"{"name": "Twice", "origins": ["https://twice.example"]}"#)
            .send()
            .await
            .unwrap();
        let p = assert_problem(res, 400).await;
        assert_eq!(p["errors"][0]["field"], "Content-Type", "{first} then {second}: {p}");
        assert_eq!(p["errors"][0]["message"], "is given more than once");
    }
    let sites: serde_json::Value = app.get("/v1/sites").send().await.unwrap().json().await.unwrap();
    assert!(!sites.to_string().contains("Twice"), "{sites}");
}

async fn unknown_routes_are_404_problems(app: TestApp) {
    let p = assert_problem(app.get("/v1/nothing-here").send().await.unwrap(), 404).await;
    assert_eq!(p["detail"], "no route for GET on this path; see /openapi.json");
    // The path is not repeated: it may carry an email (a mistyped route) or a token.
    let p = assert_problem(app.get("/v1/subject/email:ada@example.com/events").send().await.unwrap(), 404).await;
    assert!(!p.to_string().contains("ada@example.com"), "{p}");
    let p = assert_problem(app.get("/v1/purposes/absent").send().await.unwrap(), 404).await;
    assert_eq!(p["detail"], "no purpose 'absent' is defined");
}

async fn bad_identifiers_say_why(app: TestApp) {
    let site = app.seed().await;
    // A visitor id that is an email address (a site passing the wrong value) is not repeated.
    let url = app.url(&format!("/v1/sites/{site}/visitors/ada.secret@example.com/consents"));
    let res = app.client.get(url).header("Origin", ORIGIN).send().await.unwrap();
    let p = assert_problem(res, 400).await;
    assert!(!p.to_string().contains("ada.secret"), "{p}");
    assert_eq!(p["errors"][0]["message"], "is not a hyphenated UUID (36 characters; this one has 22)", "{p}");
    let cases = [
        // Never the address or number itself: error bodies carry no personal data.
        ("ada@example.com", "subject: is not a subject (kind:value): use visitor:<uuid>, user:<id>, email:<address> or phone:<E.164>"),
        ("visitor:42", "subject: the visitor id is not a UUID: visitor ids are hyphenated UUIDs, 36 characters (this one has 2)"),
        // An address in the wrong kind is not repeated either.
        ("visitor:ada@example.com", "subject: the visitor id is not a UUID: visitor ids are hyphenated UUIDs, 36 characters (this one has 15)"),
        ("ada@example.com:1", "subject: is not a subject kind: use visitor, user, email or phone"),
        ("email:not-an-address", "subject: is not an email address: it has no @"),
        ("email:ada.lovelace@localhost", "subject: is not an email address: the domain must be two or more labels of ASCII letters, digits and hyphens (an internationalised domain in its xn-- form)"),
        ("phone:+49 30 1234567", "subject: is not an E.164 phone number (+ and country code, 8 to 15 digits, no spaces)"),
    ];
    for (subject, detail) in cases {
        let res = app.record(json!({"subject": subject, "choices": {"analytics": true}, "source": "api"})).await;
        let p = assert_problem(res, 400).await;
        assert_eq!(p["detail"], detail);
    }
    let res = app
        .post("/v1/consents/check", &json!({"purpose": "analytics", "subjects": ["user:1", "nope"]}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400).await;
    assert_eq!(p["errors"][0]["field"], "subjects[1]");
    let res = app.put_purpose("Bad-Key", json!({})).await;
    let p = assert_problem(res, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("missing field") || p["errors"][0]["field"] == "key", "{p}");
    let res = app.get("/v1/subjects/visitor:nope/consents").send().await.unwrap();
    assert_problem(res, 400).await;
    // Bytes that are not UTF-8 do not become a subject named U+FFFD.
    let res = app.get("/v1/subjects/user:%FF/events").send().await.unwrap();
    assert_problem(res, 400).await;
}

async fn authentication_failures_are_401_problems(app: TestApp) {
    let res = app.client.get(app.url("/v1/purposes")).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"consentry\"");
    let p = assert_problem(res, 401).await;
    assert_eq!(p["detail"], "send Authorization: Bearer <token>");
    let res = app.client.get(app.url("/v1/purposes")).bearer_auth("not.a.jwt").send().await.unwrap();
    assert_eq!(assert_problem(res, 401).await["detail"], "the token is not valid for this installation");
    // Well-formed claims, signed with another installation's key.
    let claims = json!({"sub": "tenant:acme", "tenant": "x", "scopes": ["admin"], "iat": 0, "jti": "x"});
    let key = jsonwebtoken::EncodingKey::from_secret(b"another installation's secret").unwrap();
    let forged = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let res = app.client.get(app.url("/v1/purposes")).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(assert_problem(res, 401).await["detail"], "the token is not valid for this installation");
    // Revoked.
    let (token, id) = app.issue_token("acme", &["consents:read"], None);
    assert_eq!(app.client.get(app.url("/v1/purposes")).bearer_auth(&token).send().await.unwrap().status(), 200);
    let out = app.cli(&["tokens", "revoke", &id]);
    assert!(out.status.success());
    // The CLI is another process: the server learns of the revocation within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let res = app.client.get(app.url("/v1/purposes")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(assert_problem(res, 401).await["detail"], "the token has been revoked");
    // Expired.
    let (token, _) = app.issue_token("acme", &["consents:read"], Some("1s"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = app.client.get(app.url("/v1/purposes")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(assert_problem(res, 401).await["detail"], "the token has expired");
}

async fn missing_scopes_are_403_problems(app: TestApp) {
    app.seed().await;
    let (check_only, _) = app.issue_token("acme", &["consents:check"], None);
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&check_only)
        .json(&json!({"subject": "user:1", "choices": {"analytics": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_problem(res, 403).await["detail"], "this token lacks the scope 'consents:write'");
    let res = app
        .client
        .post(app.url("/v1/sites"))
        .bearer_auth(&check_only)
        .json(&json!({"name": "x", "origins": ["https://a.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_problem(res, 403).await["detail"], "this token lacks the scope 'admin'");
    let res = app.client.get(app.url("/v1/subjects/user:1/events")).bearer_auth(&check_only).send().await.unwrap();
    assert_problem(res, 403).await;
    let res = app
        .client
        .post(app.url("/v1/consents/check"))
        .bearer_auth(&check_only)
        .json(&json!({"purpose": "analytics", "subjects": ["user:1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn check_of_more_than_10000_subjects_is_413(app: TestApp) {
    app.seed().await;
    let subjects: Vec<String> = (0..10_001).map(|i| format!("user:{i}")).collect();
    let res =
        app.post("/v1/consents/check", &json!({"purpose": "analytics", "subjects": subjects})).send().await.unwrap();
    let p = assert_problem(res, 413).await;
    assert_eq!(p["detail"], "subjects: 10001 subjects given; at most 10000 per check");
    let subjects: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let res =
        app.post("/v1/consents/check", &json!({"purpose": "analytics", "subjects": subjects})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 10_000);
    assert_eq!(body["results"][9_999]["subject"], "user:9999");
}

/// RFC 9110 §15.5.6: a 405 names the methods the resource supports in `Allow`.
async fn unsupported_methods_are_405_with_allow(app: TestApp) {
    let res = app.client.delete(app.url("/v1/purposes/analytics")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD, PUT");
    let p = assert_problem(res, 405).await;
    assert_eq!(p["detail"], "DELETE is not allowed on /v1/purposes/{key}; use GET, HEAD, PUT");
    // HEAD is GET without a body.
    let res = app.client.head(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap().is_empty());
    let res = app.client.put(app.url("/v1/sites/pk_x/consents")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "POST, OPTIONS");
    assert_problem(res, 405).await;
    // The API document and its browsable docs are read-only too.
    for path in ["/openapi.json", "/docs", "/docs/index.html"] {
        let res = app.client.post(app.url(path)).send().await.unwrap();
        assert_eq!(res.headers().get("allow").map(|v| v.to_str().unwrap()), Some("GET, HEAD"), "{path}");
        assert_problem(res, 405).await;
    }
    assert_problem(app.client.post(app.url("/openapi.json/x")).send().await.unwrap(), 404).await;
}

async fn the_api_document_and_its_browsable_docs_are_served(app: TestApp) {
    let doc: serde_json::Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(doc == committed, "the server serves the committed document");
    let res = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let page = app.client.get(app.url("/docs/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("swagger-ui-bundle.js"), "the docs page loads its assets from this server");
    let res = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the docs assets are inside the binary, no CDN");
}

/// A body that starts with a UTF-8 byte order mark (U+FEFF, as some Windows tools write) is read
/// as the JSON after it, as RFC 8259 §8.1 allows parsers to do; before, it was refused with
/// serde's "expected value at line 1 column 1", which does not say why.
async fn a_byte_order_mark_before_the_json_is_ignored_rfc_8259_8_1(app: TestApp) {
    app.seed().await;
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(br#"{"subject": "user:bom", "choices": {"analytics": true}, "source": "api"}"#);
    let res = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let state: serde_json::Value =
        app.get("/v1/subjects/user:bom/consents").send().await.unwrap().json().await.unwrap();
    assert_eq!(state["purposes"]["analytics"]["status"], "granted", "{state}");
}
