//! The command line, the example tenant, the OpenAPI document and the deployment files.

use crate::helpers::{fresh_postgres_database, TestApp, ORIGIN};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

crate::backend_tests!(
    tenants_create_prints_a_working_admin_token_and_refuses_duplicates,
    token_scopes_are_checked_by_the_cli,
    the_example_tenant_comes_from_the_fixture_policy,
);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn consentry(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_consentry")).args(args).env("DATABASE_URL", database_url).output().unwrap()
}

async fn tenants_create_prints_a_working_admin_token_and_refuses_duplicates(app: TestApp) {
    let out = app.cli(&["tenants", "create", "initech"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"], "initech");
    let res = app.client.get(app.url("/v1/sites")).bearer_auth(v["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let out = app.cli(&["tenants", "create", "initech"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "error: a tenant 'initech' exists already");
    let out = app.cli(&["tenants", "create", "Not A Slug"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a tenant slug"));
}

async fn token_scopes_are_checked_by_the_cli(app: TestApp) {
    let out = app.cli(&["tokens", "issue", "--tenant", "acme", "--scope", "everything"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'everything' is not a scope"));
    let out = app.cli(&["tokens", "issue", "--tenant", "nobody", "--scope", "admin"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "error: no tenant 'nobody'");
    let out = app.cli(&["tokens", "revoke", "no-such-id"]);
    assert!(!out.status.success());
    let out = app.cli(&["tokens", "issue", "--tenant", "acme", "--scope", "admin", "--ttl", "99999999999d"]);
    assert_eq!(out.status.code(), Some(1), "no panic: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is too long"));
    let out = app.cli(&["tokens", "issue", "--tenant", "acme", "--scope", "admin", "--ttl", "0s"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be at least 1s"));
}

async fn the_example_tenant_comes_from_the_fixture_policy(app: TestApp) {
    let file = repo().join("examples/ntt-cloud-communications/consentry.toml");
    let out = app.cli(&["apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tenant"], "ntt-cloud-communications");
    // SHA-256 of shared/fixtures/privacy-policy-2021-02.txt, the policy as published.
    assert_eq!(
        summary["revisions"],
        serde_json::json!(["privacy 2021-02-01 3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8"])
    );
    let token = summary["token"].as_str().expect("a new tenant's token").to_owned();
    let site_key = summary["sites"]["www.example.com"].as_str().unwrap().to_owned();
    // Applying again changes nothing and prints no new token.
    let again: Value = serde_json::from_slice(&app.cli(&["apply", file.to_str().unwrap()]).stdout).unwrap();
    assert!(again.get("token").is_none());
    assert_eq!(again["sites"]["www.example.com"], site_key.as_str());
    // The config a Californian visitor sees.
    let config: Value = app
        .client
        .get(app.url(&format!("/v1/sites/{site_key}/config?region=US-CA")))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = |key: &str| {
        config["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .map(|p| (p["consent_model"].as_str().unwrap().to_owned(), p["gpc_applies"].as_bool().unwrap()))
    };
    assert_eq!(model("necessary"), Some(("notice_only".into(), false)));
    assert_eq!(model("statistics"), Some(("opt_in".into(), false)));
    assert_eq!(model("social_media"), Some(("opt_in".into(), true)));
    assert_eq!(model("sale_sharing"), Some(("opt_out".into(), true)));
    assert_eq!(model("marketing"), None, "the site's banner presents cookie categories and the CCPA opt-out only");
    let check: Value = app
        .client
        .post(app.url("/v1/consents/check"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"purpose": "marketing", "subjects": ["email:ada@example.com"], "region": "US-CA"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["results"][0]["reason"], "default_opt_out", "US: CAN-SPAM opt-out");
    assert_eq!(config["policies"][0]["sha256"], "3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8");
    let purposes: Value =
        app.client.get(app.url("/v1/purposes")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(purposes["purposes"].as_array().unwrap().len(), 7);
}

#[test]
fn the_example_policy_is_the_fixture() {
    let ours = std::fs::read(repo().join("examples/ntt-cloud-communications/privacy-policy-2021-02.txt")).unwrap();
    let shared = repo().join("../shared/fixtures/privacy-policy-2021-02.txt");
    if let Ok(theirs) = std::fs::read(&shared) {
        assert_eq!(ours, theirs, "examples/ must hold the fixture unchanged");
    }
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&ours)),
        "3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8"
    );
}

#[test]
fn an_unknown_database_scheme_is_a_clear_startup_error() {
    let out = consentry("mysql://root@127.0.0.1/consentry", &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: DATABASE_URL 'mysql://root@127.0.0.1/consentry' has an unknown scheme: use postgres://, postgresql:// or sqlite://<path>"
    );
}

#[test]
fn an_unreachable_postgres_is_a_clear_startup_error_never_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://postgres:secret@127.0.0.1:1/consentry")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/consentry"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "the password is not printed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no SQLite file appears");
}

#[test]
fn the_default_database_is_a_sqlite_file_created_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("data/consentry.db").is_file());
}

#[test]
fn openapi_prints_the_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_consentry")).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/sites",
        "/v1/purposes/{key}",
        "/v1/policies/{policy_key}/revisions",
        "/v1/consents",
        "/v1/consents/check",
        "/v1/subjects/{subject}/consents",
        "/v1/subjects/{subject}/events",
        "/v1/sites/{site_key}/config",
        "/v1/sites/{site_key}/visitors/{visitor_id}/consents",
        "/v1/sites/{site_key}/consents",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
}

/// STYLE.md §9: both migration sets must produce the same tables and columns.
#[test]
fn postgres_and_sqlite_migrations_produce_the_same_tables_and_columns() {
    use diesel::prelude::*;
    #[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
    }
    let Some((pg_url, admin, name)) = fresh_postgres_database() else {
        eprintln!("SKIPPED (PostgreSQL): set CONSENTRY_TEST_POSTGRES_URL to compare the migration sets");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/c.db", dir.path().display());
    for url in [&pg_url, &sqlite_url] {
        assert!(consentry(url, &["migrate"]).status.success());
    }
    let mut pg = diesel::PgConnection::establish(&pg_url).unwrap();
    let mut pg_cols: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut pg)
    .unwrap();
    let mut sqlite = diesel::SqliteConnection::establish(&format!("{}/c.db", dir.path().display())).unwrap();
    let mut sqlite_cols: Vec<Column> = diesel::sql_query(
        "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'",
    )
    .load(&mut sqlite)
    .unwrap();
    drop(pg);
    let mut admin_conn = diesel::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin_conn).unwrap();
    pg_cols.sort();
    sqlite_cols.sort();
    assert!(pg_cols.len() > 40);
    assert_eq!(pg_cols, sqlite_cols);
}

#[test]
fn docker_compose_file_is_valid() {
    let found = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install docker-compose (Debian package) to check docker-compose.yml"
        );
        eprintln!(
            "SKIPPED: docker-compose is not installed (apt-get install docker-compose); tests/run.sh installs it"
        );
        return;
    }
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("postgres"), "{config}");
    assert!(config.contains("DATABASE_URL"), "{config}");
}

#[test]
fn serve_demo_creates_the_example_tenant_once() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/c.db", dir.path().display());
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_consentry"))
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", &url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = crate::helpers::ServerProcess(start());
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        if line == "}" {
            break;
        }
    }
    first.kill_and_collect();
    let summary: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(summary["tenant"], "ntt-cloud-communications");
    assert!(summary["token"].as_str().unwrap().starts_with("eyJ"));
    let mut second = crate::helpers::ServerProcess(start());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = second.kill_and_collect();
    // No second token: only the console's address with a fresh one-time sign-in code.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("eyJ"), "no second token: {stdout}");
    assert!(
        stdout.lines().all(|l| l.starts_with("console: http://127.0.0.1:") && l.contains("/console#code=")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the example tenant exists already"));
}

/// A tool whose output goes to a reader that stops early (`consentry retention run | head`) ends
/// quietly, as Unix tools do (SIGPIPE), instead of panicking with a backtrace ("failed printing
/// to stdout: Broken pipe"; found by a trial).
#[test]
fn a_tool_whose_reader_stops_early_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
}
