//! Storage: one diesel code path over PostgreSQL and SQLite.
//!
//! [`AnyConnection`] is a `diesel::MultiConnection`; queries use portable types (TEXT ids and
//! JSON, TIMESTAMP in UTC) so the same code serves both backends. The few statements that
//! differ live in [`backend`] as one `match`.

pub mod backend;
pub mod models;
pub mod schema;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::PathBuf;
use std::time::Duration;

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL '{0}' has an unknown scheme: use postgres://, postgresql:// or sqlite://<path>")]
    UnknownScheme(String),
    #[error("DATABASE_URL '{0}' names no SQLite file: use sqlite://<path>, e.g. sqlite://data/consentry.db")]
    EmptySqlitePath(String),
    #[error("cannot create the directory {0} for the SQLite database: {1}")]
    CreateDir(PathBuf, std::io::Error),
    #[error("cannot connect to {backend} at {url}: {reason}")]
    Connect { backend: &'static str, url: String, reason: String },
    #[error("cannot run migrations: {0}")]
    Migrate(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("no connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("a database task failed: {0}")]
    Task(String),
}

/// A parsed `DATABASE_URL`. Parsing never falls back: an unknown scheme is an error, so a
/// PostgreSQL URL can never silently become a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, DbError> {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .ok_or_else(|| DbError::UnknownScheme(redact(raw)))?;
        if path.is_empty() || path == ":memory:" {
            return Err(DbError::EmptySqlitePath(raw.to_owned()));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Postgres(url) => redact(url),
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// An r2d2 manager that opens the backend the URL names, and nothing else.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<AnyConnection, ConnectionError> {
        match &self.url {
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url).map(AnyConnection::Postgresql),
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                // WAL lets readers run beside the one writer; writers wait for each other
                // (busy_timeout, ms) instead of failing; foreign keys are off by default in SQLite.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1").map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection left inside a transaction (e.g. after a panic) is not reused, nor one
        // whose last query on this thread failed for want of a connection.
        LOST.with(|lost| lost.replace(false)) || backend::in_transaction(conn)
    }
}

thread_local! {
    /// Set by [`note_lost_connection`] on the thread that used the connection; read when that
    /// thread returns the connection to the pool.
    static LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records that `err` (from a query on this thread) means the connection is gone, so that the
/// pool drops it when it comes back instead of handing it out again. Connections are not tested
/// with a query on every checkout; this is how a broken one leaves the pool.
pub fn note_lost_connection(err: &(dyn std::error::Error + 'static)) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(diesel::result::Error::DatabaseError(kind, info)) = e.downcast_ref::<diesel::result::Error>() {
            let message = info.message();
            if matches!(
                kind,
                diesel::result::DatabaseErrorKind::ClosedConnection
                    | diesel::result::DatabaseErrorKind::UnableToSendCommand
            ) || message.contains("terminating connection")
                || message.contains("server closed the connection")
                || message.contains("no connection to the server")
                || message.contains("could not receive data")
            {
                LOST.with(|lost| lost.set(true));
                return;
            }
        }
        cause = e.source();
    }
}

/// Opens a pool for `url` and runs pending migrations. Creates the SQLite file and its
/// directory on first start. Fails, naming the URL (password redacted), when PostgreSQL is
/// unreachable within 5 seconds.
pub fn connect(url: &str, pool_size: u32) -> Result<Pool, DbError> {
    let url = DatabaseUrl::parse(url)?;
    if let DatabaseUrl::Sqlite(path) = &url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DbError::CreateDir(dir.to_owned(), e))?;
        }
    }
    let manager = ConnectionManager { url: url.clone() };
    let failed = |reason: String| DbError::Connect { backend: url.backend(), url: url.redacted(), reason };
    // One direct attempt first: a wrong host or password fails at once, with its own message,
    // instead of after the pool's timeout and a page of retries.
    r2d2::ManageConnection::connect(&manager).map_err(|e| failed(e.to_string().trim().to_owned()))?;
    let pool = r2d2::Pool::builder()
        .max_size(pool_size.max(1))
        .connection_timeout(Duration::from_secs(5))
        // No `SELECT 1` before every checkout: a connection that broke shows it by failing its
        // query, and `has_broken` keeps it out of the pool.
        .test_on_check_out(false)
        .build(manager)
        .map_err(|e| failed(e.to_string()))?;
    let mut conn = pool.get()?;
    run_migrations(&mut conn)?;
    Ok(pool)
}

/// Runs the embedded migrations of the connection's backend.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<(), DbError> {
    let result = match conn {
        AnyConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS).map(|_| ()),
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| DbError::Migrate(e.to_string()))
}
