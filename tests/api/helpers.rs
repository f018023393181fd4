//! `TestApp`: the real server on a free port, on a fresh database of either backend.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a new database per test on the server
//! named by `CONSENTRY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped afterwards. When that variable is unset the PostgreSQL variant of each test says so
//! and returns; when it is set and the server cannot be reached, the test fails.

use consentry::config::{Settings, WebhookSettings};
use consentry::startup::Application;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::process::Output;
use std::time::Duration;

pub const ORIGIN: &str = "https://www.example.com";
pub const VISITOR: &str = "0b9c3f1e-8d4a-4f6e-9a51-2c7d8e9f0a1b";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    /// Admin token of the tenant `acme`.
    pub token: String,
    pub client: reqwest::Client,
    /// The settings the server runs with (see [`TestApp::restart`]).
    pub settings: Settings,
    /// The running server, replaced by [`TestApp::restart`].
    handle: std::sync::Arc<std::sync::Mutex<actix_web::dev::ServerHandle>>,
    /// Further instances on the same database ([`TestApp::spawn_instance`]).
    instances: std::sync::Arc<std::sync::Mutex<Vec<actix_web::dev::ServerHandle>>>,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    _dir: tempfile::TempDir,
    pg_database: Option<(String, String)>,
}

/// Builds and runs an application; returns its port and a handle that stops it.
/// The receiver resolves once the server and its webhook dispatcher have stopped.
async fn start(settings: Settings) -> (u16, actix_web::dev::ServerHandle, tokio::sync::oneshot::Receiver<()>) {
    let app = Application::build(settings).await.expect("the app starts");
    let port = app.port();
    let handle = app.handle();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
        let _ = done_tx.send(());
    });
    (port, handle, done_rx)
}

/// Runs `test` against a fresh app of `backend` and stops the server afterwards.
pub async fn run_test<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let handle = app.handle.clone();
    let instances = app.instances.clone();
    let pg = app.pg_database.clone();
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(app))).await;
    let current = handle.lock().unwrap().clone();
    current.stop(false).await;
    let others: Vec<_> = instances.lock().unwrap().drain(..).collect();
    for other in others {
        other.stop(false).await;
    }
    if let Some((admin_url, name)) = pg {
        drop_database(&admin_url, &name);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Generates `sqlite::<name>` and `postgres::<name>` tests from `async fn <name>(app: TestApp)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::helpers::run_test($crate::helpers::Backend::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::helpers::run_test($crate::helpers::Backend::Postgres, super::$name).await
                }
            )*
        }
    };
}

pub fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut conn) = PgConnection::establish(admin_url) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn);
    }
}

/// The URL of a fresh, empty database on the test PostgreSQL server, or `None` when
/// `CONSENTRY_TEST_POSTGRES_URL` is unset. Panics when it is set but unusable.
pub fn fresh_postgres_database() -> Option<(String, String, String)> {
    let admin_url = std::env::var("CONSENTRY_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())?;
    Some(fresh_database_on(&admin_url))
}

/// A fresh, empty database on the PostgreSQL server of `admin_url`: (its URL, `admin_url`, its
/// name). Panics when the server cannot be reached.
pub fn fresh_database_on(admin_url: &str) -> (String, String, String) {
    let admin_url = admin_url.to_owned();
    let mut conn = PgConnection::establish(&admin_url)
        .unwrap_or_else(|e| panic!("CONSENTRY_TEST_POSTGRES_URL is set but PostgreSQL cannot be reached: {e}"));
    let name = format!("consentry_test_{}", uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b).to_owned();
    (format!("{base}/{name}"), admin_url, name)
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg_database) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/consentry.db", dir.path().display()), None),
            Backend::Postgres => match fresh_postgres_database() {
                Some((url, admin, name)) => (url, Some((admin, name))),
                None => {
                    eprintln!("SKIPPED (PostgreSQL): set CONSENTRY_TEST_POSTGRES_URL to run the PostgreSQL variant");
                    return None;
                }
            },
        };
        Some(Self::spawn_on(dir, database_url, pg_database, |_| {}).await)
    }

    /// Runs the app on a fresh database of the PostgreSQL server of `admin_url` (a test's own
    /// cluster), with `tweak`ed settings (given the database's URL in `database_url`).
    pub async fn spawn_postgres(admin_url: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, admin, name) = fresh_database_on(admin_url);
        Self::spawn_on(dir, url, Some((admin, name)), tweak).await
    }

    async fn spawn_on(
        dir: tempfile::TempDir,
        database_url: String,
        pg_database: Option<(String, String)>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let settings = Settings {
            database_url: database_url.clone(),
            listen: "127.0.0.1:0".into(),
            max_body_bytes: 4 * 1024 * 1024,
            public_url: None,
            // Beside the test's database (PostgreSQL's default would be ./data).
            receipts: consentry::config::ReceiptSettings {
                key_file: Some(dir.path().join("receipt-keys.json")),
                ..Default::default()
            },
            // Beside the test's database too; the CLI is given the same (see `cli_env`).
            secrets: consentry::config::SecretSettings {
                key_file: Some(dir.path().join("secrets.key")),
                ..Default::default()
            },
            // The retention worker is started by the tests that want it.
            retention: consentry::config::RetentionSettings { worker: false, ..Default::default() },
            max_import_bytes: 64 * 1024,
            database_replica_url: None,
            replica: Default::default(),
            pool_size: 4,
            workers: Some(1),
            writers: None,
            readers: None,
            holidays: Vec::new(),
            log: "warn".into(),
            migrate: true,
            sqlite_synchronous: Default::default(),
            shutdown_grace: Duration::from_millis(300),
            limits: Default::default(),
            metrics: Default::default(),
            // Fast retries, so webhook tests see several attempts in a second.
            webhooks: WebhookSettings {
                retry_base: Duration::from_millis(100),
                retry_max_delay: Duration::from_millis(400),
                timeout: Duration::from_secs(5),
                poll_interval: Duration::from_millis(100),
                // The tests' receivers listen on 127.0.0.1.
                private_receivers: Some(true),
                ..WebhookSettings::default()
            },
        };
        let mut settings = settings;
        tweak(&mut settings);
        let (port, handle, stopped) = start(settings.clone()).await;
        let mut test_app = TestApp {
            address: format!("http://127.0.0.1:{port}"),
            database_url,
            token: String::new(),
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            settings,
            handle: std::sync::Arc::new(std::sync::Mutex::new(handle)),
            instances: Default::default(),
            stopped: Some(stopped),
            _dir: dir,
            pg_database,
        };
        test_app.token = test_app.create_tenant("acme");
        test_app
    }

    /// Stops the server and its other instances, and drops its PostgreSQL database (what
    /// [`run_test`] does after a test).
    pub async fn stop(self) {
        let current = self.handle.lock().unwrap().clone();
        current.stop(false).await;
        let others: Vec<_> = self.instances.lock().unwrap().drain(..).collect();
        for other in others {
            other.stop(false).await;
        }
        if let Some((admin_url, name)) = &self.pg_database {
            drop_database(admin_url, name);
        }
    }

    /// Stops the server (waiting for it, and its webhook dispatcher, to finish) and starts a new
    /// one on the same database with `tweak`ed settings, on a new port.
    pub async fn restart(&mut self, tweak: impl FnOnce(&mut Settings)) {
        let old = self.handle.lock().unwrap().clone();
        old.stop(true).await;
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        tweak(&mut self.settings);
        let (port, handle, stopped) = start(self.settings.clone()).await;
        self.address = format!("http://127.0.0.1:{port}");
        *self.handle.lock().unwrap() = handle;
        self.stopped = Some(stopped);
    }

    /// Starts another instance on the same database (stopped with the test); returns its port.
    pub async fn spawn_instance(&self) -> u16 {
        let (port, handle, _) = start(self.settings.clone()).await;
        self.instances.lock().unwrap().push(handle);
        port
    }

    /// The real `consentry serve` on `port`, against this app's database and secrets key, its
    /// output discarded: callers add settings (`CONSENTRY__…`) or a log file, then spawn it into
    /// a [`ServerProcess`].
    pub fn serve_command(&self, port: u16) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &self.database_url)
            .env(
                "CONSENTRY__SECRETS__KEY_FILE",
                self.settings.secrets.key_file.as_ref().expect("tests set secrets.key_file"),
            )
            .env_remove("CONSENTRY_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }

    /// Runs the real `consentry` binary against this app's database.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// [`TestApp::cli`] with more environment variables (settings as `CONSENTRY__…`), which
    /// win over the app's own.
    pub fn cli_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let key_file = self.settings.secrets.key_file.clone().expect("tests set secrets.key_file");
        std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
            .args(args)
            .env("CONSENTRY__SECRETS__KEY_FILE", key_file)
            .env("DATABASE_URL", &self.database_url)
            // The server's receipt keys (on PostgreSQL the default would be ./data).
            .env("CONSENTRY__RECEIPTS__KEY_FILE", self.settings.receipts.key_file.as_ref().expect("set in spawn"))
            .envs(envs.iter().copied())
            .env_remove("CONSENTRY_CONFIG")
            .current_dir(self._dir.path())
            .output()
            .expect("the consentry binary runs")
    }

    /// `consentry tenants create <slug>`; returns the admin token.
    pub fn create_tenant(&self, slug: &str) -> String {
        let out = self.cli(&["tenants", "create", slug]);
        assert!(out.status.success(), "tenants create failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("tenants create prints JSON");
        assert_eq!(v["tenant"], slug);
        v["token"].as_str().expect("a token").to_owned()
    }

    /// `consentry tokens issue`; returns (token, token id).
    pub fn issue_token(&self, tenant: &str, scopes: &[&str], ttl: Option<&str>) -> (String, String) {
        let mut args = vec!["tokens", "issue", "--tenant", tenant];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        if let Some(ttl) = ttl {
            args.extend(["--ttl", ttl]);
        }
        let out = self.cli(&args);
        assert!(out.status.success(), "tokens issue failed: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let id = String::from_utf8(out.stderr).unwrap().trim().trim_start_matches("token id: ").to_owned();
        (token, id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&self.token).json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> RequestBuilder {
        self.client.put(self.url(path)).bearer_auth(&self.token).json(body)
    }

    pub async fn put_purpose(&self, key: &str, body: Value) -> Response {
        self.put(&format!("/v1/purposes/{key}"), &body).send().await.unwrap()
    }

    pub async fn post_revision(&self, policy: &str, body: Value) -> Response {
        self.post(&format!("/v1/policies/{policy}/revisions"), &body).send().await.unwrap()
    }

    /// Creates a site allowing [`ORIGIN`]; returns its site key.
    pub async fn create_site(&self) -> String {
        let res =
            self.post("/v1/sites", &json!({"name": "www.example.com", "origins": [ORIGIN]})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["site_key"].as_str().unwrap().to_owned()
    }

    /// The standard test tenant: purposes `necessary` (notice_only), `analytics` (opt_in,
    /// 395 days), `marketing_email` (opt_in communication), `sale_sharing` (opt_out, GPC),
    /// the `privacy` revision 2021-02-01, and a site; returns the site key.
    pub async fn seed(&self) -> String {
        for (key, kind, model, basis, gpc, max_age) in [
            ("necessary", "cookie_category", "notice_only", "legitimate_interest", false, None),
            ("analytics", "cookie_category", "opt_in", "consent", false, Some(395)),
            ("marketing_email", "communication", "opt_in", "consent", false, Some(730)),
            ("sale_sharing", "processing", "opt_out", "consent", true, None),
        ] {
            let res = self
                .put_purpose(
                    key,
                    json!({"title": key, "description": format!("The {key} purpose"), "kind": kind,
                           "consent_model": model, "legal_basis": basis, "gpc_applies": gpc, "max_age_days": max_age}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::CREATED, "seeding {key}: {}", res.text().await.unwrap());
        }
        let res = self
            .post_revision("privacy", json!({"revision_date": "2021-02-01", "url": "https://www.example.com/privacy", "requires_reconsent": false}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        self.create_site().await
    }

    /// `POST /v1/sites/{site_key}/consents` from [`ORIGIN`].
    pub fn visitor_post(&self, site_key: &str, body: &Value) -> RequestBuilder {
        self.client.post(self.url(&format!("/v1/sites/{site_key}/consents"))).header("Origin", ORIGIN).json(body)
    }

    /// Records a visitor's choices through the public endpoint; asserts 201.
    pub async fn record_visitor(&self, site_key: &str, visitor: &str, choices: Value) -> Value {
        let body =
            json!({"visitor_id": visitor, "choices": choices, "policy_revision": "2021-02-01", "source": "banner"});
        let res = self.visitor_post(site_key, &body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    /// `POST /v1/consents` with the admin token.
    pub async fn record(&self, body: Value) -> Response {
        self.post("/v1/consents", &body).send().await.unwrap()
    }

    pub async fn check(&self, purpose: &str, subjects: &[&str]) -> Vec<Value> {
        let res =
            self.post("/v1/consents/check", &json!({"purpose": purpose, "subjects": subjects})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["results"].as_array().unwrap().clone()
    }

    pub async fn consents_of(&self, subject: &str) -> Value {
        let res = self.get(&format!("/v1/subjects/{subject}/consents")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn events_of(&self, subject: &str) -> Vec<Value> {
        let res = self.get(&format!("/v1/subjects/{subject}/events")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["events"].as_array().unwrap().clone()
    }
}

/// Asserts an RFC 9457 problem response and returns its body.
pub async fn assert_problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(body[field].as_str().is_some_and(|s| !s.is_empty()), "problem lacks {field}: {body}");
    }
    body
}

/// A `consentry` process a test started: killed and reaped when dropped, so a test that fails
/// (panics) before its end leaves no server running and holding its port.
pub struct ServerProcess(pub std::process::Child);

impl ServerProcess {
    /// Kills the process and returns its status and what it wrote to piped stdout and stderr.
    pub fn kill_and_collect(&mut self) -> std::process::Output {
        use std::io::Read;
        let _ = self.0.kill();
        let read = |pipe: Option<&mut dyn Read>| {
            let mut bytes = Vec::new();
            if let Some(p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        };
        let stdout = read(self.0.stdout.as_mut().map(|p| p as &mut dyn Read));
        let stderr = read(self.0.stderr.as_mut().map(|p| p as &mut dyn Read));
        let status = self.0.wait().expect("the child is ours to wait for");
        std::process::Output { status, stdout, stderr }
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server-side write (`source: api`) of one purpose for `user` of the seeded tenant `acme`, as
/// the ledger takes it: for tests that write below the HTTP layer (the writer, a connection of
/// their own). Its response body is `{}`.
pub fn api_submission(
    conn: &mut consentry::db::AnyConnection,
    user: &str,
    purpose: &str,
    granted: bool,
) -> consentry::ledger::Submission {
    use consentry::domain::{ConsentSource, SubjectIdentifier};
    use consentry::ledger::{Finish, RecordRequest, Submission, TenantRules};
    let tenant = consentry::db::models::tenant::Tenant::find_by_slug(conn, "acme").unwrap().unwrap();
    let rules = TenantRules::load(conn, &tenant.id, chrono::Utc::now()).unwrap();
    let subject = SubjectIdentifier::parse(user).unwrap().stored_form(&tenant.subject_key());
    let choices = [(purpose.to_owned(), granted)].into_iter().collect();
    let req = RecordRequest::new(&subject, &choices, ConsentSource::Api);
    Submission::new(rules, &req, 201, Finish::render(|_| Ok("{}".into()))).unwrap()
}
