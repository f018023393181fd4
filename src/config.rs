//! Typed settings: defaults < file < `CONSENTRY__*` environment variables < `DATABASE_URL`.

use serde::Deserialize;
use std::path::Path;

/// The settings of one process (server or CLI command).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://<path>` (default `sqlite://data/consentry.db`, created on first start),
    /// or `postgres://…` / `postgresql://…`.
    pub database_url: String,
    /// Address and port `serve` listens on (default `127.0.0.1:8080`).
    pub listen: String,
    /// Largest request body accepted, in bytes (default 4 MiB: a check of 10,000 subjects fits).
    pub max_body_bytes: usize,
    /// Database connections per process (default 8).
    pub pool_size: u32,
    /// HTTP worker threads (default: one per CPU core).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Days that are not business days besides weekends, `YYYY-MM-DD`, for the deadlines of
    /// opt-out requests (11 CCR §7026(f)); e.g. `holidays = ["2026-12-25"]` in the file.
    #[serde(default)]
    pub holidays: Vec<chrono::NaiveDate>,
    /// `tracing` filter, e.g. `info` or `consentry=debug` (default `info`).
    pub log: String,
}

impl Settings {
    /// Loads settings. `file` (TOML) is optional; when `None`, `./consentry.toml` is read if it
    /// exists. Environment: `CONSENTRY__DATABASE_URL`, `CONSENTRY__LISTEN`, … and `DATABASE_URL`,
    /// which wins over everything.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("database_url", "sqlite://data/consentry.db")?
            .set_default("listen", "127.0.0.1:8080")?
            .set_default("max_body_bytes", 4 * 1024 * 1024)?
            .set_default("pool_size", 8)?
            .set_default("log", "info")?;
        builder = match file {
            Some(path) => builder.add_source(config::File::from(path).required(true)),
            None => builder.add_source(config::File::with_name("consentry.toml").required(false)),
        };
        builder =
            builder.add_source(config::Environment::with_prefix("CONSENTRY").prefix_separator("__").separator("__"));
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                builder = builder.set_override("database_url", url)?;
            }
        }
        builder.build()?.try_deserialize()
    }
}
