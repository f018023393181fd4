//! `consentry import`: historical consents from another platform, with their original times,
//! source `import`. Rows are validated like any write (a bad row is reported as `line N: <reason>`
//! and the good rows are kept) and written through the ledger in batches of [`BATCH`] rows per
//! transaction. Each row is written exactly once: its key, its time and the SHA-256 of the row as
//! normalised (subject, purpose, decision, time, revision, region; [`import_key`]), is claimed in
//! `import_keys` in the transaction that writes it, so importing the same file twice adds nothing.
//!
//! Issue 11, item 8's target, 10 million rows in under 10 minutes on PostgreSQL, is what shapes
//! the pipeline: a reader thread parses while rows are written, two writers on PostgreSQL, one
//! statement per batch for the keys and one for the ledger's rows (`bench/import.sh`).
//!
//! The same code serves `consentry import` and `POST /v1/imports` ([`import_body`]).

use crate::db::backend::{is_retryable, write_transaction_with, Plans};
use crate::db::models::naive;
use crate::db::AnyConnection;
use crate::domain::{ConsentSource, SubjectIdentifier};
use crate::ledger::{write_batch, Finish, LedgerError, Outcome, RecordRequest, Submission, TenantRules};
use crate::service::directory::TenantConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::BufRead;
use std::rc::Rc;
use std::sync::Arc;

/// Rows per transaction.
pub const BATCH: usize = 10_000;

/// The most `line N: <reason>` errors `POST /v1/imports` lists (all are counted in `failed`).
pub const MAX_LISTED_ERRORS: usize = 1000;

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header line naming the columns, then one row per decision.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// One row as the file gives it: the names the events endpoint uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub subject: String,
    pub purpose: String,
    /// `granted` or `denied`.
    pub decision: String,
    /// RFC 3339.
    pub occurred_at: String,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub policy_revision: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub region: Option<String>,
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// What an import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Rows read (the header not counted).
    pub rows: u64,
    /// Rows written now.
    pub imported: u64,
    /// Events those rows wrote (a row that repeats the decision in force, at or after its time, writes
    /// none; an older row is history and always writes one).
    pub events: u64,
    /// Rows written by an earlier import of the same rows (or repeated in this file).
    pub already_imported: u64,
    /// Rows refused, each reported as `line N: <reason>`.
    pub failed: u64,
    pub seconds: f64,
}

/// A row ready to be written.
struct Ready {
    stored: String,
    choices: BTreeMap<String, bool>,
    occurred_at: DateTime<Utc>,
    revision: Option<String>,
    region: Option<crate::domain::RegionCode>,
    key: String,
}

fn prepare(config: &TenantConfig, row: Row) -> Result<Ready, String> {
    let subject = SubjectIdentifier::parse(&row.subject).map_err(|e| format!("subject: {e}"))?;
    let decision = match row.decision.trim() {
        "granted" => true,
        "denied" => false,
        other => return Err(format!("decision: '{}' is neither granted nor denied", crate::domain::shown(other))),
    };
    let occurred_at = DateTime::parse_from_rfc3339(row.occurred_at.trim())
        .map(|t| crate::domain::ledger::to_micros(t.with_timezone(&Utc)))
        .map_err(|_| format!("occurred_at: '{}' is not an RFC 3339 time", crate::domain::shown(&row.occurred_at)))?;
    // The problem's text already names the field: `region: '…' is not an ISO 3166-1 …`.
    let region = crate::routes::parse_region(row.region.as_deref()).map_err(|e| e.to_string())?;
    let purpose = row.purpose.trim().to_owned();
    let stored = subject.stored_form(&config.subject_key);
    let mut h = Sha256::new();
    for part in [
        stored.as_str(),
        purpose.as_str(),
        if decision { "granted" } else { "denied" },
        &occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        row.policy_revision.as_deref().unwrap_or(""),
        row.region.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    Ok(Ready {
        stored,
        choices: BTreeMap::from([(purpose, decision)]),
        occurred_at,
        revision: row.policy_revision,
        region,
        key: import_key(occurred_at, &h.finalize()),
    })
}

/// A row's key in `import_keys`: its `occurred_at` (microseconds since 1970, 16 hex digits)
/// then the first 128 bits of the SHA-256 of the row as normalised (32 hex digits). The time
/// first keeps the keys of a history written in time order next to each other in the index,
/// so a batch claims its keys in a few index pages instead of one random page per row (with a
/// random key, the index outgrew the cache at a few million rows and every claim read and
/// wrote a page).
fn import_key(occurred_at: DateTime<Utc>, digest: &[u8]) -> String {
    format!("{:016x}{}", occurred_at.timestamp_micros(), hex::encode(&digest[..16]))
}

/// Rows a reader thread hands to the writer at a time.
const CHUNK: usize = 2_000;

/// One row as the reader thread prepared it: ready to be written, or refused with its reason.
enum Parsed {
    Ready { line: u64, key: String, job: Box<Submission> },
    Failed { line: u64, why: String },
}

/// Rows read, in order, and the input's bytes read up to the last of them.
struct Chunk {
    rows: Vec<Parsed>,
    bytes: u64,
}

/// Imports `input` into the tenant of `config`, reporting each refused row to `report` as
/// `line N: <reason>` and progress (bytes read) to `progress`.
///
/// A reader thread parses and validates rows (and hashes their keys) while the rows are
/// written, [`BATCH`] rows per transaction. With a `second` connection (PostgreSQL; SQLite has
/// one writer at a time), rows are split between two writers by subject (all rows of one
/// identifier go to one writer, in file order, so each chain is written in file order), and
/// the second writer's refusals are reported after those of the caller's.
pub fn import(
    conn: &mut AnyConnection,
    second: Option<&mut AnyConnection>,
    config: &TenantConfig,
    format: Format,
    input: impl BufRead + Send,
    mut report: impl FnMut(String),
    mut progress: impl FnMut(u64),
) -> Result<Summary, LedgerError> {
    let started = std::time::Instant::now();
    let rules = Arc::new(TenantRules::from_config(config, Utc::now())?);
    let tenant_id = rules.tenant_id.as_str();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let (helper_sender, helper_receiver) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let (note, notes) = std::sync::mpsc::channel::<String>();
    let helper_conn = second;
    let mut summary = std::thread::scope(|scope| {
        let helper = helper_conn.map(|conn| {
            scope.spawn(move || {
                let mut report = |line: String| drop(note.send(line));
                write_chunks(conn, tenant_id, helper_receiver, &mut report, &mut |_| {})
            })
        });
        let helper_sender = helper.is_some().then_some(helper_sender);
        let reader = scope.spawn(|| read_chunks(config, &rules, format, input, sender, helper_sender));
        // A writer's receiver is dropped when it returns, early on an error too: the reader
        // then stops at its next chunk for it instead of waiting for ever.
        let written = write_chunks(conn, tenant_id, receiver, &mut report, &mut progress);
        let helped = helper.map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        notes.try_iter().for_each(&mut report);
        let read = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let mut summary = written?;
        if let Some(other) = helped {
            let other = other?;
            summary.imported += other.imported;
            summary.events += other.events;
            summary.already_imported += other.already_imported;
            summary.failed += other.failed;
        }
        summary.rows = read;
        Ok::<_, LedgerError>(summary)
    })?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The reader thread: parses and validates the rows of `input`, sends them in chunks of
/// [`CHUNK`] (rows of subjects hashed to 1 to `helper`, when there is one), and returns how
/// many rows it read (all of them, unless a writer stopped).
fn read_chunks(
    config: &TenantConfig,
    rules: &Arc<TenantRules>,
    format: Format,
    input: impl BufRead,
    sender: std::sync::mpsc::SyncSender<Chunk>,
    helper: Option<std::sync::mpsc::SyncSender<Chunk>>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let is_csv = format == Format::Csv;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut chunks = [Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK)];
    for (line, row, read) in rows(format, input) {
        count += 1;
        bytes = if is_csv { read.max(bytes) } else { bytes + read };
        let parsed = row.and_then(|row| prepare(config, row)).and_then(|r| match submission(rules, &r) {
            Ok(job) => Ok(Parsed::Ready { line, key: r.key, job: Box::new(job) }),
            Err(e) => Err(reason(&e)),
        });
        let parsed = parsed.unwrap_or_else(|why| Parsed::Failed { line, why });
        let to = match (&parsed, &helper) {
            (Parsed::Ready { job, .. }, Some(_)) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                job.subject.hash(&mut h);
                (h.finish() & 1) as usize
            }
            _ => 0,
        };
        chunks[to].push(parsed);
        if chunks[to].len() >= CHUNK {
            let full = std::mem::replace(&mut chunks[to], Vec::with_capacity(CHUNK));
            let sent = match (to, &helper) {
                (1, Some(helper)) => helper.send(Chunk { rows: full, bytes }),
                _ => sender.send(Chunk { rows: full, bytes }),
            };
            if sent.is_err() {
                return count;
            }
        }
    }
    let [mine, theirs] = chunks;
    if let Some(helper) = &helper {
        let _ = helper.send(Chunk { rows: theirs, bytes });
    }
    let _ = sender.send(Chunk { rows: mine, bytes });
    count
}

/// The writer: takes the reader's chunks in order and writes their rows in batches of [`BATCH`].
fn write_chunks(
    conn: &mut AnyConnection,
    tenant_id: &str,
    receiver: std::sync::mpsc::Receiver<Chunk>,
    report: &mut impl FnMut(String),
    progress: &mut impl FnMut(u64),
) -> Result<Summary, LedgerError> {
    let mut summary = Summary::default();
    let mut pending = Pending::default();
    let mut keys: HashSet<String> = HashSet::new();
    let mut bytes = 0;
    for chunk in receiver {
        for parsed in chunk.rows {
            match parsed {
                Parsed::Ready { key, .. } if keys.contains(&key) => summary.already_imported += 1,
                Parsed::Ready { line, key, job } => {
                    keys.insert(key.clone());
                    pending.lines.push(line);
                    pending.keys.push(key);
                    pending.jobs.push(*job);
                }
                Parsed::Failed { line, why } => {
                    summary.failed += 1;
                    report(format!("line {line}: {why}"));
                }
            }
        }
        bytes = chunk.bytes;
        if pending.jobs.len() >= BATCH {
            flush(conn, tenant_id, &mut pending, &mut summary, report)?;
            keys.clear();
            progress(bytes);
        }
    }
    flush(conn, tenant_id, &mut pending, &mut summary, report)?;
    progress(bytes);
    Ok(summary)
}

/// `POST /v1/imports`: imports a request body into the caller's tenant on a pooled connection,
/// as [`import`] does a file. Returns the summary and the first [`MAX_LISTED_ERRORS`] refused
/// rows as `line N: <reason>`. Each batch of [`BATCH`] rows commits on its own: after an error,
/// the rows before it are kept and sending the same body again adds only the others.
pub async fn import_body(
    state: &crate::state::AppState,
    config: std::sync::Arc<TenantConfig>,
    format: Format,
    body: actix_web::web::Bytes,
) -> Result<(Summary, Vec<String>), crate::error::ApiError> {
    check_header(format, &body)?;
    let pool = state.pool.clone();
    state
        .db(move |conn| {
            let mut errors = Vec::new();
            // PostgreSQL: a second writer, on a connection idle now (the server's other
            // requests are not kept waiting for one).
            let mut second = match conn {
                AnyConnection::Postgresql(_) => pool.try_get(),
                AnyConnection::Sqlite(_) => None,
            };
            let summary = import(
                conn,
                second.as_deref_mut(),
                &config,
                format,
                std::io::Cursor::new(body),
                |line| {
                    if errors.len() < MAX_LISTED_ERRORS {
                        errors.push(line);
                    }
                },
                |_| {},
            )?;
            Ok((summary, errors))
        })
        .await
}

/// The columns every row needs, by the names the events endpoint uses.
const REQUIRED_COLUMNS: [&str; 4] = ["subject", "purpose", "decision", "occurred_at"];

/// Why a CSV header cannot be imported: a required column it lacks (else `None`). Without this,
/// a file whose first line is not the header was read as a header and every row refused.
fn missing_columns(headers: &csv::StringRecord) -> Option<String> {
    let missing: Vec<&str> = REQUIRED_COLUMNS.into_iter().filter(|c| !headers.iter().any(|h| h == *c)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the header has no {} column{}: the first line names the columns (subject, purpose, decision, \
             occurred_at; policy_revision and region optional)",
            missing.join(", "),
            if missing.len() == 1 { "" } else { "s" }
        )
    })
}

/// Refuses a CSV body whose first line is not a usable header (`POST /v1/imports`: 400, nothing
/// read). NDJSON has no header.
///
/// Errors: 400 naming the body, with the columns missing.
pub fn check_header(format: Format, body: &[u8]) -> Result<(), crate::error::ApiError> {
    if !matches!(format, Format::Csv) {
        return Ok(());
    }
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::Headers).from_reader(body);
    let why = match reader.headers() {
        Ok(headers) => missing_columns(headers),
        Err(e) => Some(format!("the header: {e}")),
    };
    match why {
        Some(why) => Err(crate::error::ApiError::invalid("body", why)),
        None => Ok(()),
    }
}

/// The line breaks a CSV reader has read past, for line numbers in its reports.
#[derive(Default)]
struct Newlines {
    /// Offsets of the `\n` bytes read but not yet counted, in order.
    pending: VecDeque<u64>,
    /// `\n` bytes counted (before the last row asked about).
    counted: u64,
    /// Bytes read so far.
    read: u64,
}

impl Newlines {
    /// The 1-based line of the byte before `end` (a row's terminator, or its last byte at the
    /// end of the input): rows are asked about in order, so counted breaks are dropped.
    fn line_of(&mut self, end: u64) -> u64 {
        while self.pending.front().is_some_and(|&at| at + 1 < end) {
            self.pending.pop_front();
            self.counted += 1;
        }
        self.counted + 1
    }
}

/// A reader that notes where its line breaks are as the CSV reader pulls bytes through it.
struct LineCounter<R> {
    inner: R,
    newlines: Rc<RefCell<Newlines>>,
}

impl<R: std::io::Read> std::io::Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self.newlines.borrow_mut();
        let start = lines.read;
        lines.pending.extend(buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| start + i as u64));
        lines.read += n as u64;
        Ok(n)
    }
}

/// Reads rows from `input` one at a time: `(line, row or why not, bytes read so far)`.
pub fn rows<'a>(
    format: Format,
    input: impl BufRead + 'a,
) -> Box<dyn Iterator<Item = (u64, Result<Row, String>, u64)> + 'a> {
    match format {
        Format::Ndjson => Box::new(input.lines().enumerate().filter_map(|(i, line)| {
            let n = i as u64 + 1;
            match line {
                Ok(text) => {
                    let len = text.len() as u64 + 1;
                    // A file saved with a byte order mark (as Windows tools do) starts with one,
                    // and files joined with `cat` carry one at the start of a later line.
                    let row = text.strip_prefix('\u{feff}').unwrap_or(&text);
                    (!row.trim().is_empty()).then(|| (n, ndjson_row(row), len))
                }
                Err(e) => Some((n, Err(format!("cannot read: {e}")), 0)),
            }
        })),
        Format::Csv => {
            let newlines = Rc::new(RefCell::new(Newlines::default()));
            let counted = LineCounter { inner: input, newlines: Rc::clone(&newlines) };
            let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::Headers).from_reader(counted);
            let headers = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) => return Box::new(std::iter::once((1, Err(format!("the header: {e}")), 0))),
            };
            if let Some(why) = missing_columns(&headers) {
                return Box::new(std::iter::once((1, Err(why), 0)));
            }
            let mut record = csv::StringRecord::new();
            Box::new(std::iter::from_fn(move || {
                match reader.read_record(&mut record) {
                    Ok(false) => None,
                    Ok(true) => {
                        // The line the row ends on, counted here: the csv crate's own line is
                        // where the previous row ended, one early after a CRLF or a blank line.
                        let bytes = reader.position().byte();
                        let line = newlines.borrow_mut().line_of(bytes);
                        let row = record.deserialize::<Row>(Some(&headers)).map_err(|e| match e.kind() {
                            csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                            _ => e.to_string(),
                        });
                        Some((line, row, bytes))
                    }
                    Err(e) => {
                        let line = newlines.borrow_mut().line_of(reader.position().byte());
                        let why = match e.kind() {
                            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                                format!("{len} fields where the header has {expected_len}")
                            }
                            _ => e.to_string(),
                        };
                        Some((line, Err(why), reader.position().byte()))
                    }
                }
            }))
        }
    }
}

/// The submission of one row: validated against the tenant's rules like any write.
fn submission(rules: &Arc<TenantRules>, r: &Ready) -> Result<Submission, LedgerError> {
    let req = RecordRequest {
        policy_revision: r.revision.as_deref(),
        region: r.region.as_ref(),
        occurred_at: Some(r.occurred_at),
        ..RecordRequest::new(&r.stored, &r.choices, ConsentSource::Import)
    };
    Ok(Submission::new(Arc::clone(rules), &req, 201, Finish::empty())?.quiet())
}

/// Rows ready to be written: their lines, keys and submissions, in step.
#[derive(Default)]
struct Pending {
    lines: Vec<u64>,
    keys: Vec<String>,
    jobs: Vec<Submission>,
}

/// Why a batch's transaction was rolled back.
enum Rollback {
    Ledger(LedgerError),
    /// Some keys were imported before: the keys this batch could claim (the others are dropped
    /// and the batch runs again).
    Imported(HashSet<String>),
}

impl From<diesel::result::Error> for Rollback {
    fn from(e: diesel::result::Error) -> Self {
        Self::Ledger(e.into())
    }
}

impl From<LedgerError> for Rollback {
    fn from(e: LedgerError) -> Self {
        Self::Ledger(e)
    }
}

/// Writes the pending rows in one transaction: their keys are claimed in `import_keys`
/// ([`crate::db::backend::claim_import_keys`]), then the rows go through the ledger
/// ([`write_batch`]: a constant number of statements for the batch). When some keys were
/// imported before, it rolls back, drops their rows (`already_imported`) and runs again with
/// the others; so does a retryable conflict with another writer.
fn flush(
    conn: &mut AnyConnection,
    tenant_id: &str,
    pending: &mut Pending,
    summary: &mut Summary,
    report: &mut impl FnMut(String),
) -> Result<(), LedgerError> {
    let mut attempt = 0;
    let outcomes = loop {
        if pending.jobs.is_empty() {
            return Ok(());
        }
        let now = naive(Utc::now());
        let result = write_transaction_with(conn, Plans::Generic, |conn| {
            crate::db::backend::compress_wal_in_transaction(conn)?;
            let claimed = crate::db::backend::claim_import_keys(conn, tenant_id, &pending.keys, now)?;
            if claimed.len() < pending.keys.len() {
                return Err(Rollback::Imported(claimed.into_iter().collect()));
            }
            Ok(write_batch(conn, &mut pending.jobs)?)
        });
        match result {
            Ok(outcomes) => break outcomes,
            Err(Rollback::Imported(mut claimed)) => {
                let rows = std::mem::take(pending);
                for ((line, key), job) in rows.lines.into_iter().zip(rows.keys).zip(rows.jobs) {
                    // `remove`: a key twice in the batch is kept once (the claim can only shrink).
                    if claimed.remove(&key) {
                        pending.lines.push(line);
                        pending.keys.push(key);
                        pending.jobs.push(job);
                    } else {
                        summary.already_imported += 1;
                    }
                }
            }
            Err(Rollback::Ledger(LedgerError::Db(e))) if attempt < 3 && is_retryable(&e) => attempt += 1,
            Err(Rollback::Ledger(e)) => return Err(e),
        }
    };
    let rows = std::mem::take(pending);
    for (outcome, line) in outcomes.into_iter().zip(rows.lines) {
        match outcome {
            Ok(Outcome::Fresh { recorded, .. }) => {
                summary.imported += 1;
                summary.events += recorded.event_ids.len() as u64;
                crate::metrics::events_recorded(crate::domain::ConsentSource::Import, recorded.event_ids.len());
            }
            Ok(Outcome::Replay { .. }) => summary.already_imported += 1,
            Err(e) => {
                summary.failed += 1;
                report(format!("line {line}: {}", reason(&e)));
            }
        }
    }
    Ok(())
}

/// Why the ledger refused a row, naming the row's column: a write names a purpose as
/// `choices.<purpose>`, an import row in its `purpose` column.
fn reason(e: &LedgerError) -> String {
    let field = |f: &str| if f == "choices" || f.starts_with("choices.") { "purpose".to_owned() } else { f.to_owned() };
    match e {
        LedgerError::Field(f) => format!("{}: {}", field(&f.field), f.message),
        LedgerError::Fields(fs) => {
            fs.iter().map(|f| format!("{}: {}", field(&f.field), f.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

/// Why an NDJSON line that is not an object is not a row.
const ROW_IS_AN_OBJECT: &str =
    "a row is a JSON object, {\"subject\": …, \"purpose\": …, \"decision\": …, \"occurred_at\": …}";

/// One NDJSON line as a row, or why not, naming the column at fault (`decision: invalid type:
/// boolean `true`, expected a string`).
fn ndjson_row(text: &str) -> Result<Row, String> {
    if !text.trim_start().starts_with('{') {
        return Err(ROW_IS_AN_OBJECT.into());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let row = serde_path_to_error::deserialize::<_, Row>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let why = json_reason(e.inner());
        match e.inner().classify() {
            serde_json::error::Category::Data if !path.is_empty() && path != "." => format!("{path}: {why}"),
            serde_json::error::Category::Data => match crate::extract::field_problem(&why) {
                Some((field, what)) => format!("{field}: {what}"),
                None => why,
            },
            _ => why,
        }
    })?;
    de.end().map_err(|e| json_reason(&e))?;
    Ok(row)
}

/// Why an NDJSON line is not a row, without serde's ` at line 1 column M` (the line is one
/// line of the file, reported as `line N`): a syntax error keeps its column, once
/// (`expected `:` at column 12`); a wrong field needs none (`missing field `purpose``).
fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let message = text.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&text);
    match e.classify() {
        Category::Syntax | Category::Eof => format!("{message} at column {}", e.column()),
        Category::Data | Category::Io => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{import_key, rows, Format, ROW_IS_AN_OBJECT};

    /// Keys sort by the row's time (what keeps a time-ordered file's claims in few index
    /// pages) and differ for rows of one instant that differ.
    #[test]
    fn import_keys_lead_with_the_time_of_the_row() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let early = import_key(at("2020-01-01T00:00:00Z"), &b);
        let late = import_key(at("2024-06-01T12:00:00.000001Z"), &a);
        assert!(early < late, "{early} < {late}");
        assert_eq!(early, format!("{:016x}{}", 1_577_836_800_000_000i64, "02".repeat(16)));
        assert_ne!(import_key(at("2020-01-01T00:00:00Z"), &a), early);
        assert_eq!(early.len(), 48);
    }

    /// An NDJSON line that is not a row says why once, with the column for a syntax error.
    #[test]
    fn ndjson_errors_state_the_column_once() {
        let text = "{\"subject\": \"user:1\" \"purpose\": \"analytics\"}\n\
                    {\"subject\": \"user:1\", \"purpose\": \"analytics\", \"decision\": \"granted\"}\n\
                    {\"subject\": \"user:1\", \"purpose\": \"analytics\", \"decision\": true}\n\
                    [1]\n\
                    \"just a string\"\n\
                    {\"subject\": \"user:1\",";
        let errors: Vec<(u64, String)> =
            rows(Format::Ndjson, std::io::Cursor::new(text)).map(|(line, row, _)| (line, row.unwrap_err())).collect();
        assert_eq!(
            errors,
            [
                (1, "expected `,` or `}` at column 22".to_owned()),
                (2, "occurred_at: is required".to_owned()),
                (3, "decision: invalid type: boolean `true`, expected a string".to_owned()),
                (4, ROW_IS_AN_OBJECT.to_owned()),
                (5, ROW_IS_AN_OBJECT.to_owned()),
                (6, "EOF while parsing a value at column 21".to_owned()),
            ]
        );
    }

    /// A file saved with a byte order mark keeps its first row (the csv reader drops it too).
    #[test]
    fn an_ndjson_file_may_start_with_a_byte_order_mark() {
        let row = "{\"subject\": \"user:1\", \"purpose\": \"analytics\", \"decision\": \"granted\", \
                   \"occurred_at\": \"2024-01-01T00:00:00Z\"}";
        // One file saved with a BOM; then two such files joined, the first ending in a blank line.
        for (text, lines) in
            [(format!("\u{feff}{row}\n"), vec![1]), (format!("\u{feff}{row}\n\u{feff}\n\u{feff}{row}\n"), vec![1, 3])]
        {
            let parsed: Vec<_> = rows(Format::Ndjson, std::io::Cursor::new(text))
                .map(|(line, row, _)| (line, row.map(|r| r.subject)))
                .collect();
            let expected: Vec<_> = lines.into_iter().map(|line| (line, Ok("user:1".to_owned()))).collect();
            assert_eq!(parsed, expected);
        }
    }

    /// The line of each row as a person counts it: CRLF line ends, blank lines and a quoted field
    /// over two lines (its row is reported at the line it ends on).
    #[test]
    fn csv_rows_are_reported_at_their_line() {
        let text = "subject,purpose,decision,occurred_at\r\n\
                    user:1,analytics,granted,2024-01-01T00:00:00Z\r\n\
                    user:2,analytics,bogus,2024-01-01T00:00:00Z\r\n\
                    \r\n\
                    user:3,analytics,granted\r\n\
                    \n\
                    user:4,\"two\nlines\",granted,2024-01-01T00:00:00Z\n\
                    user:5,analytics,denied,2024-01-01T00:00:00Z";
        let lines: Vec<(u64, bool)> =
            rows(Format::Csv, std::io::Cursor::new(text)).map(|(line, row, _)| (line, row.is_ok())).collect();
        assert_eq!(lines, vec![(2, true), (3, true), (5, false), (8, true), (9, true)]);
    }
}
