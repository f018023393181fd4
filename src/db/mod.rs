//! Storage: one diesel code path over PostgreSQL and SQLite.
//!
//! [`AnyConnection`] is a `diesel::MultiConnection`; queries use portable types (TEXT ids and
//! JSON, TIMESTAMP in UTC) so the same code serves both backends. The few statements that
//! differ live in [`backend`] as one `match`.

pub mod backend;
pub mod models;
pub mod replica;
pub mod schema;
mod sqlite_init;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// A pool of connections that knows when the database is down.
///
/// While the last attempt to connect failed (and none succeeded since), [`Pool::get`] answers
/// at once instead of waiting out the checkout timeout, and a background probe reconnects.
#[derive(Clone)]
pub struct Pool {
    inner: r2d2::Pool<ConnectionManager>,
    health: Arc<Health>,
    /// See [`Pool::deferred_sync_log`].
    wal: Option<WalLog>,
}

impl Pool {
    /// A connection; fails at once while the database is known to be down, else after at most
    /// the checkout timeout (5 s).
    pub fn get(&self) -> Result<PooledConnection, r2d2::Error> {
        let start = Instant::now();
        let got = self.checkout();
        crate::metrics::pool_wait(start.elapsed());
        got
    }

    /// Runs `f` on a pooled connection. When `f` fails because of that connection (it died, or
    /// its prepared statements no longer fit the schema: [`transient`]), the connection is
    /// replaced instead of handed out again ([`note_lost_connection`]); otherwise every later
    /// use of it would fail the same way. Every piece of work that takes a connection for one
    /// task goes through here: requests ([`crate::state::AppState::db`]), configuration loads,
    /// token keys, the workers.
    pub fn run<T, E>(&self, f: impl FnOnce(&mut AnyConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<r2d2::Error> + std::error::Error + 'static,
    {
        Self::run_on(self.get(), f)
    }

    /// [`Pool::run`] with a connection had within `wait` ([`Pool::get_within`]).
    pub fn run_within<T, E>(&self, wait: Duration, f: impl FnOnce(&mut AnyConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<r2d2::Error> + std::error::Error + 'static,
    {
        Self::run_on(self.get_within(wait), f)
    }

    /// [`Pool::run`] for work that only reads, and so may run again (`wait`: as
    /// [`Pool::run_within`]): when its connection turns out dead (ended by an administrator, a
    /// restart behind a pooler, a statement gone stale after a migration:
    /// [`Transient::ConnectionLost`]), it runs once more on another connection instead of
    /// failing. The dead one is replaced and checkouts are tested meanwhile, so the second
    /// attempt does not meet another. Once: a database that is down fails as before. Never for
    /// writes: a write whose connection died may have committed.
    pub fn read<T, E>(
        &self,
        wait: Option<Duration>,
        mut f: impl FnMut(&mut AnyConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<r2d2::Error> + std::error::Error + 'static,
    {
        match Self::run_on(self.get_waiting(wait), &mut f) {
            Err(e) if transient(&e) == Some(Transient::ConnectionLost) => {
                tracing::debug!(error = %e, "a read lost its connection; reading again on another");
                Self::run_on(self.get_waiting(wait), f)
            }
            result => result,
        }
    }

    fn run_on<T, E>(
        conn: Result<PooledConnection, r2d2::Error>,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<r2d2::Error> + std::error::Error + 'static,
    {
        let mut conn = conn?;
        let result = f(&mut conn);
        if let Err(e) = &result {
            note_lost_connection(e);
        }
        result
    }

    /// A connection within `wait` (connecting one if the pool may grow); an error past it.
    pub fn get_within(&self, wait: Duration) -> Result<PooledConnection, r2d2::Error> {
        self.inner.get_timeout(wait)
    }

    /// [`Pool::get_within`] `wait` when given, else [`Pool::get`].
    pub fn get_waiting(&self, wait: Option<Duration>) -> Result<PooledConnection, r2d2::Error> {
        match wait {
            Some(wait) => self.get_within(wait),
            None => self.get(),
        }
    }

    /// SQLite set to sync every commit (`synchronous = full`, the default): its write-ahead
    /// log, which the writer syncs itself, once for many commits, before it acknowledges them
    /// (`service::writer`). `None` on PostgreSQL, and on SQLite set to `normal` (commits are
    /// synced at checkpoints only).
    pub fn deferred_sync_log(&self) -> Option<WalLog> {
        self.wal.clone()
    }

    /// An idle connection now, if there is one: never waits, never connects (a second writer
    /// that is only worth having when it takes nothing from other work: `POST /v1/imports`).
    pub fn try_get(&self) -> Option<PooledConnection> {
        self.inner.try_get()
    }

    /// `(idle, in use)` connections now.
    pub fn usage(&self) -> (u32, u32) {
        let state = self.inner.state();
        (state.idle_connections, state.connections - state.idle_connections)
    }

    fn checkout(&self) -> Result<PooledConnection, r2d2::Error> {
        if self.health.is_down() {
            // r2d2's error cannot be made by hand: a checkout that may not wait gives one, with
            // the last connection error as its message.
            return self.inner.get_timeout(Duration::from_millis(1));
        }
        // r2d2 waits out its whole timeout even when every attempt to connect fails at once;
        // wait in short steps instead, and stop as soon as a failed connect is recorded (the
        // database went down while this checkout waited).
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        loop {
            let step = deadline.saturating_duration_since(Instant::now()).min(CHECKOUT_STEP);
            match self.inner.get_timeout(step) {
                Ok(conn) => return Ok(conn),
                Err(e) if self.health.is_down() || Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// Whether the last attempt to connect failed (no success since).
    pub fn is_down(&self) -> bool {
        self.health.is_down()
    }
}

/// What the pool has seen of the database lately, shared by its manager and the probe.
#[derive(Debug, Default)]
struct Health {
    /// When connecting began to fail, while it still fails.
    failing_since: Mutex<Option<Instant>>,
    /// Until when every checkout is tested with a query: set when a connection was found lost,
    /// for the others that may have died with it.
    suspect_until: Mutex<Option<Instant>>,
    /// The pool of a read replica, whose reads fall back to the primary (see [`replica`]).
    replica: bool,
}

/// How long a checkout waits for a connection while the database is not known to be down.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting checkout looks whether the database went down meanwhile.
const CHECKOUT_STEP: Duration = Duration::from_millis(50);

/// How long checkouts are tested after a connection was found lost.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// How often the probe tries to connect while the database is down.
const PROBE_EVERY: Duration = Duration::from_millis(200);

impl Health {
    fn is_down(&self) -> bool {
        self.failing_since.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn connected(&self, ok: bool) {
        let mut failing = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        match (ok, failing.is_some()) {
            (true, true) => {
                tracing::warn!(replica = self.replica, "the database answers again");
                *failing = None;
            }
            (false, false) if self.replica => {
                tracing::warn!("cannot connect to the read replica; reading from the primary until it is back");
                *failing = Some(Instant::now());
                drop(failing);
                self.suspect();
            }
            (false, false) => {
                tracing::error!("cannot connect to the database; answering 503 until it is back");
                *failing = Some(Instant::now());
                drop(failing);
                self.suspect();
            }
            _ => {}
        }
    }

    fn suspect(&self) {
        *self.suspect_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + SUSPECT_FOR);
    }

    fn is_suspect(&self) -> bool {
        self.suspect_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|until| Instant::now() < until)
    }
}

// Migrations up to 2026-12-05-000040_presentation.
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
    #[error("cannot create the SQLite database {0}: {1}")]
    CreateFile(PathBuf, std::io::Error),
    #[error(
        "DATABASE_URL '{url}': the directory {dir} does not exist; create it first (mkdir -p {dir}) \
         or fix the path (sqlite://data/x.db is relative to the working directory, \
         sqlite:///var/lib/x.db absolute)"
    )]
    NoSuchDir { url: String, dir: String },
    #[error(
        "the database has migrations this binary does not know: {0}; it was migrated by a newer release. \
         Run that release (or newer), or revert its migrations before starting this one"
    )]
    UnknownMigrations(String),
    #[error("the database lacks migrations this binary needs: {0}; run `consentry migrate` first")]
    PendingMigrations(String),
    #[error("cannot connect to {backend} at {url}: {reason}")]
    Connect { backend: &'static str, url: String, reason: String },
    #[error(
        "DATABASE_REPLICA_URL '{0}' is not a PostgreSQL URL: a read replica is a PostgreSQL streaming \
         replica (postgres://…) of a PostgreSQL DATABASE_URL; SQLite has no replicas"
    )]
    ReplicaNotPostgres(String),
    #[error("DATABASE_REPLICA_URL is set but DATABASE_URL is SQLite: a read replica needs a PostgreSQL primary")]
    ReplicaOfSqlite,
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

/// `url` with every password replaced by `***`: the user-info's (`postgres://user:secret@…`),
/// a `password` or `sslpassword` query parameter (`…/db?password=secret`, as libpq takes it),
/// and a `password=` of a keyword/value connection string (`host=… password=secret`, refused as
/// an unknown scheme, but named in the message).
fn redact(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    // `password=…` wherever a key may start: after `?`, `&`, white space or at the start; the
    // value runs to the next `&` or white space, or is quoted ('…', keyword/value strings).
    for key in ["sslpassword=", "password="] {
        let mut from = 0;
        while let Some(found) = out[from..].to_ascii_lowercase().find(key) {
            let at = from + found;
            let starts_key = at == 0 || matches!(out.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'\t' | b'\n');
            let value = at + key.len();
            if !starts_key {
                from = value;
                continue;
            }
            let rest = &out[value..];
            let end = if let Some(quoted) = rest.strip_prefix('\'') {
                quoted.find('\'').map_or(out.len(), |q| value + q + 2)
            } else {
                rest.find(|c: char| c == '&' || c.is_whitespace()).map_or(out.len(), |e| value + e)
            };
            out.replace_range(value..end, "***");
            from = value + 3;
        }
    }
    out
}

/// SQLite's `PRAGMA synchronous` in WAL mode (<https://sqlite.org/pragma.html#pragma_synchronous>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit is synced to disk before it is acknowledged: a 2xx survives a power loss.
    #[default]
    Full,
    /// Commits are synced at checkpoints: the last ones may be lost on a power loss or an
    /// operating-system crash (not when only the process dies).
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// A SQLite database's write-ahead log (`<database>-wal`, <https://sqlite.org/wal.html>).
/// Clones share one open descriptor of the file.
#[derive(Debug, Clone)]
pub struct WalLog {
    path: PathBuf,
    file: Arc<std::sync::Mutex<Option<std::fs::File>>>,
}

impl WalLog {
    /// The log of a SQLite database that syncs every commit (see [`Pool::deferred_sync_log`]).
    fn of(url: &DatabaseUrl, synchronous: Synchronous) -> Option<Self> {
        match (url, synchronous) {
            (DatabaseUrl::Sqlite(path), Synchronous::Full) => {
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                Some(Self { path: wal.into(), file: Arc::default() })
            }
            _ => None,
        }
    }

    /// Syncs the log to disk (`fsync`): every commit whose write to the log returned before
    /// this call is then durable, as if it had been committed with `synchronous = FULL`, which
    /// syncs the log and nothing else at a commit in WAL mode.
    ///
    /// The log is opened once and kept open, as SQLite keeps its own: a sync needs no new file
    /// descriptor, so a process out of them (many client connections) still syncs. It is opened
    /// again only when the file at the log's path is another one (SQLite removed the log when
    /// its last connection closed, and made it anew). No log file: nothing to sync (SQLite
    /// removes it only after copying it into the database file and syncing that).
    pub fn sync(&self) -> std::io::Result<()> {
        match self.opened()?.as_ref() {
            Some(f) => f.sync_all(),
            None => Ok(()),
        }
    }

    /// Opens the log now, when the pool opens (`open`), so that serving never needs a file
    /// descriptor for it: a server that runs out of them before its first write still syncs
    /// (found by the stop-29 trial at `ulimit -n 64`). No log file yet: opened at the first sync.
    fn open_now(&self) -> std::io::Result<()> {
        self.opened().map(drop)
    }

    /// The open log, (re)opened when the file at its path is not the one held; `None` when there
    /// is no log file.
    fn opened(&self) -> std::io::Result<std::sync::MutexGuard<'_, Option<std::fs::File>>> {
        use std::os::unix::fs::MetadataExt;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *file = None;
                return Ok(file);
            }
            Err(e) => return Err(e),
        };
        let open = file.as_ref().map(|f| f.metadata().map(|m| (m.dev(), m.ino()))).transpose()?;
        if open != Some(current) {
            *file = Some(std::fs::File::open(&self.path)?);
        }
        Ok(file)
    }
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections in the pool (at least 1).
    pub pool_size: u32,
    /// Run pending migrations (under a lock); when false, refuse a schema that lacks any.
    pub migrate: bool,
    pub synchronous: Synchronous,
}

/// An r2d2 manager that opens the backend the URL names, and nothing else.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    synchronous: Synchronous,
    health: Arc<Health>,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<AnyConnection, ConnectionError> {
        let conn = self.open();
        // A server that answers "too many clients" is up, only full: checkouts wait for a
        // connection as usual instead of failing at once.
        let full = conn.as_ref().err().is_some_and(|e| {
            let text = e.to_string();
            text.contains("too many clients") || text.contains("remaining connection slots")
        });
        self.health.connected(conn.is_ok() || full);
        conn
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnectionError> {
        // Tested only while connections are suspect (one was found lost lately): then a dead
        // one is replaced before a transaction begins on it, and otherwise no query is spent.
        if self.health.is_suspect() {
            conn.batch_execute("SELECT 1").map_err(ConnectionError::CouldntSetupConfiguration)?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection left inside a transaction (e.g. after a panic) is not reused, nor one
        // whose last query on this thread failed for want of a connection.
        let lost = LOST.with(|lost| lost.replace(false));
        if lost {
            self.health.suspect();
        }
        lost || backend::in_transaction(conn)
    }
}

impl ConnectionManager {
    fn open(&self) -> Result<AnyConnection, ConnectionError> {
        match &self.url {
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url).map(AnyConnection::Postgresql),
            DatabaseUrl::Sqlite(path) => {
                sqlite_init::register();
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                // WAL lets readers run beside the one writer; writers wait for each other
                // (busy_timeout, ms) instead of failing; foreign keys are off by default in SQLite.
                // synchronous = FULL (the default) syncs each commit, so that a 2xx survives a
                // power loss; NORMAL only at checkpoints. secure_delete = ON overwrites deleted
                // content with zeros (<https://sqlite.org/pragma.html#pragma_secure_delete>): an
                // erasure (GDPR Art. 17) leaves no identifier in free pages or cells, and
                // `subjects::erase` then truncates the WAL, which held the old pages.
                // cache_size (KiB when negative): each connection of the pool keeps a page cache
                // of its own, 2 MiB by default. 512 KiB (128 pages) holds the interior pages of
                // the indexes a check or a write walks, even at a million subjects; a leaf not in
                // it is read from the system's file cache. The pool's caches stay under 5 MiB of
                // the server's memory (up to 18 MiB with 2 MiB each, of 80 at the peak, bench/).
                // cache_spill (pages): a write transaction keeps up to 1,024 dirty pages (4 MiB)
                // in memory before it writes any to the WAL; with the 128-page cache it spilled
                // pages mid-transaction (`pagerStress`, 5% of the writer thread on public
                // writes), some of them written to the WAL twice. The cache shrinks back to its
                // size when the transaction ends.
                conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -512; PRAGMA cache_spill = 1024;")
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                // Switching a new file to WAL needs an exclusive lock, and SQLite answers
                // SQLITE_BUSY at once, without its busy handler, when another connection is
                // switching it at the same moment (instances started together): try again.
                let started = std::time::Instant::now();
                loop {
                    match conn.batch_execute(&format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; \
                         PRAGMA secure_delete = ON;",
                        self.synchronous.pragma()
                    )) {
                        Ok(()) => break,
                        Err(diesel::result::Error::DatabaseError(_, info))
                            if info.message().contains("locked") && started.elapsed() < Duration::from_secs(10) =>
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => return Err(ConnectionError::CouldntSetupConfiguration(e)),
                    }
                }
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

thread_local! {
    /// Set by [`note_lost_connection`] on the thread that used the connection; read when that
    /// thread returns the connection to the pool.
    static LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A database condition that passes: the request may succeed if sent again shortly (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// The connection died (the server restarted, an administrator ended it, the network), or
    /// a statement it prepared earlier no longer fits the schema (a migration changed a column
    /// it returns: PostgreSQL's "cached plan must not change result type", SQLSTATE 0A000, on
    /// every later run of it): either way the connection is replaced, and a new one prepares
    /// its statements again.
    ConnectionLost,
    /// The database takes no writes now (a replica, a failover under way, a read-only file).
    ReadOnly,
    /// The server is starting, stopping or recovering, SQLite's write lock did not come free, or
    /// PostgreSQL cancelled the statement (an administrator's `pg_cancel_backend`,
    /// `statement_timeout`, `lock_timeout`: SQLSTATE 57014 and 55P03).
    Unavailable,
}

/// Classifies an error (or any error in its source chain) from a query.
pub fn transient(err: &(dyn std::error::Error + 'static)) -> Option<Transient> {
    use diesel::result::DatabaseErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        // `DbError::Query` is transparent: its source is the query error's source, not the error.
        let query = match e.downcast_ref::<DbError>() {
            Some(DbError::Query(q)) => Some(q),
            _ => e.downcast_ref::<diesel::result::Error>(),
        };
        if let Some(diesel::result::Error::DatabaseError(kind, info)) = query {
            let message = info.message();
            let has = |s: &str| message.contains(s);
            if matches!(kind, K::ClosedConnection | K::UnableToSendCommand)
                || has("terminating connection")
                || has("server closed the connection")
                || has("no connection to the server")
                || has("could not receive data")
                || has("could not send data")
                || has("connection to server")
                || has("cached plan must not change result type")
            {
                return Some(Transient::ConnectionLost);
            }
            if matches!(kind, K::ReadOnlyTransaction)
                || has("read-only transaction")
                || has("attempt to write a readonly database")
            {
                return Some(Transient::ReadOnly);
            }
            if has("the database system is")
                || has("cannot connect now")
                || has("database is locked")
                || has("too many clients")
                || has("canceling statement due to")
            {
                return Some(Transient::Unavailable);
            }
        }
        cause = e.source();
    }
    None
}

/// Records that `err` (from a query on this thread) means the connection is gone, so that the
/// pool drops it when it comes back instead of handing it out again, and tests the other
/// connections on checkout for a while. Connections are not tested with a query on every
/// checkout otherwise; this is how a broken one leaves the pool.
pub fn note_lost_connection(err: &(dyn std::error::Error + 'static)) {
    if transient(err) == Some(Transient::ConnectionLost) {
        LOST.with(|lost| lost.set(true));
    }
}

/// Has the connection in use on this thread discarded, not reused, when it goes back to the
/// pool (a setting could not be restored on it).
pub fn discard_connection() {
    LOST.with(|lost| lost.set(true));
}

/// The SQLite file of the README's first command, whose directory is created on first start.
pub const DEFAULT_SQLITE_PATH: &str = "data/consentry.db";

/// Creates the SQLite file, empty, readable by its owner only (mode 0600), unless it exists:
/// it holds consent records and identifiers. SQLite gives its `-wal` and `-shm` files the
/// database file's mode.
fn create_private_database(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens a pool for `url` with `pool_size` connections and runs pending migrations.
pub fn connect(url: &str, pool_size: u32) -> Result<Pool, DbError> {
    open(url, &Options { pool_size, migrate: true, synchronous: Synchronous::default() })
}

/// Opens a pool for `url` and, with `options.migrate`, runs pending migrations under a lock;
/// then refuses a database that has migrations this binary does not know, or (without
/// `migrate`) lacks some it needs. Creates the SQLite file on first start, and its directory
/// only for [`DEFAULT_SQLITE_PATH`]. Fails, naming the URL (password redacted), when
/// PostgreSQL is unreachable.
pub fn open(url: &str, options: &Options) -> Result<Pool, DbError> {
    let url = DatabaseUrl::parse(url)?;
    if let DatabaseUrl::Sqlite(path) = &url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if path == Path::new(DEFAULT_SQLITE_PATH) {
                std::fs::create_dir_all(dir).map_err(|e| DbError::CreateDir(dir.to_owned(), e))?;
            } else if !dir.is_dir() {
                return Err(DbError::NoSuchDir { url: url.redacted(), dir: dir.display().to_string() });
            }
        }
        create_private_database(path).map_err(|e| DbError::CreateFile(path.clone(), e))?;
    }
    let health = Arc::new(Health::default());
    let manager = ConnectionManager { url: url.clone(), synchronous: options.synchronous, health: health.clone() };
    let failed = |reason: String| DbError::Connect { backend: url.backend(), url: url.redacted(), reason };
    // One direct attempt first: a wrong host or password fails at once, with its own message,
    // instead of after the pool's timeout and a page of retries.
    manager.open().map_err(|e| failed(e.to_string().trim().to_owned()))?;
    let inner = r2d2::Pool::builder()
        .max_size(options.pool_size.max(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        // `is_valid` runs a query only while connections are suspect (see there).
        .test_on_check_out(true)
        // Whether the database can be reached is logged by `Health`, once a change; r2d2's own
        // handler logged every failed connection and check at ERROR, 167 lines for one
        // `pg_terminate_backend` of the pool's connections under load (a trial).
        .error_handler(Box::new(ThrottledPoolErrors))
        .build(manager.clone())
        .map_err(|e| failed(e.to_string()))?;
    spawn_probe(&manager);
    spawn_checkpointer(&manager)?;
    let pool = Pool { inner, health, wal: WalLog::of(&url, options.synchronous) };
    let mut conn = pool.get()?;
    if options.migrate {
        run_migrations(&mut conn)?;
    } else {
        check_migrations(&mut conn, false)?;
    }
    if let Some(wal) = &pool.wal {
        if let Err(e) = wal.open_now() {
            tracing::warn!(error = %e, "the write-ahead log could not be opened at start; the writer opens it at its first sync");
        }
    }
    Ok(pool)
}

/// r2d2's errors (a connection that could not be made or failed its check) as warnings, one a
/// second with how many more there were.
#[derive(Debug)]
struct ThrottledPoolErrors;

impl r2d2::HandleError<ConnectionError> for ThrottledPoolErrors {
    fn handle_error(&self, error: ConnectionError) {
        static THROTTLE: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
        if let Some(held) = THROTTLE.pass() {
            tracing::warn!(
                error = %error.to_string().trim(),
                also_failed = held.count,
                since_previous_secs = held.since_previous_secs,
                "a database connection failed"
            );
        }
    }
}

/// Opens a pool on a read replica (`DATABASE_REPLICA_URL`; see [`replica`]): PostgreSQL only,
/// without migrating or checking the schema (the replica follows the primary's). Does not wait
/// for the replica: one that is down at start is connected by the probe when it is back.
/// Errors: a URL that is not `postgres://` / `postgresql://` (SQLite has no replicas).
pub fn open_replica(url: &str, pool_size: u32) -> Result<Pool, DbError> {
    let url = match DatabaseUrl::parse(url) {
        Ok(url @ DatabaseUrl::Postgres(_)) => url,
        Ok(DatabaseUrl::Sqlite(_)) | Err(_) => return Err(DbError::ReplicaNotPostgres(redact(url))),
    };
    let health = Arc::new(Health { replica: true, ..Health::default() });
    let manager = ConnectionManager { url: url.clone(), synchronous: Synchronous::default(), health: health.clone() };
    let inner = r2d2::Pool::builder()
        .max_size(pool_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(true)
        // The replica's health is logged by its probe, once a change (`db::replica`); r2d2's
        // own handler logged every failed connection attempt, ten lines a second while down.
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager.clone());
    spawn_probe(&manager);
    Ok(Pool { inner, health, wal: None })
}

/// Starts a thread named `name` that calls `tick` with a manager of the pool every `every`, and
/// ends once the pool is gone (it holds the pool's health weakly).
fn spawn_while_pool_lives(
    manager: &ConnectionManager,
    name: &str,
    every: Duration,
    mut tick: impl FnMut(&ConnectionManager) + Send + 'static,
) -> std::io::Result<()> {
    let (url, synchronous, health) = (manager.url.clone(), manager.synchronous, Arc::downgrade(&manager.health));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(health) = health.upgrade() else { return };
            tick(&ConnectionManager { url: url.clone(), synchronous, health });
        })
        .map(drop)
}

/// While the database is down, tries to connect every [`PROBE_EVERY`], so that the pool knows
/// it is back without a request waiting for it. Ends with the pool.
fn spawn_probe(manager: &ConnectionManager) {
    let spawned = spawn_while_pool_lives(manager, "consentry-db-probe", PROBE_EVERY, |probe| {
        if probe.health.is_down() {
            drop(r2d2::ManageConnection::connect(probe));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the database probe; recovery waits for the pool's own retries");
    }
}

/// How long the checkpointer waits between two checkpoints of a SQLite database's WAL.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// SQLite: starts the pool's checkpointer, a thread with a connection of its own that copies
/// the WAL into the database every [`CHECKPOINT_EVERY`] while the pool lives
/// ([`backend::checkpoint_wal`]). SQLite's own checkpoint runs inside the commit that takes the
/// WAL past 1,000 pages, and on the write path that is the one writer thread every write waits
/// for: it copied the 1,000 pages and synced the database file there (14% of the writer's CPU,
/// bench/ write workload; 9% with the checkpointer). With the checkpointer, that commit finds
/// most pages copied already, and the writer's next transaction starts the WAL over as before
/// (only a writer can: <https://sqlite.org/wal.html#avoiding_excessively_large_wal_files>; with
/// SQLite's own checkpoint off, the WAL grew without end under steady writes). Nothing for
/// PostgreSQL. Errors: the thread cannot be started (the system's thread limit).
fn spawn_checkpointer(manager: &ConnectionManager) -> Result<(), DbError> {
    if !matches!(manager.url, DatabaseUrl::Sqlite(_)) {
        return Ok(());
    }
    let mut conn: Option<AnyConnection> = None;
    spawn_while_pool_lives(manager, "consentry-checkpoint", CHECKPOINT_EVERY, move |manager| {
        if conn.is_none() {
            conn = manager.open().ok();
        }
        if let Some(c) = conn.as_mut() {
            if let Err(e) = backend::checkpoint_wal(c) {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again on a new connection");
                conn = None;
            }
        }
    })
    .map_err(|e| DbError::Connect {
        backend: manager.url.backend(),
        url: manager.url.redacted(),
        reason: format!("cannot start the WAL checkpointer thread: {e}"),
    })
}

/// A key for `pg_advisory_lock` held while migrating: "consentry" in ASCII, as a number.
const MIGRATION_LOCK: i64 = 0x636f_6e73_656e_7472;

/// Runs the embedded migrations of the connection's backend, one process at a time (PostgreSQL:
/// an advisory lock; SQLite: the write lock, `BEGIN IMMEDIATE`), so that instances started
/// together never race; then checks that the database has no migration this binary lacks.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<(), DbError> {
    let migrate = |conn: &mut AnyConnection| -> Result<(), DbError> {
        match conn {
            AnyConnection::Postgresql(c) => apply_pending(c, PG_MIGRATIONS)?,
            AnyConnection::Sqlite(c) => apply_pending(c, SQLITE_MIGRATIONS)?,
        }
        check_migrations(conn, true)
    };
    match conn {
        AnyConnection::Postgresql(_) => {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let outcome = migrate(conn);
            let unlocked = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            outcome?;
            Ok(unlocked?)
        }
        AnyConnection::Sqlite(_) => backend::write_transaction(conn, migrate),
    }
}

/// Compares the migrations recorded in the database with the embedded ones: an unknown one is
/// always an error; a missing one too unless `migrated` (just run).
fn check_migrations(conn: &mut AnyConnection, migrated: bool) -> Result<(), DbError> {
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let query = diesel::sql_query("SELECT version FROM __diesel_schema_migrations");
    let (applied, known): (Vec<Applied>, Vec<(String, String)>) = match conn {
        AnyConnection::Postgresql(c) => (
            query.load(c).map_err(|e| DbError::PendingMigrations(format!("all (no schema: {e})")))?,
            migration_names::<diesel::pg::Pg>(&PG_MIGRATIONS)?,
        ),
        AnyConnection::Sqlite(c) => (
            query.load(c).map_err(|e| DbError::PendingMigrations(format!("all (no schema: {e})")))?,
            migration_names::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS)?,
        ),
    };
    let applied: Vec<String> = applied.into_iter().map(|a| a.version).collect();
    let unknown: Vec<&str> =
        applied.iter().filter(|v| !known.iter().any(|(_, k)| k == *v)).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(DbError::UnknownMigrations(unknown.join(", ")));
    }
    let missing: Vec<&str> =
        known.iter().filter(|(_, k)| !applied.contains(k)).map(|(name, _)| name.as_str()).collect();
    if !missing.is_empty() && !migrated {
        return Err(DbError::PendingMigrations(missing.join(", ")));
    }
    Ok(())
}

/// Applies `source`'s pending migrations one by one, in order, each in a transaction of its own
/// (as `run_pending_migrations` does), and logs them: how many before the first (some rebuild
/// indexes, a minute or more on a large ledger, during which the instance does not serve yet),
/// and each one's name and duration once applied.
fn apply_pending<C, DB>(conn: &mut C, source: EmbeddedMigrations) -> Result<(), DbError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    let pending = conn.pending_migrations(source).map_err(|e| DbError::Migrate(e.to_string()))?;
    if let (Some(first), Some(last)) = (pending.first(), pending.last()) {
        tracing::info!(
            count = pending.len(),
            first = %first.name(),
            last = %last.name(),
            "applying {} database migrations",
            pending.len()
        );
    }
    for migration in &pending {
        let started = Instant::now();
        conn.run_migration(migration.as_ref()).map_err(|e| DbError::Migrate(e.to_string()))?;
        tracing::info!(
            migration = %migration.name(),
            ms = started.elapsed().as_millis() as u64,
            "applied migration {}",
            migration.name()
        );
    }
    Ok(())
}

/// The embedded migrations: (name, version), e.g. (`2026-11-29-000001_foundation`, `20261129000001`).
fn migration_names<DB: diesel::backend::Backend>(source: &EmbeddedMigrations) -> Result<Vec<(String, String)>, DbError>
where
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    let migrations =
        diesel::migration::MigrationSource::<DB>::migrations(source).map_err(|e| DbError::Migrate(e.to_string()))?;
    Ok(migrations.iter().map(|m| (m.name().to_string(), m.name().version().to_string())).collect())
}

#[cfg(test)]
mod tests {
    /// Messages and logs name the database without its password, wherever the URL carries it.
    #[test]
    fn a_password_is_redacted_wherever_the_url_carries_it() {
        for (url, shown) in [
            ("postgres://app:s3cret@db:5432/consentry", "postgres://app:***@db:5432/consentry"),
            ("postgres://app@db/consentry?password=s3cret", "postgres://app@db/consentry?password=***"),
            (
                "postgresql://db/c?sslmode=require&password=s3cret&application_name=x",
                "postgresql://db/c?sslmode=require&password=***&application_name=x",
            ),
            ("postgres://db/c?PASSWORD=s3cret", "postgres://db/c?PASSWORD=***"),
            ("postgres://db/c?sslpassword=s3cret", "postgres://db/c?sslpassword=***"),
            ("host=db password=s3cret dbname=c", "host=db password=*** dbname=c"),
            ("host=db password='s3 cret' dbname=c", "host=db password=*** dbname=c"),
            ("postgres://db/c?application_name=nopassword=x", "postgres://db/c?application_name=nopassword=x"),
        ] {
            assert_eq!(super::redact(url), shown, "{url}");
            assert!(!super::redact(url).contains("s3cret") && !super::redact(url).contains("cret'"), "{url}");
        }
    }

    use diesel::connection::SimpleConnection;
    use std::time::{Duration, Instant};

    /// A SQLite pool on a new file in `dir` with `connections` connections, migrated.
    fn sqlite_pool(dir: &tempfile::TempDir, connections: u32) -> (super::Pool, std::path::PathBuf) {
        let path = dir.path().join("wal.db");
        let options = super::Options { pool_size: connections, migrate: true, synchronous: Default::default() };
        (super::open(&format!("sqlite://{}", path.display()), &options).unwrap(), path)
    }

    /// `(mxFrame, nBackfill)` of a WAL: the frames it holds and how many of them are copied
    /// into the database, read from the wal-index header in the `-shm` file (two copies of a
    /// 48-byte `WalIndexHdr`, `mxFrame` at byte 16, then `WalCkptInfo`, `nBackfill` at byte 96;
    /// native byte order; <https://sqlite.org/walformat.html#the_wal_index_file_format>).
    fn wal_frames(db: &std::path::Path) -> (u32, u32) {
        let shm = std::fs::read(format!("{}-shm", db.display())).unwrap();
        let word = |at: usize| u32::from_ne_bytes(shm[at..at + 4].try_into().unwrap());
        (word(16), word(96))
    }

    /// The checkpointer copies committed pages into the database while no one writes: after a
    /// commit of about 100 pages (below the 1,000 at which SQLite's own checkpoint runs in a
    /// commit), every frame of the WAL is copied within moments.
    #[test]
    fn the_checkpointer_copies_the_wal_without_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = sqlite_pool(&dir, 1);
        let mut conn = pool.get().unwrap();
        conn.batch_execute(
            "CREATE TABLE filler (body BLOB NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO filler SELECT randomblob(3900) FROM n",
        )
        .unwrap();
        let started = Instant::now();
        let (mut frames, mut copied) = wal_frames(&path);
        while copied < frames && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(super::CHECKPOINT_EVERY);
            (frames, copied) = wal_frames(&path);
        }
        assert!(frames >= 100, "the commit went to the WAL ({frames} frames)");
        assert_eq!(copied, frames, "every frame of the WAL is copied into the database");
    }

    /// The writer's log sync holds the log open from the pool's start: no sync needs a new file
    /// descriptor (a process out of them still syncs; found by the stop-29 trials under low
    /// `ulimit -n`). When the file at the log's path is replaced, the new one is opened and
    /// synced. Without a log file there is nothing to sync.
    #[test]
    fn the_log_sync_keeps_its_file_open_and_follows_a_new_log() {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = sqlite_pool(&dir, 1);
        let wal = pool.deferred_sync_log().expect("SQLite syncing every commit defers to the writer's log sync");
        let wal_path = format!("{}-wal", path.display());
        let held = |wal: &super::WalLog| {
            let file = wal.file.lock().unwrap();
            file.as_ref().map(|f| (f.as_raw_fd(), f.metadata().unwrap().ino()))
        };
        let first = held(&wal).expect("the log is held open from the pool's start, before any sync");
        pool.get().unwrap().batch_execute("CREATE TABLE filler (body BLOB NOT NULL)").unwrap();
        wal.sync().unwrap();
        assert_eq!(held(&wal), Some(first), "the first sync uses the log opened at start");
        assert_eq!(first.1, std::fs::metadata(&wal_path).unwrap().ino());
        pool.get().unwrap().batch_execute("INSERT INTO filler VALUES (x'00')").unwrap();
        wal.sync().unwrap();
        assert_eq!(held(&wal), Some(first), "the same descriptor syncs again");

        let other = dir.path().join("other-wal");
        std::fs::write(&other, b"a new log").unwrap();
        std::fs::rename(&other, &wal_path).unwrap();
        wal.sync().unwrap();
        let now = held(&wal).unwrap();
        assert_eq!(now.1, std::fs::metadata(&wal_path).unwrap().ino(), "the new log is the one synced");
        assert_ne!(now.1, first.1);

        std::fs::remove_file(&wal_path).unwrap();
        assert!(wal.sync().is_ok(), "no log file: nothing to sync");
    }

    /// The WAL stays small under a steady stream of writes read beside: 400 commits of 10 pages
    /// each (16 MB in all), one after the other while another connection reads, leave a WAL far
    /// below what they wrote (SQLite starts it over after a checkpoint,
    /// <https://sqlite.org/wal.html#avoiding_excessively_large_wal_files>).
    #[test]
    fn the_sqlite_wal_stays_small_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, path) = sqlite_pool(&dir, 2);
        pool.get().unwrap().batch_execute("CREATE TABLE filler (body BLOB NOT NULL)").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (pool, stop) = (pool.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    conn.batch_execute("SELECT max(rowid) FROM filler").unwrap();
                }
            })
        };
        let mut conn = pool.get().unwrap();
        for _ in 0..400 {
            conn.batch_execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) \
                 INSERT INTO filler SELECT randomblob(3900) FROM n",
            )
            .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        let written = 400 * 10 * 4096_u64;
        let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap().len();
        assert!(wal < written / 2, "the WAL holds {wal} bytes of the {written} written: it never started over");
    }
}
