//! What the benchmarks share: the real server on a free port, with a tenant and an admin token.

use consentry::config::Settings;
use consentry::startup::Application;
use serde_json::Value;

/// Runs the real `consentry` binary against `database_url`; returns its JSON output.
pub fn cli(database_url: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consentry"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A running server: its base URL, the admin token of tenant `bench`, and the stop handle.
pub struct Server {
    pub base: String,
    pub token: String,
    pub handle: actix_web::dev::ServerHandle,
}

/// Creates tenant `bench` and starts the server on `database_url` with default settings.
pub async fn start(database_url: &str) -> Server {
    let created = cli(database_url, &["tenants", "create", "bench"]);
    let token = created["token"].as_str().unwrap().to_owned();
    let settings = Settings {
        database_url: database_url.to_owned(),
        listen: "127.0.0.1:0".into(),
        max_body_bytes: 4 << 20,
        public_url: None,
        receipts: Default::default(),
        secrets: Default::default(),
        pool_size: 8,
        workers: None,
        writers: None,
        readers: None,
        holidays: Vec::new(),
        log: "error".into(),
        migrate: true,
        sqlite_synchronous: Default::default(),
        shutdown_grace: std::time::Duration::from_secs(1),
        webhooks: Default::default(),
        // measure the service, not the limiter
        limits: consentry::config::LimitSettings { enabled: false, ..Default::default() },
        metrics: Default::default(),
        retention: Default::default(),
        max_import_bytes: 256 << 20,
        database_replica_url: None,
        replica: Default::default(),
    };
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    Server { base, token, handle }
}
