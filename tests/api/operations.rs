//! Operations under faults: instances started together, schemas newer than the binary, start
//! without migrating, database errors and outages answered with 503 at once, durability
//! settings, what the logs and error bodies may carry, and the container health check.

use crate::helpers::{assert_problem, drop_database, fresh_postgres_database, Backend, TestApp};
use consentry::startup::Application;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `#[test]` of `$run(Backend)` on each backend, for tests that need a fresh database of their
/// own rather than a running app.
macro_rules! on_each_backend {
    ($run:ident: $sqlite:ident, $postgres:ident) => {
        #[test]
        fn $sqlite() {
            $run(Backend::Sqlite)
        }

        #[test]
        fn $postgres() {
            $run(Backend::Postgres)
        }
    };
}

crate::backend_tests!(
    a_migration_the_binary_does_not_know_stops_start_up_naming_it,
    logs_carry_no_identifier_or_token_and_every_line_is_json_with_the_request_id,
    the_health_check_asks_the_running_service,
    a_stop_signal_drains_before_the_listener_closes,
    the_files_that_hold_data_and_keys_are_readable_by_their_owner_only,
    a_low_limit_on_open_files_is_raised_to_the_hard_limit_at_start,
    a_limit_on_open_files_too_low_to_serve_is_refused_with_the_reason,
    every_indexed_text_column_compares_byte_by_byte,
    a_statement_prepared_before_a_schema_change_never_answers_500_and_is_prepared_again,
    configuration_reads_prepared_before_a_schema_change_recover_within_a_few_requests,
);

/// Runs `sql` on the database at `url` (either backend), outside the server.
fn exec_sql(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        diesel::PgConnection::establish(url).unwrap().batch_execute(sql).unwrap();
    } else {
        let path = url.trim_start_matches("sqlite://");
        diesel::SqliteConnection::establish(path).unwrap().batch_execute(sql).unwrap();
    }
}

/// (URL, what to drop afterwards, temp dir to keep).
type Fresh = (String, Option<(String, String)>, tempfile::TempDir);

/// A fresh, empty database of `backend`: (URL, what to drop afterwards, temp dir to keep).
fn fresh(backend: Backend) -> Option<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => Some((format!("sqlite://{}/consentry.db", dir.path().display()), None, dir)),
        Backend::Postgres => {
            let Some((url, admin, name)) = fresh_postgres_database() else {
                eprintln!("SKIPPED (PostgreSQL): set CONSENTRY_TEST_POSTGRES_URL to run the PostgreSQL variant");
                return None;
            };
            Some((url, Some((admin, name)), dir))
        }
    }
}

fn settings_for(url: &str) -> consentry::config::Settings {
    consentry::config::Settings {
        database_url: url.to_owned(),
        listen: "127.0.0.1:0".into(),
        max_body_bytes: 1 << 20,
        public_url: None,
        receipts: Default::default(),
        secrets: Default::default(),
        pool_size: 2,
        workers: Some(1),
        writers: None,
        readers: None,
        holidays: Vec::new(),
        log: "warn".into(),
        migrate: true,
        sqlite_synchronous: Default::default(),
        shutdown_grace: std::time::Duration::from_secs(1),
        webhooks: Default::default(),
        limits: Default::default(),
        metrics: Default::default(),
        retention: Default::default(),
        max_import_bytes: 1 << 20,
        database_replica_url: None,
        replica: Default::default(),
    }
}

/// Issue #10, faults 1: instances started at the same moment on a fresh database all start
/// (PostgreSQL: migrations under an advisory lock; SQLite: under the write lock). Before, one
/// died with a duplicate key in `pg_type`.
fn instances_started_together_on_a_fresh_database_all_start(backend: Backend) {
    for round in 0..3 {
        let Some((url, pg, _dir)) = fresh(backend) else { return };
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (url, barrier) = (url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    consentry::db::connect(&url, 1).map(drop).map_err(|e| e.to_string())
                })
            })
            .collect();
        let outcomes: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
        if let Some((admin, name)) = pg {
            drop_database(&admin, &name);
        }
        for outcome in outcomes {
            assert!(outcome.is_ok(), "round {round}: an instance failed to start: {outcome:?}");
        }
    }
}

on_each_backend!(instances_started_together_on_a_fresh_database_all_start: sqlite_instances_started_together_on_a_fresh_database_all_start, postgres_instances_started_together_on_a_fresh_database_all_start);

/// `serve` says what it migrates before it serves: how many migrations, then each one by name
/// as it is applied (some rebuild indexes for a minute or more on a large ledger; the log was
/// silent until "listening"), and nothing when none is pending.
fn serve_logs_the_migrations_it_applies(backend: Backend) {
    let Some((url, pg, dir)) = fresh(backend) else { return };
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let serve_once = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join(format!("serve-{port}.log"));
        let mut child = crate::helpers::ServerProcess(
            std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .current_dir(dir.path())
                .env("DATABASE_URL", &url)
                .env("CONSENTRY__LOG", "info")
                .env_remove("CONSENTRY_CONFIG")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains("consentry listening") {
                break;
            }
            assert!(child.0.try_wait().unwrap().is_none(), "serve ended: {said}");
            assert!(start.elapsed() < Duration::from_secs(30), "serve did not start: {said}");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(child);
        std::fs::read_to_string(&log).unwrap()
    };
    let first = serve_once();
    assert!(first.contains(&format!("applying {} database migrations", names.len())), "{first}");
    let lines: Vec<&str> = first.lines().collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let mut last = at("applying ").unwrap();
    for name in &names {
        let applied =
            at(&format!("\"applied migration {name}\"")).unwrap_or_else(|| panic!("{name} not logged: {first}"));
        assert!(applied > last, "{name} out of order: {first}");
        last = applied;
    }
    assert!(at("consentry listening").unwrap() > last, "{first}");
    let second = serve_once();
    assert!(!second.contains("applying") && !second.contains("applied migration"), "{second}");
    if let Some((admin, name)) = pg {
        drop_database(&admin, &name);
    }

    // `consentry migrate` says the same (it said only "migrated <url>", whatever it applied).
    let Some((url, pg, dir)) = fresh(backend) else { return };
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
            .arg("migrate")
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .env("CONSENTRY__LOG", "info")
            .env_remove("CONSENTRY_CONFIG")
            .output()
            .unwrap()
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("applying {} database migrations", names.len())), "{said}");
    assert!(names.iter().all(|name| said.contains(&format!("applied migration {name}"))), "{said}");
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !said.contains("applied migration"), "{said}");
    if let Some((admin, name)) = pg {
        drop_database(&admin, &name);
    }
}

on_each_backend!(serve_logs_the_migrations_it_applies: sqlite_serve_logs_the_migrations_it_applies, postgres_serve_logs_the_migrations_it_applies);

/// Issue #10, faults 2: a database migrated by a newer release (a migration row this binary does
/// not know) is refused at start, naming the migration; before, the server served as if nothing
/// were wrong.
async fn a_migration_the_binary_does_not_know_stops_start_up_naming_it(app: TestApp) {
    exec_sql(&app.database_url, "INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000001')");
    let out = app.cli(&["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrate accepted an unknown migration");
    assert!(stderr.contains("20991231000001") && stderr.contains("does not know"), "{stderr}");
    for migrate in [true, false] {
        let mut settings = app.settings.clone();
        settings.migrate = migrate;
        let err = Application::build(settings).await.err().expect("start-up refused").to_string();
        assert!(err.contains("20991231000001"), "{err}");
    }
}

/// Issue #10, faults 3: with `migrate = false` (`serve --no-migrate`) a database without the
/// schema is refused with the command to run; `consentry migrate` runs them (whatever the
/// setting), and then the server starts without migrating.
fn start_without_migrating(backend: Backend) {
    let Some((url, pg, dir)) = fresh(backend) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut settings = settings_for(&url);
    settings.migrate = false;
    let refused = runtime.block_on(Application::build(settings.clone())).err().expect("refused").to_string();
    assert!(refused.contains("consentry migrate"), "{refused}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("CONSENTRY__MIGRATE", "false")
        // The key that seals secrets: the one the in-process server will use.
        .env(
            "CONSENTRY__SECRETS__KEY_FILE",
            std::env::current_dir().unwrap().join(consentry::secrets::key_file_path(&settings)),
        )
        .env_remove("CONSENTRY_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "consentry migrate: {}", String::from_utf8_lossy(&out.stderr));
    let started = runtime.block_on(Application::build(settings));
    assert!(started.is_ok(), "{:?}", started.err());
    drop(started);
    drop(runtime);
    if let Some((admin, name)) = pg {
        drop_database(&admin, &name);
    }
}

on_each_backend!(start_without_migrating: sqlite_serve_without_migrating_needs_consentry_migrate_first, postgres_serve_without_migrating_needs_consentry_migrate_first);

/// The test database's name and the admin URL of its server.
fn pg_names(app: &TestApp) -> (String, String) {
    let admin = std::env::var("CONSENTRY_TEST_POSTGRES_URL").unwrap();
    let name = app.database_url.rsplit('/').next().unwrap().to_owned();
    (admin, name)
}

/// Issue #10, faults 3, 4 and 5 (PostgreSQL): on a read-only database (a replica, a failover
/// under way) the server starts without migrating and serves reads; a write answers 503 with
/// `Retry-After` (before: 500), and `/readyz` is not ready (before: 200). Migrating at start is
/// refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_database_serves_reads_and_answers_writes_with_503() {
    crate::helpers::run_test(Backend::Postgres, |mut app: TestApp| async move {
        app.seed().await;
        let (admin, name) = pg_names(&app);
        exec_sql(&admin, &format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"));
        let mut settings = app.settings.clone();
        settings.migrate = true;
        assert!(Application::build(settings).await.is_err(), "migrating a read-only database is refused");
        app.restart(|s| s.migrate = false).await;
        let res = app.get("/v1/purposes").send().await.unwrap();
        assert_eq!(res.status(), 200, "reads are served");
        let res = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert!(res.headers().contains_key("retry-after"));
        let problem = assert_problem(res, 503).await;
        assert!(problem["request_id"].is_string(), "{problem}");
        let res = app.record(json!({"subject": "user:ro", "choices": {"analytics": true}, "source": "api"})).await;
        assert!(res.headers().contains_key("retry-after"));
        assert_problem(res, 503).await;
        exec_sql(&admin, &format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = off"));
    })
    .await
}

/// Issue #10, faults 4 (PostgreSQL): every connection of the server ended by an administrator
/// (`pg_terminate_backend`). No request answers 500 (before: `500 internal error`); each is
/// served, or answers 503 with `Retry-After`; and within a second all are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_ended_by_an_administrator_never_give_500() {
    crate::helpers::run_test(Backend::Postgres, |app: TestApp| async move {
        app.seed().await;
        for i in 0..4 {
            let res = app.record(json!({"subject": format!("user:t{i}"), "choices": {"analytics": true}, "source": "api"})).await;
            assert_eq!(res.status(), 201);
        }
        let (admin, name) = pg_names(&app);
        exec_sql(
            &admin,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
        );
        let mut statuses = Vec::new();
        for i in 0..12 {
            let res = if i % 2 == 0 {
                app.record(json!({"subject": format!("user:t{i}"), "choices": {"analytics": false}, "source": "api"})).await
            } else {
                app.get("/v1/subjects/user:t1/events").send().await.unwrap()
            };
            let status = res.status().as_u16();
            if status == 503 {
                assert!(res.headers().contains_key("retry-after"), "503 without Retry-After");
                assert_problem(res, 503).await;
            }
            statuses.push(status);
        }
        assert!(statuses.iter().all(|s| matches!(s, 200 | 201 | 503)), "{statuses:?}");
        assert!(statuses[6..].iter().all(|s| matches!(s, 200 | 201)), "served again: {statuses:?}");
    })
    .await
}

/// A read whose connection an administrator ended runs again on another connection instead of
/// answering 503: with every connection of the server ended, the reads that follow (subject
/// events, the change feed, states, checks) all answer 200. Before, the first read on each dead connection
/// answered 503 (a trial: 7 of 15,709 reads at a `pg_terminate_backend` under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_read_whose_connection_was_ended_is_read_again_not_answered_503() {
    crate::helpers::run_test(Backend::Postgres, |app: TestApp| async move {
        app.seed().await;
        for i in 0..4 {
            let res = app.record(json!({"subject": format!("user:r{i}"), "choices": {"analytics": true}, "source": "api"})).await;
            assert_eq!(res.status(), 201);
        }
        // Every pooled connection busy once, so that each has been opened.
        let warm = (0..16).map(|i| app.get(&format!("/v1/subjects/user:r{}/events", i % 4)).send());
        assert!(futures_util::future::join_all(warm).await.iter().all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
        let (admin, name) = pg_names(&app);
        exec_sql(
            &admin,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
        );
        // At once, so that reads meet dead connections before anything else finds them: subject
        // events and the feed (`read_db`), state reads and checks (the grouped reader).
        let reads = (0..16).map(|i| match i % 4 {
            0 => app.get(&format!("/v1/subjects/user:r{}/events", i % 3)).send(),
            1 => app.get("/v1/events?limit=10").send(),
            2 => app.get(&format!("/v1/subjects/user:r{}/consents", i % 3)).send(),
            _ => app.post("/v1/consents/check", &json!({"purpose": "analytics", "subjects": [format!("user:r{}", i % 3)]})).send(),
        });
        let statuses: Vec<u16> =
            futures_util::future::join_all(reads).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    })
    .await
}

/// While the database cannot be reached every request answers 503, and the log says so once a
/// second with a count (`also_answered_503`), at WARN: a passing condition. r2d2's failed
/// connections are warnings on the same terms. Before, each 503 was an ERROR line of its own
/// and r2d2 added one for each failed connection (a trial: 7,363 lines in 3 seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_outage_is_logged_once_a_second_not_once_a_request() {
    crate::helpers::run_test(Backend::Postgres, |app: TestApp| async move {
        app.seed().await;
        let res = app.record(json!({"subject": "user:o1", "choices": {"analytics": true}, "source": "api"})).await;
        assert_eq!(res.status(), 201);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = app.serve_command(port);
        cmd.stderr(std::fs::File::create(&log).unwrap()).env("CONSENTRY__LOG", "info");
        let _server = crate::helpers::ServerProcess(cmd.spawn().unwrap());
        let base = format!("http://127.0.0.1:{port}");
        let read = || app.client.get(format!("{base}/v1/subjects/user:o1/events")).bearer_auth(&app.token).send();
        let start = Instant::now();
        while !read().await.is_ok_and(|r| r.status() == 200) {
            assert!(start.elapsed() < Duration::from_secs(10), "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (admin, name) = pg_names(&app);
        exec_sql(&admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"));
        exec_sql(
            &admin,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
        );
        let outage = Instant::now();
        let mut unavailable = 0;
        let mut sent = 0;
        // Past a second: the second line counts what the first second held back.
        while sent < 400 || outage.elapsed() < Duration::from_millis(2500) {
            let statuses = futures_util::future::join_all((0..20).map(|_| read())).await;
            unavailable += statuses.iter().filter(|r| r.as_ref().is_ok_and(|r| r.status() == 503)).count();
            sent += 20;
        }
        let seconds = outage.elapsed().as_secs();
        exec_sql(&admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
        let start = Instant::now();
        while !read().await.is_ok_and(|r| r.status() == 200) {
            assert!(start.elapsed() < Duration::from_secs(10), "not served again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(unavailable * 2 >= sent, "only {unavailable} of {sent} answered 503");
        let said = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = said.lines().filter(|l| l.contains("request answered 503")).collect();
        assert!(!lines.is_empty() && lines.len() as u64 <= seconds + 2, "{} lines in {seconds} s: {said}", lines.len());
        assert!(lines.iter().all(|l| l.contains(r#""level":"WARN""#)), "{lines:?}");
        assert!(lines.iter().any(|l| !l.contains(r#""also_answered_503":0"#)), "no count of the rest: {lines:?}");
        let errors: Vec<&str> =
            said.lines().filter(|l| l.contains(r#""level":"ERROR""#) && l.contains(r#""target":"r2d2""#)).collect();
        assert!(errors.is_empty(), "{errors:?}");
    })
    .await
}

/// A statement that PostgreSQL cancels (an administrator's `pg_cancel_backend`, SQLSTATE 57014;
/// `statement_timeout` and `lock_timeout` raise the same) answers 503 with `Retry-After`, not
/// 500 (before: `500 internal error`), for a single check read in a group and for a bulk check;
/// once nothing cancels them, both are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statements_cancelled_by_an_administrator_answer_503() {
    crate::helpers::run_test(Backend::Postgres, |app: TestApp| async move {
        app.seed().await;
        let res = app.record(json!({"subject": "user:c0", "choices": {"analytics": true}, "source": "api"})).await;
        assert_eq!(res.status(), 201);
        let (admin, name) = pg_names(&app);
        // Reads of consent_states wait behind this lock until they are cancelled.
        let mut locker = diesel::PgConnection::establish(&app.database_url).unwrap();
        locker.batch_execute("BEGIN; LOCK TABLE consent_states IN ACCESS EXCLUSIVE MODE").unwrap();
        for subjects in [vec!["user:c0"], vec!["user:c0", "user:c1"]] {
            let check = app.post("/v1/consents/check", &json!({"purpose": "analytics", "subjects": subjects})).send();
            tokio::pin!(check);
            let started = Instant::now();
            let res = loop {
                tokio::select! {
                    res = &mut check => break res.unwrap(),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        assert!(started.elapsed() < Duration::from_secs(20), "the check never answered");
                        exec_sql(&admin, &format!(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' \
                             AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                        ));
                    }
                }
            };
            assert_eq!(res.status(), 503, "{subjects:?}");
            assert!(res.headers().contains_key("retry-after"), "503 without Retry-After");
            assert_problem(res, 503).await;
        }
        locker.batch_execute("ROLLBACK").unwrap();
        for subjects in [vec!["user:c0"], vec!["user:c0", "user:c1"]] {
            let results = app.check("analytics", &subjects).await;
            assert_eq!(results[0]["status"], "granted", "{results:?}");
        }
    })
    .await
}

/// A TCP proxy in front of the test PostgreSQL server that can be cut (every connection closed,
/// new ones closed at once) and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                conns2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, up, conns, accept }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Issue #10, faults 5 (PostgreSQL): while the database is down, requests answer 503 at once
/// (before: each waited the pool's 5 s checkout timeout), `/readyz` included; once it is back,
/// the server serves again within a few seconds, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_503_at_once_and_recovers() {
    crate::helpers::run_test(Backend::Postgres, |mut app: TestApp| async move {
        app.seed().await;
        let url = url::Url::parse(&app.database_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Proxy::start(upstream).await;
        let mut proxied = url.clone();
        proxied.set_port(Some(proxy.port)).unwrap();
        app.restart(|s| s.database_url = proxied.to_string()).await;
        let write = |i: u32| {
            app.record(json!({"subject": format!("user:o{i}"), "choices": {"analytics": true}, "source": "api"}))
        };
        assert_eq!(write(0).await.status(), 201);
        assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

        proxy.cut();
        let cut = Instant::now();
        let mut timings = Vec::new();
        for i in 0..9 {
            let start = Instant::now();
            let res = match i % 3 {
                0 => app.client.get(app.url("/readyz")).send().await.unwrap(),
                1 => write(i).await,
                _ => app.get("/v1/subjects/user:o0/events").send().await.unwrap(),
            };
            timings.push(start.elapsed());
            assert!(res.headers().contains_key("retry-after"), "request {i}: {}", res.status());
            assert_problem(res, 503).await;
        }
        eprintln!("outage: answers in {timings:?} (first 503 {:?} after the cut)", timings[0]);
        assert!(cut.elapsed() < Duration::from_secs(4), "9 answers took {:?}: {timings:?}", cut.elapsed());
        assert!(timings[3..].iter().all(|t| *t < Duration::from_millis(300)), "not at once: {timings:?}");

        proxy.restore();
        let back = Instant::now();
        loop {
            let ready = app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200;
            if ready && write(100).await.status() == 201 {
                break;
            }
            assert!(back.elapsed() < Duration::from_secs(5), "not recovered after 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("outage: served again {:?} after the database came back", back.elapsed());
    })
    .await
}

/// Issue #10, faults 6 (SQLite): each commit is synced before it is acknowledged
/// (`synchronous = FULL`), so that a 2xx survives a power loss; before, NORMAL.
#[test]
fn sqlite_commits_are_synced_to_disk_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pool = consentry::db::connect(&format!("sqlite://{}/c.db", dir.path().display()), 1).unwrap();
    let mut conn = pool.get().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Sync {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        synchronous: i32,
    }
    let consentry::db::AnyConnection::Sqlite(c) = &mut *conn else { unreachable!() };
    let row: Sync = diesel::RunQueryDsl::get_result(diesel::sql_query("PRAGMA synchronous"), c).unwrap();
    assert_eq!(row.synchronous, 2, "FULL");
}

/// Runs the binary with `DATABASE_URL` (None: unset) in `dir`.
fn consentry_in(dir: &std::path::Path, database_url: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"));
    cmd.args(args).current_dir(dir).env_remove("CONSENTRY_CONFIG").env_remove("CONSENTRY__DATABASE_URL");
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    cmd.output().unwrap()
}

/// Issue #10, faults 8: a `sqlite://` URL whose directory does not exist is an error with a
/// hint (before: directories and an empty database were created), an empty `DATABASE_URL` is
/// an error (before: the default was used); the default `data/` directory is still created.
#[test]
fn a_sqlite_url_in_a_missing_directory_or_an_empty_database_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = consentry_in(dir.path(), Some("sqlite://nope/deeper/consentry.db"), &["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("nope/deeper") && stderr.contains("does not exist") && stderr.contains("mkdir -p"),
        "{stderr}"
    );
    assert!(!dir.path().join("nope").exists(), "no directory is created");

    let out = consentry_in(dir.path(), Some(""), &["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("empty"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "the default was not used");

    let out = consentry_in(dir.path(), None, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("data/consentry.db").is_file(), "the README's default is created");
}

/// Starts the real binary on the app's database with `env`; stderr goes to `log`. Returns the
/// process and its base URL once it is ready.
async fn start_binary(
    app: &TestApp,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> (crate::helpers::ServerProcess, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = app.serve_command(port);
    cmd.stderr(std::fs::File::create(log).unwrap()).envs(env.iter().copied());
    let child = crate::helpers::ServerProcess(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    until_ready(app, &base, log, "the server did not start").await;
    (child, base)
}

/// Waits until the server at `base` answers `/readyz` with 200; fails after 10 s with `what`
/// and the server's log.
async fn until_ready(app: &TestApp, base: &str, log: &std::path::Path, what: &str) {
    let start = Instant::now();
    while !app.client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: {said}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue #10, security 1 and operations 2: requests whose paths carry an email and an
/// unsubscribe token leave neither in the log (before: the access log wrote the request line);
/// a 405 does not echo the path; off a terminal every log line is JSON; each request has an id,
/// the client's `X-Request-Id` or a new one, returned in the header, in problem bodies and on
/// its log lines.
async fn logs_carry_no_identifier_or_token_and_every_line_is_json_with_the_request_id(mut app: TestApp) {
    app.seed().await;
    // Only the binary below delivers webhooks, so its log shows the failed attempt.
    app.restart(|s| s.webhooks.dispatch = false).await;
    let email = "email:ada.lovelace@example.com";
    let res = app.record(json!({"subject": email, "choices": {"marketing_email": true}, "source": "api"})).await;
    assert_eq!(res.status(), 201);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    // A webhook whose URL holds a secret in its query, at a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let res = app
        .post(
            "/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{closed}/hook?api_key=SECRET-4711"),
                                      "events": ["consent.changed"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (mut server, base) = start_binary(&app, &log, &[("CONSENTRY__LOG", "info")]).await;
    let res = app
        .client
        .post(format!("{base}/v1/consents"))
        .bearer_auth(&app.token)
        .json(&json!({"subject": "user:hooked", "choices": {"analytics": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let started = std::time::Instant::now();
    loop {
        let res = app.get(&format!("/v1/webhooks/{hook}/deliveries")).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        if body["deliveries"].as_array().unwrap().iter().any(|d| !d["last_error"].is_null()) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no failed attempt: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A malformed phone number is not repeated in the problem body.
    let res = app
        .client
        .post(format!("{base}/v1/consents"))
        .bearer_auth(&app.token)
        .json(&json!({"subject": "phone:+1 415 555 0100", "choices": {"analytics": true}, "source": "api"}))
        .send()
        .await
        .unwrap();
    let mut body = assert_problem(res, 400).await;
    // Without its request id: a random UUID holds "415" once in about 140 requests.
    body["request_id"].take();
    assert!(!body.to_string().contains("415"), "the problem repeats the number: {body}");

    let res = app
        .client
        .get(format!("{base}/v1/subjects/{email}/events"))
        .bearer_auth(&app.token)
        .header("X-Request-Id", "trace-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-4711", "the client's id is returned");

    let res =
        app.client.delete(format!("{base}/v1/subjects/{email}/events")).bearer_auth(&app.token).send().await.unwrap();
    let header_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&header_id).is_ok(), "an id is generated: {header_id}");
    let body = assert_problem(res, 405).await;
    assert!(!body.to_string().contains("ada.lovelace"), "405 echoes the path: {body}");
    assert_eq!(body["request_id"], header_id.as_str(), "the problem body names the request");

    let token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWNhcGFiaWxpdHk.Zm9yZ2VkLXNpZ25hdHVyZQ";
    let res = app
        .client
        .post(format!("{base}/v1/unsubscribe/{token}"))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = app
        .client
        .get(format!("{base}/v1/subjects/{email}/consents"))
        .header("X-Request-Id", "a@b")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 401).await;
    assert_ne!(body["request_id"], "a@b", "an id that is not a plain token is replaced");

    // A request line the HTTP layer cannot parse (with an address in it): a problem body, and
    // no ERROR line a client could repeat to fill the log.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        raw.write_all(b"GET /v1/subjects/email:ada.lovelace@example.com/events HTTP/9.9 extra\r\n\r\n").unwrap();
        let mut answer = String::new();
        raw.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let _ = raw.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }

    std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    server.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("\"level\":\"ERROR\""), "a client's malformed request is logged as an error:\n{text}");
    for forbidden in ["ada.lovelace", "lovelace", token, "c2VjcmV0LWNhcGFiaWxpdHk", "SECRET-4711", "415 555"] {
        assert!(!text.contains(forbidden), "the log holds {forbidden:?}:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no ANSI colour codes off a terminal");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "trace-4711")
        .unwrap_or_else(|| panic!("no line of request trace-4711:\n{text}"));
    assert_eq!(access["fields"]["route"], "/v1/subjects/{subject}/events", "{access}");
    assert_eq!(access["fields"]["status"], 200);
}

/// Issue #10, operations 4: the container's health check asks the running service
/// (`consentry ready`: GET /readyz), not `--version`.
async fn the_health_check_asks_the_running_service(app: TestApp) {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let check = dockerfile.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(check.contains("\"ready\"") && !check.contains("--version"), "{check}");
    let listen = app.address.trim_start_matches("http://").to_owned();
    let out = app.cli(&["ready", "--listen", &listen]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = app.cli(&["ready", "--listen", &closed]);
    assert!(!out.status.success(), "nothing listens on {closed}");
}

/// Issue #10, faults 7: on SIGTERM `serve` first drains for `shutdown_grace` (it still serves,
/// `/readyz` answers 503 so a load balancer stops sending, responses close their connection),
/// and only then closes the listener and finishes what is in flight. Before, the listener
/// closed at the signal: requests already on their way were reset.
async fn a_stop_signal_drains_before_the_listener_closes(app: TestApp) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = crate::helpers::ServerProcess(
        app.serve_command(port)
            .env("CONSENTRY__SHUTDOWN_GRACE", "2s")
            .env("CONSENTRY__LOG", "warn")
            .env("CONSENTRY__WEBHOOKS__DISPATCH", "false")
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not become ready");

    let status = std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Draining: not ready, but a request sent now is still served, on a connection it closes.
    let readyz = client.get(format!("{base}/readyz")).send().await.expect("still listening while draining");
    assert_eq!(readyz.status(), 503);
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["detail"], "the server is stopping", "{body}");
    let served = client.get(format!("{base}/healthz")).send().await.expect("served while draining");
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    assert!(signalled.elapsed() < Duration::from_secs(2), "the checks above ran within the grace");

    // Then it stops, cleanly, and nothing listens any more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "it stopped before the grace ended");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// The SQLite database (with its WAL) holds consent records and identifiers, the key files the
/// keys that seal secrets and sign receipts: each is readable by its owner only (mode 0600).
#[cfg(unix)]
async fn the_files_that_hold_data_and_keys_are_readable_by_their_owner_only(app: TestApp) {
    use std::os::unix::fs::PermissionsExt;
    app.seed().await;
    let res = app
        .record(serde_json::json!({"subject": "user:mode-1", "choices": {"marketing_email": true}, "source": "api"}))
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let mut files = vec![
        app.settings.secrets.key_file.clone().expect("tests set secrets.key_file"),
        app.settings.receipts.key_file.clone().expect("tests set receipts.key_file"),
    ];
    if let Some(db) = app.database_url.strip_prefix("sqlite://") {
        files.push(db.into());
        files.push(format!("{db}-wal").into());
    }
    for file in files {
        let mode = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

/// Starts the `consentry serve` binary (with `args` more) on `port` against the app's database,
/// its stderr to `log` at `info`, with its limit on open files set to `soft`:`hard` before it runs.
fn serve_with_file_limit(
    app: &TestApp,
    port: u16,
    (soft, hard): (u64, u64),
    log: &std::path::Path,
    args: &[&str],
) -> crate::helpers::ServerProcess {
    use std::os::unix::process::CommandExt;
    let mut cmd = app.serve_command(port);
    cmd.args(args).stderr(std::fs::File::create(log).unwrap()).env("CONSENTRY__LOG", "info");
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    crate::helpers::ServerProcess(cmd.spawn().unwrap())
}

/// `n` public writes of new visitors to `site` at `base` at once, each on a client (and so a
/// connection) of its own; their statuses (0: no answer).
async fn writes_at_once(base: &str, site: &str, n: usize) -> Vec<u16> {
    let writes = (0..n).map(|n| async move {
        reqwest::Client::new()
            .post(format!("{base}/v1/sites/{site}/consents"))
            .header("Origin", crate::helpers::ORIGIN)
            .json(&json!({"visitor_id": format!("0a1b2c3d-0000-4000-8000-{n:012}"), "choices": {"analytics": true},
                          "policy_revision": "2021-02-01", "source": "banner"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    futures_util::future::join_all(writes).await
}

/// Started with a soft limit of 40 open files (some containers and service managers set 64),
/// the server raised it to the hard limit (`RLIMIT_NOFILE`, 4,096 here) and said so; before, it
/// could not start under 57 (a worker thread panicked), and 40 keep-alive clients at 64 left new
/// connections unserved. 48 clients then write at once, each on a connection of its own.
async fn a_low_limit_on_open_files_is_raised_to_the_hard_limit_at_start(app: TestApp) {
    let site = app.seed().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = serve_with_file_limit(&app, port, (40, 4096), &log, &[]);
    let base = format!("http://127.0.0.1:{port}");
    until_ready(&app, &base, &log, "the server did not start with 40 files").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.0.id())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().collect::<Vec<_>>()[3..5], ["4096", "4096"], "{open_files}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("open files: up to 4096 (raised from 40)"), "{said}");

    // A client each: a connection each, all open at once.
    let statuses = writes_at_once(&base, &site, 48).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
}

/// `serve` under a hard limit on open files too low for its pools and workers refuses to start
/// and says why, instead of failing part-way: before, at 40 files an HTTP worker panicked
/// creating its event queue (exit 101, a backtrace), at 32 it logged "listening" and then
/// exited with "Too many open files", and at 20 it blamed the database ("cannot connect to
/// SQLite … unable to open database file"). At the floor `startup::files_needed` computes, it
/// starts (with `--demo`) and serves clients at once, so the floor is not set below what
/// starting takes.
async fn a_limit_on_open_files_too_low_to_serve_is_refused_with_the_reason(app: TestApp) {
    let site = app.seed().await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = |limit: u64, log: &std::path::Path| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // With the example tenant too: it opened a second pool of its own (found by a trial:
        // "listening", then a panic, at 51 to 58 files on SQLite).
        (serve_with_file_limit(&app, port, (limit, limit), log, &["--demo"]), port)
    };

    let refused_log = dir.path().join("refused.log");
    let (mut refused, _) = spawn(32, &refused_log);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = refused.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still running with 32 files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let said = std::fs::read_to_string(&refused_log).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("this process may open only 32 files (RLIMIT_NOFILE, its hard limit)"), "{said}");
    assert!(said.contains("8 database connections"), "{said}");
    assert!(!said.contains("panicked") && !said.contains("listening"), "{said}");

    // The defaults `serve` runs with here (pool_size 8, a worker a core), at exactly the floor.
    let mut settings = app.settings.clone();
    settings.database_url = app.database_url.clone();
    settings.pool_size = 8;
    settings.workers = None;
    settings.database_replica_url = None;
    let needed = consentry::startup::files_needed(&settings);
    let log = dir.path().join("started.log");
    let (_server, port) = spawn(needed, &log);
    let base = format!("http://127.0.0.1:{port}");
    until_ready(&app, &base, &log, &format!("the server did not start with {needed} files")).await;
    let statuses = writes_at_once(&base, &site, 8).await;
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?} with {needed} files: {said}");
    assert!(!said.contains("Too many open files") && !said.contains("panicked"), "{said}");
}

/// Every text column an index orders by (ids, identifiers, keys, ISO dates) compares byte by
/// byte on both databases: collation "C" on PostgreSQL (migration `000080_keys_in_byte_order`:
/// under the database's locale each comparison of an index descent went through strcoll; writes
/// +8% and checks +13% with en_US.UTF-8), BINARY on SQLite. A later migration that adds an
/// indexed text column without `COLLATE "C"` fails here.
async fn every_indexed_text_column_compares_byte_by_byte(app: TestApp) {
    use consentry::db::AnyConnection;
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName, Debug)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        collation: String,
    }
    let mut conn = super::consents::raw_connection(&app);
    let (columns, byte_order): (Vec<Column>, &str) = match &mut conn {
        AnyConnection::Postgresql(c) => (
            diesel::sql_query(
                "SELECT DISTINCT c.relname || '.' || a.attname AS name, co.collname::text AS collation \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) \
                 JOIN pg_collation co ON co.oid = a.attcollation \
                 WHERE c.relnamespace = current_schema()::regnamespace AND a.atttypid = 'text'::regtype",
            )
            .load(c)
            .unwrap(),
            "C",
        ),
        AnyConnection::Sqlite(c) => (
            diesel::sql_query(
                "SELECT DISTINCT m.tbl_name || '.' || x.name AS name, x.coll AS collation \
                 FROM sqlite_master m, pragma_index_xinfo(m.name) x \
                 WHERE m.type = 'index' AND x.key = 1 AND x.name IS NOT NULL",
            )
            .load(c)
            .unwrap(),
            "BINARY",
        ),
    };
    for key in
        ["subject_identifiers.identifier", "consent_states.subject_id", "consent_events.id", "idempotency_keys.key"]
    {
        assert!(columns.iter().any(|c| c.name == key), "{key} is indexed: {columns:?}");
    }
    let other: Vec<&Column> = columns.iter().filter(|c| c.collation != byte_order).collect();
    assert!(other.is_empty(), "indexed text columns not in byte order: {other:#?}");
}

/// A migration that changes a column a prepared statement returns (as `000080_keys_in_byte_order`
/// changed collations) makes PostgreSQL refuse that statement on every connection that prepared
/// it before ("cached plan must not change result type", classified as a lost connection, 503,
/// by `db::transient`): the connection is replaced, and a read that may run again (`read_db`:
/// subject events) runs again on the new one and answers 200. Before, that connection answered
/// 500 until the pool retired it (found by a trial, with an instance of the previous release
/// running through the migration), then 503 once. SQLite prepares such statements again itself.
/// The server runs on one connection here, so the connection that prepared the read is the one
/// the next read gets. (The configuration cache's reads, which answer 503 once, are the next test.)
async fn a_statement_prepared_before_a_schema_change_never_answers_500_and_is_prepared_again(mut app: TestApp) {
    app.seed().await;
    let postgres = app.database_url.starts_with("postgres");
    if postgres {
        app.restart(|s| {
            s.pool_size = 1;
            s.writers = Some(1);
            s.readers = Some(1);
        })
        .await;
    }
    let res = app.record(json!({"subject": "user:schema", "choices": {"analytics": true}, "source": "api"})).await;
    assert_eq!(res.status(), 201);
    let read = |what: &'static str| {
        let app = &app;
        async move {
            let res = app.get(&format!("/v1/subjects/user:schema/{what}")).send().await.unwrap();
            let retry_after = res.headers().contains_key("retry-after");
            (res.status().as_u16(), retry_after, res.text().await.unwrap())
        }
    };
    // The server's connections to its database (PostgreSQL), by process id.
    let backends = || {
        let (admin, name) = pg_names(&app);
        let mut conn = diesel::PgConnection::establish(&admin).unwrap();
        #[derive(diesel::QueryableByName)]
        struct Backend {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        use diesel::RunQueryDsl;
        diesel::sql_query(format!("SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"))
            .load::<Backend>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|b| b.pid)
            .collect::<Vec<i32>>()
    };
    for _ in 0..3 {
        assert_eq!(read("events").await.0, 200);
    }
    let (what, column) = ("events", "consent_events");
    let before = if postgres { backends() } else { Vec::new() };
    if postgres {
        exec_sql(
            &app.database_url,
            &format!(r#"ALTER TABLE {column} ALTER COLUMN source TYPE varchar(64) COLLATE "C""#),
        );
    } else {
        exec_sql(&app.database_url, &format!("CREATE INDEX {column}_source ON {column} (source)"));
    }
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(read(what).await);
    }
    for (status, retry_after, body) in &answers {
        assert!(*status == 200 || (*status == 503 && *retry_after), "{what}: {status} {body}");
    }
    assert!(answers[answers.len() - 10..].iter().all(|a| a.0 == 200), "{what}: {answers:?}");
    if postgres {
        let after = backends();
        assert!(before.iter().any(|pid| !after.contains(pid)), "{what}: the connection was not replaced: {answers:?}");
        assert!(answers.iter().all(|a| a.0 == 200), "a read runs again: {answers:?}");
    }
}

/// The same for the reads behind the configuration cache, which run outside any request's own
/// path: the version poller (every 250 ms) and a tenant's configuration load. A stale statement
/// there used to be answered 503 for a minute or more, every tenant-scoped request, because
/// their connections were handed out again unchanged (found by the second trial); now each
/// such connection is replaced at its first failure (`Pool::run`).
async fn configuration_reads_prepared_before_a_schema_change_recover_within_a_few_requests(app: TestApp) {
    let site = app.seed().await;
    let config = || async {
        let res = app.client.get(app.url(&format!("/v1/sites/{site}/config"))).send().await.unwrap();
        let retry_after = res.headers().contains_key("retry-after");
        (res.status().as_u16(), retry_after)
    };
    for _ in 0..3 {
        assert_eq!(config().await.0, 200);
        assert_eq!(app.get("/v1/purposes").send().await.unwrap().status(), 200);
    }
    // The poller and a configuration load on a pool of one connection: the connection that
    // prepared them is replaced at their first failure, so the next run succeeds.
    if app.database_url.starts_with("postgres") {
        let pool = consentry::db::connect(&app.database_url, 1).unwrap();
        let directory = consentry::service::directory::Directory::new(pool.clone());
        let tenant = pool
            .run(|c| {
                consentry::db::models::tenant::Tenant::find_by_slug(c, "acme").map_err(consentry::db::DbError::from)
            })
            .unwrap()
            .unwrap();
        assert!(directory.tenant(&tenant.id).unwrap().is_some());
        assert_eq!(directory.poll_once().unwrap(), 0);
        exec_sql(
            &app.database_url,
            r#"ALTER TABLE config_versions ALTER COLUMN version TYPE bigint, ALTER COLUMN tenant_id TYPE varchar(64)"#,
        );
        let stale = directory.poll_once();
        assert!(stale.as_ref().is_err_and(|e| e.to_string().contains("cached plan")), "{stale:?}");
        assert_eq!(directory.poll_once().unwrap(), 0, "the poller's next run, on a new connection");
        exec_sql(&app.database_url, r#"ALTER TABLE config_versions ALTER COLUMN tenant_id TYPE text"#);
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    if app.database_url.starts_with("postgres") {
        exec_sql(
            &app.database_url,
            r#"ALTER TABLE config_versions ALTER COLUMN tenant_id TYPE varchar(64) COLLATE "C";
               ALTER TABLE purposes ALTER COLUMN title TYPE varchar(500)"#,
        );
    } else {
        exec_sql(&app.database_url, "CREATE INDEX purposes_title ON purposes (title)");
    }
    // A change of the tenant's configuration made elsewhere: every instance loads it again.
    let res = app
        .put_purpose(
            "analytics",
            json!({"title": "Audience measurement", "description": "Counting visits.", "kind": "cookie_category",
                   "consent_model": "opt_in", "legal_basis": "consent", "gpc_applies": false, "max_age_days": 395}),
        )
        .await;
    assert!(res.status() == 200 || res.status() == 503, "{}", res.status());
    let mut answers = Vec::new();
    for _ in 0..40 {
        answers.push(config().await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(answers.iter().all(|(s, retry_after)| *s == 200 || (*s == 503 && *retry_after)), "{answers:?}");
    assert!(answers[answers.len() - 10..].iter().all(|a| a.0 == 200), "{answers:?}");
}
