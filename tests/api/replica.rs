//! Read replicas (issue 10, Operations item 3): checks, state reads, the change feed and
//! exports served by a real PostgreSQL streaming replica, read-your-writes with the
//! `Consentry-Read-After` token, and the fall back to the primary when the replica is down or
//! lags past `replica.max_lag`.
//!
//! SQLite has no replicas: `a_replica_needs_a_postgres_primary` runs on both backends (SQLite:
//! a replica URL is refused at start). The `streaming::…` tests need PostgreSQL's binaries
//! (`initdb`, `pg_basebackup`, `pg_ctl`; found under /usr/lib/postgresql/*/bin or on PATH)
//! and run when `CONSENTRY_TEST_POSTGRES_URL` is set: each makes its own primary cluster
//! (`initdb`) and a streaming replica of it (`pg_basebackup -R -X stream`), on free ports in
//! a temporary directory, and stops both when it ends (also on panic). A cluster of its own
//! keeps the base backup small (a few MB, about a second) whatever the shared server holds.

use crate::helpers::TestApp;
use consentry::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

crate::backend_tests!(a_replica_needs_a_postgres_primary, read_after_is_read_on_reads_and_ignored_on_writes);

/// SQLite: `DATABASE_REPLICA_URL` is refused at start (a SQLite file has no streaming
/// replica). PostgreSQL: a replica URL that is not PostgreSQL is refused.
async fn a_replica_needs_a_postgres_primary(app: TestApp) {
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".into();
    let sqlite = app.database_url.starts_with("sqlite:");
    settings.database_replica_url =
        Some(if sqlite { "postgres://postgres@127.0.0.1:1/replica".into() } else { "sqlite://replica.db".into() });
    // A SQLite database that does not exist yet is not made before the refusal.
    let dir = tempfile::tempdir().unwrap();
    let unmade = dir.path().join("never.db");
    if sqlite {
        settings.database_url = format!("sqlite://{}", unmade.display());
    }
    let err = match Application::build(settings).await {
        Ok(_) => panic!("a replica URL of the wrong kind was accepted"),
        Err(e) => e.to_string(),
    };
    if sqlite {
        assert!(err.contains("needs a PostgreSQL primary"), "{err}");
        assert!(!unmade.exists(), "the SQLite file was made before the refusal");
    } else {
        assert!(err.contains("is not a PostgreSQL URL") && err.contains("sqlite://replica.db"), "{err}");
    }
}

/// `Consentry-Read-After` only matters on reads: a write (POST, PUT, DELETE) carrying a
/// malformed one succeeds; a read (a GET, or the check, a POST) refuses it with a 400 problem
/// naming the header. Sent twice, or as comma-separated tokens, every token is read (the
/// highest position wins: see `Lsn::latest_of`), so a malformed second one is refused too. No
/// replica is needed: the header is read (and checked) the same without one.
async fn read_after_is_read_on_reads_and_ignored_on_writes(app: TestApp) {
    const BAD: &str = "0/16B374D8";
    const TOKEN: &str = "00000000016b374d";
    const DETAIL: &str = "Consentry-Read-After: is not a token from a write's Consentry-Read-After (16 hexadecimal \
                          digits); send it back as received";
    app.seed().await;
    // Writes ignore it.
    let res = app
        .post(
            "/v1/consents",
            &json!({"subject": ADA, "choices": {"marketing_email": true}, "policy_revision": "2021-02-01", "source": "api"}),
        )
        .header("Consentry-Read-After", BAD)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "POST: {}", res.text().await.unwrap());
    let purpose = json!({"title": "Newsletter", "description": "The newsletter", "kind": "communication",
                         "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false});
    let res = app.put("/v1/purposes/newsletter", &purpose).header("Consentry-Read-After", "").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "PUT: {}", res.text().await.unwrap());
    let (_, token_id) = app.issue_token("acme", &["consents:read"], None);
    let res = app
        .client
        .delete(app.url(&format!("/v1/tokens/{token_id}")))
        .bearer_auth(&app.token)
        .header("Consentry-Read-After", BAD)
        .header("Consentry-Read-After", "zz")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "DELETE: {} {}", res.status(), res.text().await.unwrap());

    // Reads refuse a malformed one: a GET and the check.
    let state = format!("/v1/subjects/{ADA}/consents");
    let res = app.get(&state).header("Consentry-Read-After", BAD).send().await.unwrap();
    let problem = crate::helpers::assert_problem(res, 400).await;
    assert_eq!(problem["detail"], DETAIL, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "Consentry-Read-After");
    let check = json!({"purpose": "marketing_email", "subjects": [ADA]});
    let res = app.post("/v1/consents/check", &check).header("Consentry-Read-After", BAD).send().await.unwrap();
    assert_eq!(crate::helpers::assert_problem(res, 400).await["detail"], DETAIL);
    // A header without any token is not one either.
    let res = app.get(&state).header("Consentry-Read-After", " ").send().await.unwrap();
    let problem = crate::helpers::assert_problem(res, 400).await;
    assert!(problem["detail"].as_str().unwrap().starts_with("Consentry-Read-After: holds no token"), "{problem}");

    // Repeated: each line is read; valid ones (in any order, or joined by commas) are served.
    for lines in [[TOKEN, "00000000000000ff"], ["ff", TOKEN], ["ff, 0a", TOKEN]] {
        let res = app
            .post("/v1/consents/check", &check)
            .header("Consentry-Read-After", lines[0])
            .header("Consentry-Read-After", lines[1])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{lines:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["results"][0]["allowed"], true);
    }
    // A malformed second line is no longer passed over.
    let res =
        app.get(&state).header("Consentry-Read-After", TOKEN).header("Consentry-Read-After", BAD).send().await.unwrap();
    assert_eq!(crate::helpers::assert_problem(res, 400).await["detail"], DETAIL);
}

/// `DATABASE_REPLICA_URL` naming the primary itself (a server that is not in recovery): `serve`
/// starts, and its log says precisely that the replica is no standby and that reads go to the
/// primary, not that it "does not answer". PostgreSQL only (skipped without
/// `CONSENTRY_TEST_POSTGRES_URL`).
#[test]
fn a_replica_url_naming_the_primary_is_logged_as_not_a_standby() {
    use std::io::{BufRead, BufReader};
    let Some((url, admin, name)) = crate::helpers::fresh_postgres_database() else {
        eprintln!("SKIPPED (replica): set CONSENTRY_TEST_POSTGRES_URL to run it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = crate::helpers::ServerProcess(
        Command::new(env!("CARGO_BIN_EXE_consentry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", &url)
            .env("DATABASE_REPLICA_URL", &url)
            .env("CONSENTRY__LOG", "info")
            .env("CONSENTRY__SECRETS__KEY_FILE", dir.path().join("secrets.key"))
            .env("CONSENTRY__RECEIPTS__KEY_FILE", dir.path().join("receipt-keys.json"))
            .env_remove("CONSENTRY_CONFIG")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The JSON log lines (stderr is not a terminal) up to the one saying it listens.
    let mut messages = Vec::new();
    for line in BufReader::new(server.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let entry: Value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"fields": {"message": line}}));
        let message = entry["fields"]["message"].as_str().unwrap_or_default().to_owned();
        let listening = message.starts_with("consentry listening on");
        messages.push((entry["level"].as_str().unwrap_or_default().to_owned(), message));
        if listening {
            break;
        }
    }
    server.kill_and_collect();
    crate::helpers::drop_database(&admin, &name);
    assert!(messages.last().is_some_and(|(_, m)| m.starts_with("consentry listening on")), "{messages:?}");
    let about_replica: Vec<&(String, String)> = messages.iter().filter(|(_, m)| m.contains("replica")).collect();
    assert_eq!(
        about_replica,
        [&(
            "ERROR".to_owned(),
            "the configured read replica (DATABASE_REPLICA_URL) is not a standby: pg_is_in_recovery() is false \
             there, so it is not a streaming replica of the primary (does the URL name the primary itself?); reads \
             go to the primary"
                .to_owned()
        )],
        "{messages:?}"
    );
}

/// PostgreSQL's programs, from the newest /usr/lib/postgresql/<n>/bin that has them, else PATH.
fn pg_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.into_iter().rev().map(|bin| bin.join(program)).find(|p| p.exists()).unwrap_or_else(|| program.into())
}

/// Runs a PostgreSQL program as the `postgres` user when the tests run as root (PostgreSQL
/// refuses to run as root), else as the current user.
fn pg_command(program: &str) -> Command {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(program));
        c
    } else {
        Command::new(pg_bin(program))
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A PostgreSQL cluster of one test, stopped (immediately) and deleted when dropped.
struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(&self) {
        let mut c = pg_command("pg_ctl");
        c.arg("-D").arg(&self.data).arg("-l").arg(self.data.with_extension("log"));
        c.args(["-o", &format!("-p {}", self.port), "-w", "-t", "30", "start"]);
        run(c, "pg_ctl start");
    }

    fn stop(&self) {
        let mut c = pg_command("pg_ctl");
        c.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
        let _ = c.output();
    }

    /// Stops (`true`) or resumes every process of the cluster (SIGSTOP/SIGCONT): a host that
    /// stops answering without refusing connections, unlike a stopped server.
    fn freeze(&self, frozen: bool) {
        let Ok(pid_file) = std::fs::read_to_string(self.data.join("postmaster.pid")) else { return };
        let Some(postmaster) = pid_file.lines().next().map(str::trim).filter(|p| !p.is_empty()) else { return };
        let children = Command::new("pgrep").args(["-P", postmaster]).output().map(|o| o.stdout).unwrap_or_default();
        let mut pids: Vec<String> = String::from_utf8_lossy(&children).split_whitespace().map(str::to_owned).collect();
        pids.push(postmaster.to_owned());
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let _ = Command::new("kill").arg(signal).args(&pids).status();
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn sql(&self, database: &str, sql: &str) -> String {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            v: String,
        }
        let mut conn = diesel::PgConnection::establish(&self.url(database)).expect("the cluster answers");
        diesel::sql_query(format!("SELECT ({sql})::text AS v")).get_result::<Row>(&mut conn).expect("the query runs").v
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.freeze(false);
        self.stop();
    }
}

/// A primary and a streaming replica of it, in a temporary directory.
struct Pair {
    // Dropped in order: the replica, the primary, then the directory.
    replica: Cluster,
    primary: Cluster,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("consentry-replica-").tempdir().expect("a temporary directory");
        let (primary_dir, replica_dir) = (dir.path().join("primary"), dir.path().join("replica"));
        make_owned_by_postgres(dir.path());
        let mut c = pg_command("initdb");
        c.arg("-D").arg(&primary_dir).args(["-A", "trust", "-U", "postgres", "-N", "--no-instructions"]);
        run(c, "initdb");
        // initdb's pg_hba.conf lets 127.0.0.1 replicate with trust; wal_level is `replica`.
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n\
             shared_buffers = 16MB\nmax_connections = 40\nmax_wal_senders = 4\n",
            dir.path().display()
        );
        append(&primary_dir.join("postgresql.conf"), &conf);
        let primary = Cluster { data: primary_dir, port: free_port() };
        primary.start();
        let mut c = pg_command("pg_basebackup");
        c.args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-D"]);
        c.arg(&replica_dir).args(["-R", "-X", "stream", "-c", "fast"]);
        run(c, "pg_basebackup");
        let replica = Cluster { data: replica_dir, port: free_port() };
        replica.start();
        assert_eq!(replica.sql("postgres", "pg_is_in_recovery()"), "true", "the replica is a standby");
        Self { replica, primary, _dir: dir }
    }
}

fn make_owned_by_postgres(dir: &Path) {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        let mut c = Command::new("chown");
        c.arg("postgres:postgres").arg(dir);
        run(c, "chown");
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("postgresql.conf");
    f.write_all(text.as_bytes()).expect("postgresql.conf written");
    make_owned_by_postgres(path);
}

/// An app whose primary is a fresh database of its own cluster and whose replica is that
/// database on the cluster's streaming replica (`replica.max_lag` 300 ms, `/metrics` on), the
/// clusters (stopped when dropped, so also when the test panics) and the database's name.
/// `None` (the test is skipped) when `CONSENTRY_TEST_POSTGRES_URL` is unset.
async fn replica_app() -> Option<(TestApp, Pair, String)> {
    if std::env::var("CONSENTRY_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("SKIPPED (replica): set CONSENTRY_TEST_POSTGRES_URL to run the streaming-replica tests");
        return None;
    }
    let pair = tokio::task::spawn_blocking(Pair::start).await.expect("the clusters start");
    let (primary_url, replica_port) = (pair.primary.url("postgres"), pair.replica.port);
    let app = TestApp::spawn_postgres(&primary_url, |s| {
        let database = s.database_url.rsplit_once('/').map(|(_, d)| d.to_owned()).unwrap();
        s.database_replica_url = Some(format!("postgres://postgres@127.0.0.1:{replica_port}/{database}"));
        s.replica.max_lag = Duration::from_millis(300);
        s.metrics.token = Some(consentry::config::Secret::new("metrics-token"));
    })
    .await;
    let database = app.database_url.rsplit_once('/').map(|(_, d)| d.to_owned()).unwrap();
    Some((app, pair, database))
}

fn served_by(res: &Response) -> String {
    res.headers().get("consentry-served-by").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned()
}

fn read_after(res: &Response) -> String {
    res.headers()
        .get("consentry-read-after")
        .and_then(|v| v.to_str().ok())
        .expect("a write's answer carries Consentry-Read-After")
        .to_owned()
}

const ADA: &str = "email:ada@example.com";

/// Records `granted` for `marketing_email` of Ada; returns the write's Consentry-Read-After.
async fn record_ada(app: &TestApp, granted: bool) -> String {
    let res = app
        .record(json!({"subject": ADA, "choices": {"marketing_email": granted}, "policy_revision": "2021-02-01", "source": "api"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    read_after(&res)
}

/// `POST /v1/consents/check` of Ada for `marketing_email`, with `token` as Consentry-Read-After:
/// (allowed, served by).
async fn check_ada(app: &TestApp, token: Option<&str>) -> (bool, String) {
    let mut req = app.post("/v1/consents/check", &json!({"purpose": "marketing_email", "subjects": [ADA]}));
    if let Some(token) = token {
        req = req.header("Consentry-Read-After", token);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let by = served_by(&res);
    let body: Value = res.json().await.unwrap();
    (body["results"][0]["allowed"].as_bool().unwrap(), by)
}

/// Checks until the replica serves the check and answers `allowed` (a read without a token may
/// be served by a replica up to `replica.max_lag` behind, which may not have the latest write
/// yet); fails after 10 s.
async fn until_replica_serves(app: &TestApp, allowed: bool) {
    let started = Instant::now();
    loop {
        let (answer, by) = check_ada(app, None).await;
        if by == "replica" && answer == allowed {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never served a check answering {allowed} (last: {answer}, served by {by})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod streaming {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_state_reads_feed_and_exports_are_served_by_the_replica() {
        let Some((app, pair, database)) = replica_app().await else { return };
        {
            let site = app.seed().await;
            record_ada(&app, true).await;
            until_replica_serves(&app, true).await;
            // The replica really is a standby of the app's database, and it holds the event.
            assert_eq!(pair.replica.sql(&database, "pg_is_in_recovery()"), "true");
            assert_eq!(pair.replica.sql(&database, "(SELECT count(*) FROM consent_events)"), "1");
            // A bulk check (two subjects) and the state read.
            let res = app
                .post("/v1/consents/check", &json!({"purpose": "marketing_email", "subjects": [ADA, "user:nobody"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(served_by(&res), "replica");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["results"][0]["allowed"], true);
            assert_eq!(body["results"][1]["allowed"], false);
            let res = app.get(&format!("/v1/subjects/{ADA}/consents")).send().await.unwrap();
            assert_eq!(served_by(&res), "replica");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["purposes"]["marketing_email"]["status"], "granted");
            // The change feed (its horizon read on the standby) and the export.
            let res = app.get("/v1/events").send().await.unwrap();
            assert_eq!(served_by(&res), "replica");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
            assert!(body["events"][0].to_string().contains("marketing_email"), "{body}");
            let res = app.get(&format!("/v1/subjects/{ADA}/export")).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(served_by(&res), "replica");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
            // What is not routed stays on the primary and says nothing; so does the SDK's visitor
            // read, which cannot carry a token (it must see the visitor's own last choice).
            let res = app.get("/v1/purposes").send().await.unwrap();
            assert_eq!(served_by(&res), "(none)");
            let visitor = crate::helpers::VISITOR;
            app.record_visitor(&site, visitor, json!({"marketing_email": true})).await;
            let res = app
                .client
                .get(app.url(&format!("/v1/sites/{site}/visitors/{visitor}/consents")))
                .header("Origin", crate::helpers::ORIGIN)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(served_by(&res), "(none)");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["purposes"]["marketing_email"]["status"], "granted", "the visitor's own choice, at once");
            // The metric counts reads by target.
            let metrics = app
                .client
                .get(app.url("/metrics"))
                .bearer_auth("metrics-token")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let replica_reads = metrics
                .lines()
                .find_map(|l| l.strip_prefix("consentry_reads_total{target=\"replica\"} "))
                .and_then(|n| n.parse::<u64>().ok())
                .expect("consentry_reads_total counts the replica's reads");
            assert!(replica_reads >= 5, "{replica_reads}");
            assert!(metrics.contains("consentry_replica_lag_seconds "), "the lag is exported");
        }
        app.stop().await;
        drop(pair);
    }

    /// Read-your-writes: a read that sends back the write's Consentry-Read-After sees the
    /// write, whichever database serves it (50 writes, each read at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_with_the_writes_token_sees_the_write() {
        let Some((app, pair, _)) = replica_app().await else { return };
        {
            app.seed().await;
            record_ada(&app, false).await;
            until_replica_serves(&app, false).await;
            let (mut by_replica, mut by_primary) = (0, 0);
            for i in 0..50 {
                let granted = i % 2 == 0;
                let token = record_ada(&app, granted).await;
                assert_eq!(token.len(), 16, "{token}");
                let (allowed, by) = check_ada(&app, Some(&token)).await;
                assert_eq!(allowed, granted, "write {i}: the read after it (served by {by}) missed it");
                match by.as_str() {
                    "replica" => by_replica += 1,
                    "primary" => by_primary += 1,
                    other => panic!("served by {other}"),
                }
            }
            eprintln!(
                "read-your-writes: 50 of 50 correct; served by the replica {by_replica}, the primary {by_primary}"
            );
            // Once the replica has replayed the write, the same token is served by the replica.
            let token = record_ada(&app, true).await;
            let started = Instant::now();
            loop {
                let (allowed, by) = check_ada(&app, Some(&token)).await;
                assert!(allowed);
                if by == "replica" {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(5), "the replica never caught up with the token");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Sent with the tokens of two writes, in either order, a read sees the later write:
            // the highest position counts, not the first or the last line.
            // (Ada's state is granted here: each pair denies, then grants again.)
            for i in 0..10 {
                let earlier = record_ada(&app, false).await;
                let later = record_ada(&app, true).await;
                let (first, second) = if i % 2 == 0 { (&earlier, &later) } else { (&later, &earlier) };
                let res = app
                    .post("/v1/consents/check", &json!({"purpose": "marketing_email", "subjects": [ADA]}))
                    .header("Consentry-Read-After", first.as_str())
                    .header("Consentry-Read-After", second.as_str())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                let by = served_by(&res);
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["results"][0]["allowed"], true, "pair {i} (served by {by}) missed the later write");
            }
            // A malformed token is refused, naming the header.
            let res = app
                .post("/v1/consents/check", &json!({"purpose": "marketing_email", "subjects": [ADA]}))
                .header("Consentry-Read-After", "0/16B374D8")
                .send()
                .await
                .unwrap();
            let problem = crate::helpers::assert_problem(res, 400).await;
            assert!(problem["detail"].as_str().unwrap().contains("Consentry-Read-After"), "{problem}");
        }
        app.stop().await;
        drop(pair);
    }

    /// The replica stops: reads are answered by the primary at once, correctly, without a 5xx;
    /// when it is back, it serves again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_is_down_falls_back_to_the_primary() {
        let Some((app, pair, _)) = replica_app().await else { return };
        {
            app.seed().await;
            record_ada(&app, true).await;
            until_replica_serves(&app, true).await;
            pair.replica.stop();
            let mut slowest = Duration::ZERO;
            for i in 0..20 {
                let started = Instant::now();
                let (allowed, by) = check_ada(&app, None).await;
                slowest = slowest.max(started.elapsed());
                assert!(allowed, "check {i}");
                assert_eq!(by, "primary", "check {i}");
                let res = app.get(&format!("/v1/subjects/{ADA}/consents")).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "state read {i}");
                assert_eq!(served_by(&res), "primary");
            }
            eprintln!("replica down: 20 checks and 20 state reads from the primary, slowest check {slowest:?}");
            assert!(slowest < Duration::from_secs(1), "{slowest:?}");
            // Written while the replica is down, read once it is back.
            record_ada(&app, false).await;
            pair.replica.start();
            // The write made while the replica was down reaches it once it is back.
            until_replica_serves(&app, false).await;
        }
        app.stop().await;
        drop(pair);
    }

    /// A replica that stops answering without refusing (its processes frozen: a hung host, a
    /// partition) serves nothing once its probe has had no answer for `ANSWER_WITHIN` (1 s):
    /// reads then go to the primary at once, none waits for the replica's connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_stops_answering_falls_back_to_the_primary() {
        let Some((app, pair, _)) = replica_app().await else { return };
        {
            app.seed().await;
            record_ada(&app, true).await;
            until_replica_serves(&app, true).await;
            pair.replica.freeze(true);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut slowest = Duration::ZERO;
            for i in 0..20 {
                let started = Instant::now();
                let (allowed, by) = check_ada(&app, None).await;
                let res = app.get(&format!("/v1/subjects/{ADA}/events")).send().await.unwrap();
                slowest = slowest.max(started.elapsed());
                assert!(allowed, "check {i}");
                assert_eq!(by, "primary", "check {i}");
                assert_eq!(res.status(), StatusCode::OK, "events {i}");
                assert_eq!(served_by(&res), "primary", "events {i}");
            }
            eprintln!("replica frozen: 20 checks and 20 event reads from the primary, slowest pair {slowest:?}");
            assert!(slowest < Duration::from_secs(2), "a read waited for the frozen replica: {slowest:?}");
            pair.replica.freeze(false);
            until_replica_serves(&app, true).await;
        }
        app.stop().await;
        drop(pair);
    }

    /// A replica whose replay is paused lags past `replica.max_lag` (300 ms) once the primary
    /// writes: reads go to the primary (and see the write without any token) until it resumes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_lagging_past_the_bound_falls_back_to_the_primary() {
        let Some((app, pair, database)) = replica_app().await else { return };
        {
            app.seed().await;
            record_ada(&app, true).await;
            until_replica_serves(&app, true).await;
            pair.replica.sql(&database, "SELECT 'paused' FROM (SELECT pg_wal_replay_pause()) p");
            record_ada(&app, false).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
            for i in 0..10 {
                let (allowed, by) = check_ada(&app, None).await;
                assert_eq!(by, "primary", "check {i}: a replica 700 ms behind served it");
                assert!(!allowed, "check {i}");
            }
            // The replica still shows the old value: it was really behind.
            assert_eq!(
                pair.replica.sql(&database, "(SELECT count(*) FROM consent_events)"),
                "1",
                "the paused replica lacks the second event"
            );
            pair.replica.sql(&database, "SELECT 'resumed' FROM (SELECT pg_wal_replay_resume()) p");
            // After resuming, the replica catches up and serves the new value.
            until_replica_serves(&app, false).await;
        }
        app.stop().await;
        drop(pair);
    }
}
