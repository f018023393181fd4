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
    /// A PostgreSQL streaming replica of `database_url` (`DATABASE_REPLICA_URL`, which wins, or
    /// `CONSENTRY__DATABASE_REPLICA_URL`): serves checks, state reads, the change feed and
    /// exports while it keeps up (see [`crate::db::replica`] and `[replica]`). Absent: every
    /// read is served by the primary. Refused at start with a SQLite `database_url`.
    #[serde(default)]
    pub database_replica_url: Option<String>,
    /// The read replica (`[replica]` in the file, `CONSENTRY__REPLICA__MAX_LAG=500ms`).
    #[serde(default)]
    pub replica: ReplicaSettings,
    /// Address and port `serve` listens on (default `127.0.0.1:8080`).
    pub listen: String,
    /// Largest request body accepted, in bytes (default 4 MiB: a check of 10,000 subjects fits).
    pub max_body_bytes: usize,
    /// Database connections per process (default 8).
    pub pool_size: u32,
    /// HTTP worker threads (default: one per CPU core).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Group-commit writer threads, each with a transaction of its own in flight (see
    /// `service::writer`); PostgreSQL only, default 2 (`startup::DEFAULT_PG_WRITERS`). Each
    /// holds one of the `pool_size` connections while it writes. Ignored with SQLite, which has
    /// one writer.
    #[serde(default)]
    pub writers: Option<usize>,
    /// Grouped-read threads for single-subject checks and state reads (see `service::reader`):
    /// default one on PostgreSQL, two on SQLite (`startup::default_readers`). Each holds one of
    /// the `pool_size` connections while it reads.
    #[serde(default)]
    pub readers: Option<usize>,
    /// Days that are not business days besides weekends, `YYYY-MM-DD`, for the deadlines of
    /// opt-out requests (11 CCR §7026(f)); e.g. `holidays = ["2026-12-25"]` in the file.
    #[serde(default)]
    pub holidays: Vec<chrono::NaiveDate>,
    /// `tracing` filter, e.g. `info` or `consentry=debug` (default `info`).
    pub log: String,
    /// Whether `serve` (and every command but `migrate`, which always does) runs pending
    /// migrations at start (default true). When false, a database that lacks one is refused:
    /// run `consentry migrate` first. `serve --no-migrate` sets it to false.
    #[serde(default = "yes")]
    pub migrate: bool,
    /// SQLite only: `full` (default: a commit is on disk before its 2xx, even across a power
    /// loss) or `normal` (faster; the last commits may be lost on a power loss or OS crash).
    #[serde(default)]
    pub sqlite_synchronous: crate::db::Synchronous,
    /// Webhook delivery (`[webhooks]` in the file, `CONSENTRY__WEBHOOKS__RETRY_WINDOW=…`).
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// The address people reach this service at, `https://consent.example.com` (no path): the
    /// base of the links it hands out (one-click unsubscribe). Absent: taken from each request
    /// (its `Host` and scheme), which a client can set to anything, and which is `http` behind a
    /// proxy that ends TLS; set it in production.
    #[serde(default)]
    pub public_url: Option<String>,
    /// After SIGTERM or SIGINT, how long `serve` goes on serving before it stops accepting
    /// connections (default `1s`): `/readyz` answers 503 and responses carry
    /// `Connection: close` meanwhile, so a load balancer stops sending new requests before the
    /// listener closes, and no request already sent is reset. Then the requests in flight
    /// finish (up to 30 s).
    #[serde(deserialize_with = "duration", default = "default_shutdown_grace")]
    pub shutdown_grace: std::time::Duration,
    /// Signed consent receipts (`[receipts]` in the file, `CONSENTRY__RECEIPTS__KEY_FILE=…`).
    #[serde(default)]
    pub receipts: ReceiptSettings,
    /// The key that seals secrets at rest (`[secrets]` in the file,
    /// `CONSENTRY__SECRETS__KEY=…`; see [`crate::secrets`]).
    #[serde(default)]
    pub secrets: SecretSettings,
    /// Abuse limits (`[limits]` in the file, `CONSENTRY__LIMITS__PUBLIC_PER_MINUTE=…`).
    #[serde(default)]
    pub limits: LimitSettings,
    /// The Prometheus endpoint `/metrics` (`[metrics]`, `CONSENTRY__METRICS__TOKEN=…`).
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Retention of events and opt-out requests (`[retention]` in the file,
    /// `CONSENTRY__RETENTION__INTERVAL=…`).
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Largest body of `POST /v1/imports`, in bytes (default 256 MiB, about 2.5 million CSV rows).
    #[serde(default = "default_max_import_bytes")]
    pub max_import_bytes: usize,
}

fn default_max_import_bytes() -> usize {
    256 * 1024 * 1024
}

/// How the read replica (`database_replica_url`) is used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaSettings {
    /// The longest lag at which the replica serves reads (default `1s`): a read is served by the
    /// primary while the replica has not replayed every commit that finished on the primary
    /// longer ago than this, or does not answer.
    #[serde(deserialize_with = "duration")]
    pub max_lag: std::time::Duration,
    /// Connections to the replica per process (default: `pool_size`).
    pub pool_size: Option<u32>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self { max_lag: std::time::Duration::from_secs(1), pool_size: None }
    }
}

/// Retention (see `service::retention`): the periodic pruning and how long completed opt-out
/// requests are kept. How long events are kept is each purpose's `retention_days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Whether `serve` runs the retention worker (default true). Several instances may run it:
    /// each group of subjects is pruned in one transaction, under their locks.
    pub worker: bool,
    /// How often the worker prunes (default `1h`; the first run is one interval after start).
    #[serde(deserialize_with = "duration")]
    pub interval: std::time::Duration,
    /// Days a completed opt-out request is kept after its completion; absent: for ever. At
    /// least 731 (24 months): a shorter setting is refused at start, 11 CCR §7101(a) asks for
    /// the records of consumer requests and their responses to be kept at least 24 months.
    #[serde(deserialize_with = "opt_out_request_days")]
    pub opt_out_requests_days: Option<u32>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { worker: true, interval: std::time::Duration::from_secs(3600), opt_out_requests_days: None }
    }
}

fn opt_out_request_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let days = Option::<u32>::deserialize(d)?;
    let least = crate::domain::retention::CCPA_RECORD_DAYS;
    match days {
        Some(n) if n < least => Err(serde::de::Error::custom(format!(
            "opt_out_requests_days = {n} is refused: opt-out requests are kept at least {least} days (24 months, \
             11 CCR §7101(a)); set {least} or more, or leave it out to keep them for ever"
        ))),
        other => Ok(other),
    }
}

/// The key that seals instance keys, identity secrets and webhook secrets in the database
/// (AES-256-GCM, see [`crate::secrets`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSettings {
    /// The key file (32 random bytes, base64url; created with mode 0600 on first start when the
    /// database holds no sealed secret yet). Default: `secrets.key` beside the SQLite database;
    /// `data/secrets.key` with PostgreSQL. Instances that share a database must share the key
    /// (this file, or `key`).
    pub key_file: Option<std::path::PathBuf>,
    /// The key itself (32 bytes, base64url), e.g. from a secret store through
    /// `CONSENTRY__SECRETS__KEY`; wins over `key_file`. Never written anywhere.
    pub key: Option<Secret>,
}

/// Rate limits (see [`crate::limits`]): requests a minute, with bursts of up to a minute's
/// quota at once. A quota of 0 lifts that limit; `enabled = false` lifts them all (benchmarks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Whether any limit applies (default true).
    pub enabled: bool,
    /// Public requests (`/v1/sites/{site_key}/…`) per site and client address (default 1200;
    /// a page view makes two or three). Requests naming no site (one-click unsubscribe, the
    /// receipt check) are counted per client address alone.
    pub public_per_minute: u32,
    /// Tracker-audit reports (`POST /v1/sites/{site_key}/observations`) per site and client
    /// address, on top of `public_per_minute` (default 60).
    pub observations_per_minute: u32,
    /// Management requests per token (default 60,000: a backend checking consent on each of
    /// its page renders).
    pub token_per_minute: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For` (default 0: the
    /// header is ignored and the client is the connection's peer). With `n`, the client address
    /// is the `n`-th entry from the right: what the outermost trusted proxy saw.
    pub trusted_proxy_hops: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            public_per_minute: 1200,
            observations_per_minute: 60,
            token_per_minute: 60_000,
            trusted_proxy_hops: 0,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// The bearer token Prometheus sends (`authorization: { credentials: … }` in its scrape
    /// configuration). Absent: `/metrics` answers 404.
    pub token: Option<Secret>,
}

/// The keys that sign consent receipts (see [`crate::receipts`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptSettings {
    /// The key file (JSON, created with mode 0600 on first start). Default:
    /// `receipt-keys.json` beside the SQLite database; `data/receipt-keys.json` with PostgreSQL.
    /// Instances that share a database must share the keys (this file, or `signing_key`).
    pub key_file: Option<std::path::PathBuf>,
    /// Sign with this Ed25519 key instead of the file's: its 32-byte seed, base64url. Never
    /// written anywhere; retired keys of the file stay published.
    pub signing_key: Option<Secret>,
    /// A presentation token (`presentation` of `GET /v1/sites/{key}/config`, sent back with the
    /// write) issued longer ago than this is stale: the write is accepted with the current
    /// presentation recorded and `presentation_stale: true` (default `24h`; `30s`, `2h`, `3days`).
    #[serde(deserialize_with = "duration")]
    pub presentation_max_age: std::time::Duration,
}

impl Default for ReceiptSettings {
    fn default() -> Self {
        Self { key_file: None, signing_key: None, presentation_max_age: std::time::Duration::from_secs(24 * 3600) }
    }
}

/// A secret setting: never printed by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How webhook deliveries are sent. Durations are written like `30s`, `1h`, `3days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Whether `serve` runs the dispatcher (default true). Instances without it still write
    /// deliveries; any instance with it sends them.
    pub dispatch: bool,
    /// The wait after the first failed attempt, doubled after each further failure, with
    /// jitter (default 30 s).
    #[serde(deserialize_with = "duration")]
    pub retry_base: std::time::Duration,
    /// The longest wait between attempts (default 1 h).
    #[serde(deserialize_with = "duration")]
    pub retry_max_delay: std::time::Duration,
    /// How long a failing delivery is retried before it is dead-lettered (default 72 h; at
    /// least 24 h is what integrators are promised).
    #[serde(deserialize_with = "duration")]
    pub retry_window: std::time::Duration,
    /// How long one attempt may take, connecting included (default 10 s).
    #[serde(deserialize_with = "duration")]
    pub timeout: std::time::Duration,
    /// How often the dispatcher looks for due deliveries written by other instances (default
    /// 1 s; this instance's own writes wake it at once).
    #[serde(deserialize_with = "duration")]
    pub poll_interval: std::time::Duration,
    /// Deliveries sent at the same time per instance (default 16), at most a quarter of them
    /// (at least 1) to one webhook, so a receiver that hangs cannot hold up the others; below 8,
    /// one hanging receiver can take half the slots or more.
    #[serde(deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// Whether receivers may be at loopback, private, link-local or other internal addresses
    /// (`localhost`, 127.0.0.1, 10.0.0.0/8, 169.254.169.254, fc00::/7, …). Absent: allowed with
    /// SQLite (the embedded default, one machine), refused with PostgreSQL (a shared
    /// deployment, where a tenant's admin must not reach the network behind the server).
    pub private_receivers: Option<bool>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            dispatch: true,
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(3600),
            retry_window: Duration::from_secs(72 * 3600),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            concurrency: 16,
            private_receivers: None,
        }
    }
}

fn default_shutdown_grace() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

fn yes() -> bool {
    true
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let raw = String::deserialize(d)?;
    let value = humantime::parse_duration(raw.trim()).map_err(|e| serde::de::Error::custom(format!("'{raw}': {e}")))?;
    if value.is_zero() || value > std::time::Duration::from_secs(365 * 24 * 3600) {
        return Err(serde::de::Error::custom(format!("'{raw}' must be more than 0 and at most a year")));
    }
    Ok(value)
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
        if let Some(url) = std::env::var_os("DATABASE_URL") {
            let url =
                url.into_string().map_err(|_| config::ConfigError::Message("DATABASE_URL is not UTF-8".into()))?;
            builder = builder.set_override("database_url", url)?;
        }
        if let Some(url) = std::env::var_os("DATABASE_REPLICA_URL") {
            let url = url
                .into_string()
                .map_err(|_| config::ConfigError::Message("DATABASE_REPLICA_URL is not UTF-8".into()))?;
            builder = builder.set_override("database_replica_url", url)?;
        }
        let settings: Self = builder.build()?.try_deserialize()?;
        if settings.database_url.trim().is_empty() {
            return Err(config::ConfigError::Message(
                "the database URL is set but empty (DATABASE_URL or database_url); unset it for the default \
                 sqlite://data/consentry.db, or name a database"
                    .into(),
            ));
        }
        if settings.database_replica_url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(config::ConfigError::Message(
                "the replica URL is set but empty (DATABASE_REPLICA_URL or database_replica_url); unset it to \
                 read from the primary only, or name a replica"
                    .into(),
            ));
        }
        Ok(settings)
    }

    /// How to open the database with these settings.
    pub fn db_options(&self) -> crate::db::Options {
        crate::db::Options { pool_size: self.pool_size, migrate: self.migrate, synchronous: self.sqlite_synchronous }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #4: failing deliveries are retried for at least 24 hours before dead-lettering.
    #[test]
    fn default_webhook_retries_last_at_least_24_hours() {
        let d = WebhookSettings::default();
        assert!(d.retry_window >= crate::workers::webhooks::MIN_PROMISED_WINDOW);
        assert!(d.retry_base < d.retry_max_delay && d.retry_max_delay < d.retry_window);
        assert!(d.timeout * 2 < d.retry_window, "a lease never outlives the window");
    }

    /// 11 CCR §7101(a): records of consumer requests are kept at least 24 months, so a shorter
    /// `retention.opt_out_requests_days` is refused, not clamped.
    #[test]
    fn opt_out_requests_are_kept_at_least_24_months_11_ccr_7101() {
        let err = toml::from_str::<RetentionSettings>("opt_out_requests_days = 730").unwrap_err().to_string();
        assert!(err.contains("11 CCR §7101") && err.contains("731"), "{err}");
        let s: RetentionSettings = toml::from_str("opt_out_requests_days = 731").expect("24 months is enough");
        assert_eq!(s.opt_out_requests_days, Some(731));
        assert_eq!(RetentionSettings::default().opt_out_requests_days, None, "kept for ever by default");
    }

    #[test]
    fn durations_parse_in_human_form_and_refuse_zero() {
        let s: WebhookSettings =
            toml::from_str("retry_base = \"250ms\"\nretry_window = \"3days\"").expect("valid settings");
        assert_eq!(s.retry_base, std::time::Duration::from_millis(250));
        assert_eq!(s.retry_window, std::time::Duration::from_secs(3 * 24 * 3600));
        assert_eq!(s.timeout, WebhookSettings::default().timeout, "unset fields keep their defaults");
        let err = toml::from_str::<WebhookSettings>("timeout = \"0s\"").unwrap_err().to_string();
        assert!(err.contains("more than 0"), "{err}");
        assert!(toml::from_str::<WebhookSettings>("retry_base = \"soon\"").is_err());
    }
}
