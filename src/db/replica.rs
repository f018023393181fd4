//! Reads from a PostgreSQL streaming replica (`DATABASE_REPLICA_URL`, issue 10): checks, state
//! reads, the change feed and exports are served by the replica while it is up and close
//! enough behind the primary; otherwise, and for everything else, by the primary.
//!
//! **Health.** A probe thread asks, every [`PROBE_EVERY`], the primary for its WAL insert
//! position (`pg_current_wal_insert_lsn()`) and then the replica for its replay position
//! (`pg_last_wal_replay_lsn()`) and whether it is still in recovery. The replica has replayed
//! every commit the primary had finished when a sample was taken whose position is at most the
//! replay position; its lag is the time since the latest such sample (0 to one probe interval
//! on an idle primary, unlike `now() - pg_last_xact_replay_timestamp()`, which grows while
//! nothing is written). A replica that does not answer, was promoted, or lags more than
//! `replica.max_lag` serves nothing until a probe finds it well again; a read that fails on it
//! is read again on the primary.
//!
//! **Read-your-writes.** A write's response carries `Consentry-Read-After`: a WAL position of
//! the primary read after the write committed ([`Replica::commit_position`]). A read that
//! sends it back is served by the replica only when the replica's replay position (from the
//! latest probe, or asked at once when the probe's is short of it) is at or past it, else by the
//! primary; so it sees that write, and every write that committed before it.
//!
//! The replica URL must name one server (not a balancer over several): the positions compared
//! are that server's.

use super::{AnyConnection, DbError, Pool};
use diesel::prelude::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the probe measures the replica.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A replica that has not answered a probe for this long serves nothing, even when it was
/// well before: a host that stops answering without refusing (frozen, partitioned) hangs its
/// probe's query, which would otherwise leave the latest good answer standing.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The longest a read waits for a connection of the replica's pool before it is served by the
/// primary instead (the replica's connections may all be held by queries it does not answer).
pub const CHECKOUT_WITHIN: Duration = Duration::from_millis(100);

/// The samples of the primary's position kept to measure lag (at one a probe, 60 s of them).
const MAX_SAMPLES: usize = 600;

/// Where a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replica,
}

impl Target {
    /// `primary` or `replica`: the value of `Consentry-Served-By` and of the metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// A position in PostgreSQL's write-ahead log (`pg_lsn`), as one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's text form, `16/B374D848` (two hexadecimal halves).
    pub fn parse_pg(text: &str) -> Option<Self> {
        let (high, low) = text.split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Self((u64::from(high) << 32) | u64::from(low)))
    }

    /// The `Consentry-Read-After` token: 16 lower-case hexadecimal digits.
    pub fn token(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Parses a `Consentry-Read-After` token (see [`Lsn::token`]); `None` when malformed.
    pub fn parse_token(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Self)
    }

    /// The position a read must see from the values of its `Consentry-Read-After` field lines:
    /// the highest token of them all, so that a read sent with the tokens of several writes
    /// sees every one of them. A line may hold several tokens separated by commas (RFC 9110
    /// §5.3: a proxy may join repeated lines so); empty elements are ignored (§5.6.1).
    /// `Ok(None)` without any line; `Err` (why, for a problem's `detail`) when a line is not
    /// UTF-8, a token is malformed, or the lines hold no token at all.
    pub fn latest_of<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<Self>, &'static str> {
        let mut latest: Option<Self> = None;
        let mut lines = 0;
        for value in values {
            lines += 1;
            let text = std::str::from_utf8(value).map_err(|_| MALFORMED_TOKEN)?;
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let lsn = Self::parse_token(token).ok_or(MALFORMED_TOKEN)?;
                latest = latest.max(Some(lsn));
            }
        }
        match (lines, latest) {
            (0, _) => Ok(None),
            (_, None) => Err("holds no token; send back the one of a write's answer, or leave the header out"),
            (_, latest) => Ok(latest),
        }
    }
}

/// Why a `Consentry-Read-After` token is refused.
const MALFORMED_TOKEN: &str =
    "is not a token from a write's Consentry-Read-After (16 hexadecimal digits); send it back as received";

/// What the latest probes found.
#[derive(Debug, Default)]
struct Status {
    /// The replica answered the latest probe and is in recovery (not promoted).
    up: bool,
    /// Its replay position at the latest probe.
    replayed: Option<Lsn>,
    /// The latest instant by which the replica had replayed every commit finished on the
    /// primary.
    caught_up_at: Option<Instant>,
    /// When the replica last answered a probe.
    answered_at: Option<Instant>,
    /// (when, the primary's position then), oldest first, from the latest not yet replayed.
    samples: VecDeque<(Instant, Lsn)>,
}

impl Status {
    /// Whether the replica answered a probe lately and had then caught up within `max_lag`.
    fn fresh(&self, max_lag: Duration) -> bool {
        self.answered_at.is_some_and(|at| at.elapsed() <= ANSWER_WITHIN)
            && self.caught_up_at.is_some_and(|at| at.elapsed() <= max_lag)
    }
}

/// The replica, its health and the primary it follows.
pub struct Replica {
    pool: Pool,
    primary: Pool,
    max_lag: Duration,
    status: Mutex<Status>,
    positions: CommitPositions,
}

impl Replica {
    /// A replica at `url` (PostgreSQL only), read through a pool of `pool_size` connections,
    /// used while it lags at most `max_lag` behind `primary`; starts its probe. A replica that
    /// is down at start is not an error: reads go to the primary until it answers.
    pub fn open(url: &str, primary: Pool, pool_size: u32, max_lag: Duration) -> Result<Arc<Self>, DbError> {
        let pool = super::open_replica(url, pool_size)?;
        let replica = Arc::new(Self {
            pool,
            primary,
            max_lag,
            status: Mutex::new(Status::default()),
            positions: CommitPositions::default(),
        });
        replica.probe();
        let status = replica.status();
        // A replica that answered but is not a standby was reported by the probe.
        if !status.up && status.answered_at.is_none() {
            tracing::warn!("the read replica does not answer now; reads go to the primary until it does");
        }
        drop(status);
        spawn_probe(Arc::downgrade(&replica));
        Ok(replica)
    }

    /// The replica's pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The longest lag at which the replica serves reads.
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection of the replica's pool within [`CHECKOUT_WITHIN`].
    pub fn connection(&self) -> Result<super::PooledConnection, r2d2::Error> {
        self.pool.get_within(CHECKOUT_WITHIN)
    }

    /// Runs `f` on a connection of the replica's pool had within [`CHECKOUT_WITHIN`], as
    /// [`super::Pool::run`] does on the primary's.
    pub fn run<T, E>(&self, f: impl FnOnce(&mut super::AnyConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<r2d2::Error> + std::error::Error + 'static,
    {
        self.pool.run_within(CHECKOUT_WITHIN, f)
    }

    /// Where a read is served now: the replica when it answered the latest probe, lags at most
    /// `max_lag`, and (with `after`, a write's position) has replayed up to `after`.
    pub fn route(&self, after: Option<Lsn>) -> Target {
        let status = self.status();
        let fresh = status.fresh(self.max_lag);
        let replayed = match (after, status.replayed) {
            (None, _) => true,
            (Some(after), Some(replayed)) => replayed >= after,
            (Some(_), None) => false,
        };
        if status.up && fresh && replayed {
            Target::Replica
        } else {
            Target::Primary
        }
    }

    /// Whether a read with `after` goes to the primary only because the latest probe found the
    /// replica short of `after` (it is up and keeps up): then [`Replica::replayed_now`] may
    /// find it far enough already.
    pub fn short_of(&self, after: Option<Lsn>) -> bool {
        let Some(after) = after else { return false };
        let status = self.status();
        let fresh = status.fresh(self.max_lag);
        status.up && fresh && status.replayed.is_none_or(|replayed| replayed < after)
    }

    /// Asks the replica for its replay position now (one query; blocking) and records it;
    /// `None` when it does not answer (it is then down until a probe finds it well).
    pub fn replayed_now(&self) -> Option<Lsn> {
        let asked = self
            .connection()
            .ok()
            .and_then(|mut conn| replica_position(&mut conn).map_err(|e| super::note_lost_connection(&e)).ok());
        let mut status = self.status();
        match asked {
            Some((true, Some(replayed))) => {
                status.replayed = status.replayed.max(Some(replayed));
                Some(replayed)
            }
            _ => {
                status.up = false;
                None
            }
        }
    }

    /// The lag now: time since the replica was last known to have replayed everything the
    /// primary had committed. `None` when never measured.
    pub fn lag(&self) -> Option<Duration> {
        self.status().caught_up_at.map(|at| at.elapsed())
    }

    /// A read on the replica failed for want of it: it serves nothing until a probe finds it well.
    pub fn note_failed(&self) {
        let mut status = self.status();
        if status.up {
            tracing::warn!("a read failed on the replica; reading from the primary until it answers");
        }
        status.up = false;
    }

    /// One measurement (see the module's documentation).
    fn probe(&self) {
        let sampled_at = Instant::now();
        let primary = self.primary.get().ok().and_then(|mut conn| primary_position(&mut conn).ok());
        let replica = self.connection().map_err(|e| e.to_string()).and_then(|mut conn| {
            replica_position(&mut conn).map_err(|e| {
                super::note_lost_connection(&e);
                e.to_string()
            })
        });
        let mut status = self.status();
        if let Some(position) = primary {
            status.samples.push_back((sampled_at, position));
            if status.samples.len() > MAX_SAMPLES {
                status.samples.pop_front();
            }
        }
        match replica {
            Ok((in_recovery, replayed)) => {
                if !in_recovery && status.up {
                    tracing::error!("the read replica is not in recovery (promoted?); reading from the primary");
                } else if !in_recovery && status.answered_at.is_none() {
                    // Its first answer (at start, or after it never answered): most likely
                    // DATABASE_REPLICA_URL names the primary, or another server that is no standby.
                    tracing::error!(
                        "the configured read replica (DATABASE_REPLICA_URL) is not a standby: pg_is_in_recovery() is \
                         false there, so it is not a streaming replica of the primary (does the URL name the primary \
                         itself?); reads go to the primary"
                    );
                } else if in_recovery && !status.up {
                    tracing::info!("the read replica answers; reads go to it while it keeps up");
                }
                status.up = in_recovery;
                status.answered_at = Some(Instant::now());
                status.replayed = replayed;
                if let Some(replayed) = replayed {
                    // The latest sample the replica has replayed past; older ones are dropped.
                    if let Some(i) = status.samples.iter().rposition(|(_, p)| *p <= replayed) {
                        status.caught_up_at = Some(status.samples[i].0);
                        status.samples.drain(..i);
                    }
                }
            }
            Err(e) => {
                if status.up {
                    tracing::warn!(error = %e, "the read replica does not answer; reading from the primary");
                }
                status.up = false;
            }
        }
    }

    /// A `Consentry-Read-After` position for a write that has committed: the primary's WAL
    /// insert position, read after this call began (so at or past the write's commit record).
    /// Concurrent callers share one query. `None` when the primary cannot be asked.
    pub async fn commit_position(&self) -> Option<Lsn> {
        self.positions.after_now(&self.primary).await
    }
}

/// Hands out primary positions read after the request for one, one query for all callers that
/// wait together (group commit's idea, for `SELECT pg_current_wal_insert_lsn()`).
#[derive(Default)]
struct CommitPositions {
    /// Callers so far; a caller's ticket is this count when it asked.
    asked: std::sync::atomic::AtomicU64,
    /// Held while a query runs; the latest answer: (the tickets it covers, its position).
    latest: tokio::sync::Mutex<(u64, Option<Lsn>)>,
}

impl CommitPositions {
    async fn after_now(&self, primary: &Pool) -> Option<Lsn> {
        use std::sync::atomic::Ordering;
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut latest = self.latest.lock().await;
        if latest.0 >= ticket {
            // A query that began after this caller asked has answered while it waited.
            if let Some(position) = latest.1 {
                return Some(position);
            }
        }
        let covers = self.asked.load(Ordering::SeqCst);
        let pool = primary.clone();
        let position = actix_web::rt::task::spawn_blocking(move || {
            pool.get().ok().and_then(|mut conn| primary_position(&mut conn).ok())
        })
        .await
        .ok()
        .flatten();
        *latest = (covers, position);
        position
    }
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lsn: String,
}

#[derive(QueryableByName)]
struct Replay {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    in_recovery: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    lsn: Option<String>,
}

fn primary_position(conn: &mut AnyConnection) -> QueryResult<Lsn> {
    let AnyConnection::Postgresql(c) = conn else { return Ok(Lsn(0)) };
    let row: Position = diesel::sql_query("SELECT pg_current_wal_insert_lsn()::text AS lsn").get_result(c)?;
    Ok(Lsn::parse_pg(&row.lsn).unwrap_or(Lsn(0)))
}

fn replica_position(conn: &mut AnyConnection) -> QueryResult<(bool, Option<Lsn>)> {
    let AnyConnection::Postgresql(c) = conn else { return Ok((false, None)) };
    let row: Replay =
        diesel::sql_query("SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn()::text AS lsn")
            .get_result(c)?;
    Ok((row.in_recovery, row.lsn.as_deref().and_then(Lsn::parse_pg)))
}

/// Probes every [`PROBE_EVERY`] until the replica is dropped.
fn spawn_probe(replica: Weak<Replica>) {
    let spawned = std::thread::Builder::new().name("consentry-replica-probe".into()).spawn(move || loop {
        std::thread::sleep(PROBE_EVERY);
        let Some(replica) = replica.upgrade() else { return };
        replica.probe();
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the replica probe; reads stay on the primary");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_postgres_and_tokens_round_trip() {
        assert_eq!(Lsn::parse_pg("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn::parse_pg("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn::parse_pg("B374D848"), None);
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(lsn.token(), "00000016b374d848");
        assert_eq!(Lsn::parse_token(&lsn.token()), Some(lsn));
        assert_eq!(Lsn::parse_token("16/B374D848"), None);
        assert_eq!(Lsn::parse_token(""), None);
        assert_eq!(Lsn::parse_token("00000000000000001"), None, "17 digits");
        assert!(Lsn(1) < Lsn(0x1_0000_0000), "the high half orders first");
    }

    /// Repeated `Consentry-Read-After` lines (or a line of comma-separated tokens): the highest
    /// position wins, whatever the order; one malformed token spoils them all.
    #[test]
    fn the_highest_of_repeated_tokens_is_the_position_to_see() {
        let latest = |lines: &[&str]| Lsn::latest_of(lines.iter().map(|l| l.as_bytes()));
        assert_eq!(latest(&[]), Ok(None));
        assert_eq!(latest(&["00000000000000ff"]), Ok(Some(Lsn(0xff))));
        assert_eq!(latest(&["0000000000000100", "00000000000000ff"]), Ok(Some(Lsn(0x100))));
        assert_eq!(latest(&["00000000000000ff", "0000000000000100"]), Ok(Some(Lsn(0x100))));
        assert_eq!(latest(&["ff, 100 ,", "0a"]), Ok(Some(Lsn(0x100))), "joined by a proxy, an empty element");
        assert_eq!(latest(&["0000000000000100", "0/16B374D8"]), Err(MALFORMED_TOKEN), "the second line malformed");
        assert_eq!(latest(&["100, zz"]), Err(MALFORMED_TOKEN));
        assert!(latest(&[""]).unwrap_err().starts_with("holds no token"), "a line without a token");
        assert!(latest(&[" , "]).unwrap_err().starts_with("holds no token"));
        assert_eq!(Lsn::latest_of([&b"\xff"[..]]), Err(MALFORMED_TOKEN), "not UTF-8");
    }
}
