//! Recording decisions: one event per changed purpose, exactly once per `Idempotency-Key`, each
//! linked into the subject's hash chain.
//!
//! Submissions are validated first ([`Submission::new`]: nothing invalid is ever written) and
//! then written in batches ([`write_batch`]): several submissions, of any subjects and tenants,
//! in one transaction with a constant number of statements (group commit; see
//! `service::writer`). Two submissions for one subject in one batch chain in order. A batch of
//! one is the single path ([`record_one`]).

use super::events::describe_events;
use super::outbox::{self, ConsentChange};
use super::view::{SubjectView, TenantRules};
use super::LedgerError;
use crate::db::backend::{self, write_transaction_retrying_with, Plans};
use crate::db::models::event::NewEvent;
use crate::db::models::idempotency::StoredResponse;
use crate::db::models::receipt::ReceiptRow;
use crate::db::models::state::StateRow;
use crate::db::models::webhook::Webhook;
use crate::db::models::{naive, new_id, utc};
use crate::db::AnyConnection;
use crate::domain::ledger::{to_micros, GENESIS_HASH};
use crate::domain::receipt::with_receipt;
use crate::domain::webhook::WebhookEventType;
use crate::domain::{Choices, ConsentSource, Decision, FieldError, PurposeKey, RegionCode, RevisionDate, Status};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How far in the future an `occurred_at` may lie, for clock skew between systems.
const MAX_CLOCK_SKEW: Duration = Duration::seconds(60);

/// One submission of choices for one data subject, as a caller gives it.
pub struct RecordRequest<'a> {
    /// The subject's identifier in its stored form (`SubjectIdentifier::stored_form`).
    pub subject: &'a str,
    pub choices: &'a BTreeMap<String, bool>,
    /// The revision date the person saw (`YYYY-MM-DD`); must be a revision in force.
    pub policy_revision: Option<&'a str>,
    pub source: ConsentSource,
    pub region: Option<&'a RegionCode>,
    /// When the person decided; defaults to now. Not in the future.
    pub occurred_at: Option<DateTime<Utc>>,
    pub site_id: Option<&'a str>,
    /// The request carried `Sec-GPC: 1`: an opt-out of sale/sharing (11 CCR §7025).
    pub gpc: bool,
    pub idempotency: Option<IdempotencyClaim>,
    /// What the person was shown (a verified presentation token), stored with the events.
    pub presentation: Option<&'a crate::domain::presentation::Shown>,
}

impl<'a> RecordRequest<'a> {
    /// A decision recorded for `subject` (stored form) from `source`, with nothing else known:
    /// no policy revision, region, site, GPC signal, idempotency key or presentation, and
    /// occurring now. Set the rest with struct update syntax (`..RecordRequest::new(…)`).
    pub fn new(subject: &'a str, choices: &'a BTreeMap<String, bool>, source: ConsentSource) -> Self {
        Self {
            subject,
            choices,
            policy_revision: None,
            source,
            region: None,
            occurred_at: None,
            site_id: None,
            gpc: false,
            idempotency: None,
            presentation: None,
        }
    }
}

/// An `Idempotency-Key` and what it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// `site:<id>` or `api`: keys of different callers never collide.
    pub scope: String,
    pub key: String,
    /// SHA-256 (hex) of the request's method, path and body.
    pub request_hash: String,
}

/// What a submission recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub subject_id: String,
    /// Ids of the events written, in the order written (empty when nothing changed).
    pub event_ids: Vec<String>,
    /// The events written, in the order written (what a receipt covers); empty for a
    /// [`Submission::quiet`] one.
    pub events: Vec<NewEvent>,
    /// The subject's view after the write; empty for a [`Submission::quiet`] submission.
    pub view: SubjectView,
    /// A GPC signal was present and honoured.
    pub gpc_honored: bool,
    /// Purposes granted while a GPC signal was present: recorded, but the opt-out stays in
    /// force (11 CCR §7025(c)(3)).
    pub gpc_conflicts: Vec<String>,
}

/// A fresh result with its response body, or the stored response of an earlier request with
/// the same key.
#[derive(Debug)]
pub enum Outcome {
    Fresh { recorded: Recorded, body: String },
    Replay { status: u16, body: String },
}

/// What makes a submission's response body, which is stored for idempotent replays, from what
/// it recorded. It may run more than once (a batch that failed is retried one by one). Made by
/// [`Finish::render`], [`Finish::empty`] or [`Finish::writing`].
pub struct Finish(FinishKind);

type RenderFn = Box<dyn FnMut(&Recorded) -> Result<String, LedgerError> + Send>;
type WriteFn = Box<dyn FnMut(&mut AnyConnection, &Recorded) -> Result<String, LedgerError> + Send>;

enum FinishKind {
    Render(RenderFn),
    Write(WriteFn),
}

impl Finish {
    /// A body rendered from what was recorded, with nothing written: on PostgreSQL the batch
    /// renders it before it writes, and writes the events, the stored response and the receipt
    /// in one statement.
    pub fn render(f: impl FnMut(&Recorded) -> Result<String, LedgerError> + Send + 'static) -> Self {
        Self(FinishKind::Render(Box::new(f)))
    }

    /// An empty body (a caller that renders its own response).
    pub fn empty() -> Self {
        Self::render(|_| Ok(String::new()))
    }

    /// Writes what belongs with the events, in their transaction and after them (an opt-out
    /// request, say), then renders the body.
    pub fn writing(
        f: impl FnMut(&mut AnyConnection, &Recorded) -> Result<String, LedgerError> + Send + 'static,
    ) -> Self {
        Self(FinishKind::Write(Box::new(f)))
    }

    fn writes(&self) -> bool {
        matches!(self.0, FinishKind::Write(_))
    }

    fn run(&mut self, conn: &mut AnyConnection, recorded: &Recorded) -> Result<String, LedgerError> {
        match &mut self.0 {
            FinishKind::Render(f) => f(recorded),
            FinishKind::Write(f) => f(conn, recorded),
        }
    }
}

/// Seals what a submission recorded with a signed receipt, in its transaction: given what was
/// recorded, returns the receipt's row, which the batch stores with the others in one statement
/// and whose JWS the response carries as its last member, `receipt`. It may run more than once (a
/// batch that failed is retried one by one).
/// Shared (`Arc`): the batch signs its receipts on a thread of its own, and keeps the seals for a
/// retry.
pub type Seal = Arc<dyn Fn(&Recorded) -> Result<ReceiptRow, LedgerError> + Send + Sync>;

/// A validated submission, ready to be written.
pub struct Submission {
    /// Shared: an import's rows are each a submission of the same rules.
    pub rules: Arc<TenantRules>,
    /// The stored identifier of the subject.
    pub subject: String,
    choices: Choices,
    revision: Option<RevisionDate>,
    explicit_occurred_at: Option<DateTime<Utc>>,
    source: ConsentSource,
    region: Option<RegionCode>,
    site_id: Option<String>,
    gpc: bool,
    pub idempotency: Option<IdempotencyClaim>,
    presentation_sha256: Option<String>,
    /// The HTTP status stored with an idempotent response.
    status: u16,
    finish: Finish,
    seal: Option<Seal>,
    /// The subject as its response shows it, when that is an email address or phone number
    /// (`email:ada@example.com`): the response stored for its idempotency key shows the stored
    /// form (`email:h:…`) instead, and a replay the clear form again.
    shown: Option<String>,
    /// Nothing renders what it recorded (an import): its `Recorded` has an empty `view`.
    quiet: bool,
}

impl Submission {
    /// Validates `req` against `rules`. With `gpc` set, `choices` may be empty: the request then
    /// only applies the signal.
    ///
    /// Errors: [`LedgerError::Field`] for unknown purposes, refused `notice_only` purposes, a bad
    /// `policy_revision`, `occurred_at` in the future or before 1970, a grant under an opt-out
    /// source.
    pub fn new(
        rules: impl Into<Arc<TenantRules>>,
        req: &RecordRequest<'_>,
        status: u16,
        finish: Finish,
    ) -> Result<Self, LedgerError> {
        let rules = rules.into();
        let choices = if req.choices.is_empty() && req.gpc {
            Choices::none()
        } else {
            Choices::parse(req.choices, |k| rules.purpose(k.as_str()).map(|p| p.model_in(req.region)))?
        };
        let revision = validate_revision(&rules, req.policy_revision)?;
        let occurred_at = req.occurred_at.map(to_micros);
        if occurred_at.is_some_and(|t| t > rules.now + MAX_CLOCK_SKEW) {
            return Err(FieldError::new("occurred_at", "is in the future: it is when the person decided").into());
        }
        if occurred_at.is_some_and(|t| t.timestamp() < 0) {
            return Err(
                FieldError::new("occurred_at", "is before 1970: not a decision this ledger can have seen").into()
            );
        }
        if req.source.is_opt_out_signal() && choices.iter().any(|(_, d)| *d == Decision::Granted) {
            return Err(FieldError::new(
                "source",
                format!("'{}' records opt-outs: every choice must be false", req.source),
            )
            .into());
        }
        Ok(Self {
            rules,
            subject: req.subject.to_owned(),
            choices,
            revision,
            explicit_occurred_at: occurred_at,
            source: req.source,
            region: req.region.cloned(),
            site_id: req.site_id.map(str::to_owned),
            gpc: req.gpc,
            idempotency: req.idempotency.clone(),
            presentation_sha256: req.presentation.map(|p| p.sha256.clone()),
            status,
            finish,
            seal: None,
            shown: None,
            quiet: false,
        })
    }

    /// The submission of a caller that renders nothing of what it recorded (`consentry import`):
    /// the subject's view is not evaluated (its `Recorded::view` is empty), the events not
    /// kept twice (its `Recorded::events` is empty; `event_ids` names them).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// The submission with a signed receipt: see [`Seal`].
    pub fn sealed_by(mut self, seal: Seal) -> Self {
        self.seal = Some(seal);
        self
    }

    /// The submission of a subject that its response shows in clear (an email address or phone
    /// number, `Display` form): see the field `shown`.
    pub fn showing(mut self, clear: Option<String>) -> Self {
        self.shown = clear;
        self
    }

    /// `body` with the subject as the response shows it (`"email:…"`) replaced by its stored
    /// form (`to_stored`: what is kept holds no address or number), or back (a replay shows the
    /// one the request carries: the same request, so the same subject).
    fn swap_subject(&self, body: String, to_stored: bool) -> String {
        let Some(clear) = &self.shown else { return body };
        let (clear, stored) = (serde_json::to_string(clear), serde_json::to_string(&self.subject));
        let (Ok(clear), Ok(stored)) = (clear, stored) else { return body };
        if to_stored {
            body.replace(&clear, &stored)
        } else {
            body.replace(&stored, &clear)
        }
    }

    /// The key under which this submission's response is stored, if it has one.
    pub fn idempotency_slot(&self) -> Option<(&str, &str, &str)> {
        self.idempotency.as_ref().map(|c| (self.rules.tenant_id.as_str(), c.scope.as_str(), c.key.as_str()))
    }
}

/// Writes one submission in its own transaction, run again after an error that
/// [`is_retryable`] (two requests creating the same subject at once, a merge of its subject
/// while it waited, a serialization failure): [`write_transaction_retrying_with`], with generic
/// plans ([`Plans::Generic`], as every batch).
pub fn record_one(conn: &mut AnyConnection, submission: &mut Submission) -> Result<Outcome, LedgerError> {
    write_transaction_retrying_with(conn, Plans::Generic, |conn| write_batch(conn, std::slice::from_mut(submission)))?
        .pop()
        .unwrap_or_else(|| Err(diesel::result::Error::NotFound.into()))
}

/// Validates and writes one submission at once (tools and tests; the service batches).
pub fn record_choices(
    conn: &mut AnyConnection,
    rules: TenantRules,
    req: &RecordRequest<'_>,
    status: u16,
    finish: Finish,
) -> Result<Outcome, LedgerError> {
    record_one(conn, &mut Submission::new(rules, req, status, finish)?)
}

/// The stored first response for `claim`, when there is one: replayed (with its receipt, stored
/// apart) if the request is the same, refused if the key was used for another request.
fn replay(
    job: &Submission,
    claim: &IdempotencyClaim,
    stored: Option<backend::Stored>,
) -> Result<Option<Outcome>, LedgerError> {
    match stored {
        None => Ok(None),
        Some(stored) if stored.response.request_hash == claim.request_hash => {
            let status = u16::try_from(stored.response.status).unwrap_or(201);
            let body = job.swap_subject(stored.response.response, false);
            let body = match stored.receipt {
                Some(jws) => with_receipt(&body, &jws),
                None => body,
            };
            Ok(Some(Outcome::Replay { status, body }))
        }
        // Quoted as error messages quote what callers send: a key that is an email address or a
        // token is withheld from the problem body.
        Some(_) => Err(LedgerError::IdempotencyKeyReused(crate::domain::shown(&claim.key))),
    }
}

/// The revision the person saw must be published and in force.
fn validate_revision(rules: &TenantRules, raw: Option<&str>) -> Result<Option<RevisionDate>, LedgerError> {
    let Some(raw) = raw else { return Ok(None) };
    let date = RevisionDate::parse(raw).map_err(|m| FieldError::new("policy_revision", m))?;
    if rules.revisions.iter().any(|r| r.revision_date == date) {
        return Ok(Some(date));
    }
    let in_force: Vec<String> =
        rules.revision_rows.iter().map(|r| format!("{} {}", r.policy_key, r.revision_date)).collect();
    Err(FieldError::new(
        "policy_revision",
        if in_force.is_empty() {
            format!("no revision dated {date} is in force: no policy revision is in force yet")
        } else {
            format!("no revision dated {date} is in force (in force: {})", in_force.join(", "))
        },
    )
    .into())
}

/// The time of the next decision: now, but never earlier than one already handed out by this
/// process (so decisions of one subject get increasing times in the order they are written,
/// even within one batch).
fn next_time() -> DateTime<Utc> {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = to_micros(Utc::now()).timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let t = now.max(last + 1);
        match LAST.compare_exchange_weak(last, t, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return DateTime::from_timestamp_micros(t).unwrap_or_else(Utc::now),
            Err(seen) => last = seen,
        }
    }
}

/// The fewest receipts a batch signs on a thread of its own (see [`write_batch`]).
const SIGN_APART_FROM: usize = 4;

/// A subject as the batch sees it: its chain head and states, updated job by job.
struct SubjectSlot {
    tenant_id: String,
    subject_id: String,
    is_new: bool,
    head: String,
    states: HashMap<String, StateRow>,
    changed: bool,
}

/// Writes `jobs` in the caller's transaction, with a constant number of statements for the
/// whole batch: one read (stored responses, identifiers, webhooks: [`backend::batch_reads`]),
/// the known subjects' locks and states, then one write of the subjects, identifiers, events,
/// states, chain heads, stored responses and receipts ([`backend::write_batch_rows`]) when
/// every job's [`Finish`] only renders; otherwise the rows, each job's finish, then the stored
/// responses and receipts. Then each job's webhook deliveries, if its tenant has webhooks for
/// consent changes. On PostgreSQL a batch of new subjects is four round trips with `BEGIN` and
/// `COMMIT`, of known ones six. Returns each job's outcome in order; an
/// `Err` of a job (a reused idempotency key) leaves the others alone. An `Err` of the whole is a
/// database error: the caller rolls back and may retry the jobs one by one.
///
/// Jobs must not share an idempotency key (the caller splits such batches).
pub fn write_batch(
    conn: &mut AnyConnection,
    jobs: &mut [Submission],
) -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError> {
    let mut outcomes: Vec<Option<Result<Outcome, LedgerError>>> = (0..jobs.len()).map(|_| None).collect();
    // One read for the batch: the stored responses of its idempotency keys, the subjects of its
    // identifiers (of every job: a replay's is read for nothing) and its tenants' webhooks.
    let claimed: Vec<usize> = (0..jobs.len()).filter(|i| jobs[*i].idempotency.is_some()).collect();
    let keys: Vec<(&str, &str, &str)> = claimed.iter().filter_map(|i| jobs[*i].idempotency_slot()).collect();
    let identifiers: Vec<(&str, &str)> =
        jobs.iter().map(|j| (j.rules.tenant_id.as_str(), j.subject.as_str())).collect();
    let mut tenants: Vec<&str> = identifiers.iter().map(|(t, _)| *t).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let backend::BatchReads { stored, known, mut hooks } = backend::batch_reads(conn, &keys, &identifiers, &tenants)?;
    for (i, stored) in claimed.iter().zip(stored) {
        let Some(claim) = &jobs[*i].idempotency else { continue };
        outcomes[*i] = replay(&jobs[*i], claim, stored).transpose();
    }
    let active: Vec<usize> = (0..jobs.len()).filter(|i| outcomes[*i].is_none()).collect();

    // Unknown identifiers get a new subject (inserted below). One slot per subject: two
    // identifiers of one person (linked) share it, so its chain never forks.
    let mut slot_of: HashMap<(String, String), usize> = HashMap::new();
    let mut slot_of_subject: HashMap<String, usize> = HashMap::new();
    let mut slots: Vec<SubjectSlot> = Vec::new();
    for &i in &active {
        let key = (jobs[i].rules.tenant_id.clone(), jobs[i].subject.clone());
        if slot_of.contains_key(&key) {
            continue;
        }
        let (subject_id, is_new) = match known.get(&key) {
            Some(id) => (id.clone(), false),
            None => (new_id(), true),
        };
        let slot = *slot_of_subject.entry(subject_id.clone()).or_insert_with(|| {
            slots.push(SubjectSlot {
                tenant_id: key.0.clone(),
                subject_id,
                is_new,
                head: GENESIS_HASH.to_owned(),
                states: HashMap::new(),
                changed: false,
            });
            slots.len() - 1
        });
        slot_of.insert(key, slot);
    }
    let existing: Vec<usize> = (0..slots.len()).filter(|s| !slots[*s].is_new).collect();
    let mut slot_of_job: Vec<usize> = vec![usize::MAX; jobs.len()];
    for &i in &active {
        slot_of_job[i] = slot_of[&(jobs[i].rules.tenant_id.clone(), jobs[i].subject.clone())];
    }

    // Lock the known subjects (in id order, so batches never deadlock on them) and read them.
    if !existing.is_empty() {
        let ids: Vec<&str> = existing.iter().map(|s| slots[*s].subject_id.as_str()).collect();
        let locked = backend::lock_subjects(conn, &ids)?;
        // A merge (identity linking) that committed between resolving the identifiers and
        // locking their subjects moved the identifiers to the surviving subject, with the
        // states: written here, the decisions would land on a subject nothing reads any more.
        // Retryable: the batch is written again one by one, each resolving afresh.
        if let Some(merged) = locked.iter().find(|s| s.merged_into.is_some()) {
            return Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                Box::new(format!("subject {} was merged while this batch waited for it", merged.id)),
            )
            .into());
        }
        let heads: HashMap<String, String> = locked.into_iter().map(|s| (s.id, s.last_event_hash)).collect();
        let mut states_of: HashMap<(String, String), HashMap<String, StateRow>> = HashMap::new();
        let mut tenants: Vec<&str> = existing.iter().map(|s| slots[*s].tenant_id.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        for tenant_id in tenants {
            let ids: Vec<&str> = existing
                .iter()
                .filter(|s| slots[**s].tenant_id == tenant_id)
                .map(|s| slots[*s].subject_id.as_str())
                .collect();
            for row in backend::states_of(conn, tenant_id, None, &ids)? {
                states_of
                    .entry((row.tenant_id.clone(), row.subject_id.clone()))
                    .or_default()
                    .insert(row.purpose_key.clone(), row);
            }
        }
        for s in &existing {
            let slot = &mut slots[*s];
            slot.head = heads.get(&slot.subject_id).cloned().ok_or(diesel::result::Error::NotFound)?;
            slot.states = states_of.remove(&(slot.tenant_id.clone(), slot.subject_id.clone())).unwrap_or_default();
        }
    }

    // The webhooks of each tenant that writes for consent changes (locked until commit by the
    // batch's read).
    let hooks_of: HashMap<String, Vec<Webhook>> = tenants
        .iter()
        .map(|t| {
            let hooks = hooks.remove(*t).unwrap_or_default();
            let wanted = hooks
                .into_iter()
                .filter(|w| w.event_types().iter().any(|e| e == WebhookEventType::ConsentChanged.as_str()))
                .collect();
            ((*t).to_owned(), wanted)
        })
        .collect();

    // Plan every job in order: pure, on the slots.
    let mut events: Vec<NewEvent> = Vec::new();
    let mut changes: Vec<(usize, Vec<NewEvent>, Vec<super::view::PurposeState>)> = Vec::new();
    let mut recorded: Vec<(usize, Recorded)> = Vec::new();
    for &i in &active {
        let job = &jobs[i];
        let slot_index = slot_of_job[i];
        let slot = &mut slots[slot_index];
        let now = next_time();
        let (written, gpc_conflicts) = plan(job, slot, now)?;
        if !written.is_empty() {
            slot.changed = true;
            if hooks_of.get(&job.rules.tenant_id).is_some_and(|h| !h.is_empty()) {
                let states = written
                    .iter()
                    .map(|e| {
                        let purpose = job.rules.purpose(&e.purpose_key).ok_or(diesel::result::Error::NotFound)?;
                        let choice = slot.states.get(&e.purpose_key).map(StateRow::to_choice).transpose()?;
                        Ok(job.rules.evaluate(purpose, choice.as_ref(), job.region.as_ref()))
                    })
                    .collect::<Result<Vec<_>, LedgerError>>()?;
                changes.push((i, written.clone(), states));
            }
        }
        let view =
            if job.quiet { SubjectView::default() } else { job.rules.view(&slot.states, job.region.as_ref())? };
        let event_ids = written.iter().map(|e| e.id.clone()).collect();
        let recorded_events = if job.quiet { Vec::new() } else { written.clone() };
        events.extend(written);
        recorded.push((
            i,
            Recorded {
                subject_id: slot.subject_id.clone(),
                event_ids,
                events: recorded_events,
                view,
                gpc_honored: job.gpc,
                gpc_conflicts,
            },
        ));
    }

    // Write it all: new subjects (with their final chain head) and their identifiers, events,
    // states, the heads of known subjects.
    let mut identifiers: Vec<(&str, &str, &str)> = slot_of
        .iter()
        .filter(|(_, slot)| slots[**slot].is_new)
        .map(|((tenant_id, identifier), slot)| {
            (tenant_id.as_str(), identifier.as_str(), slots[*slot].subject_id.as_str())
        })
        .collect();
    identifiers.sort_unstable();
    let written_ids: std::collections::HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let (mut states, mut new_states): (Vec<&StateRow>, Vec<&StateRow>) = (Vec::new(), Vec::new());
    for slot in slots.iter().filter(|s| s.changed) {
        let written = slot.states.values().filter(|r| written_ids.contains(r.event_id.as_str()));
        if slot.is_new {
            new_states.extend(written)
        } else {
            states.extend(written)
        }
    }
    let rows = backend::BatchRows {
        subjects: slots
            .iter()
            .filter(|s| s.is_new)
            .map(|s| (s.subject_id.as_str(), s.tenant_id.as_str(), s.head.as_str()))
            .collect(),
        identifiers,
        created_at: naive(Utc::now()),
        heads: slots
            .iter()
            .filter(|s| s.changed && !s.is_new)
            .map(|s| (s.subject_id.as_str(), s.head.as_str()))
            .collect(),
        events: &events,
        states,
        new_states,
    };

    // The receipts are signed on a thread of their own while this one renders the responses
    // (and, in a batch whose finishes write, writes the rows first): a seal needs only what was
    // planned. Signing (Ed25519) was a tenth of the writer thread, and SQLite's one writer
    // thread is its bottleneck. A few receipts are signed here: starting a thread costs about
    // what signing two or three does (server CPU a write rose 10% with a thread for every batch
    // of two or more, at 8 concurrent writers).
    let seals: Vec<(usize, Seal)> =
        recorded.iter().enumerate().filter_map(|(pos, (i, _))| jobs[*i].seal.clone().map(|seal| (pos, seal))).collect();
    let sign = |seals: Vec<(usize, Seal)>| -> Vec<(usize, Result<ReceiptRow, LedgerError>)> {
        seals.into_iter().map(|(pos, seal)| (pos, seal(&recorded[pos].1))).collect()
    };
    // On PostgreSQL, a batch whose finishes only render (every public and API write) renders
    // its responses before it writes anything, and writes its rows, stored responses and
    // receipts in one statement: one round trip fewer a batch. A batch with a finish that
    // writes (an opt-out request, which names its subject) writes the rows first, runs the
    // finishes, then stores the responses; so does every batch on SQLite, where a statement is
    // no round trip and the rows, written by its one writer thread while the receipts are
    // signed, hide the signing.
    let render_first =
        matches!(conn, AnyConnection::Postgresql(_)) && !recorded.iter().any(|(i, _)| jobs[*i].finish.writes());
    let finish = |conn: &mut AnyConnection, jobs: &mut [Submission]| -> Result<Vec<String>, LedgerError> {
        if !render_first {
            backend::write_batch_rows(conn, &rows, &[], &[])?;
        }
        recorded.iter().map(|(i, recorded)| jobs[*i].finish.run(conn, recorded)).collect()
    };
    let (rendered, signed) = if seals.len() >= SIGN_APART_FROM {
        std::thread::scope(|scope| {
            let signer = scope.spawn(|| sign(seals));
            let rendered = finish(conn, jobs);
            (rendered, signer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    } else {
        (finish(conn, jobs), sign(seals))
    };
    let rendered = rendered?;
    let mut receipt_of: Vec<Option<ReceiptRow>> = (0..recorded.len()).map(|_| None).collect();
    for (pos, receipt) in signed {
        receipt_of[pos] = Some(receipt?);
    }

    let mut responses: Vec<StoredResponse> = Vec::new();
    let mut receipts = Vec::new();
    for (((i, recorded), rendered), receipt) in recorded.into_iter().zip(rendered).zip(receipt_of) {
        let job = &mut jobs[i];
        let (body, receipt_id) = match receipt {
            Some(receipt) => {
                let sealed = with_receipt(&rendered, &receipt.jws);
                let id = receipt.id.clone();
                receipts.push(receipt);
                (sealed, Some(id))
            }
            None => (rendered.clone(), None),
        };
        if let Some(claim) = &job.idempotency {
            // Stored without the receipt, which is stored once, in its own row (a body with
            // it is over PostgreSQL's 2 kB in-line limit: compressed on every write).
            responses.push(StoredResponse {
                tenant_id: job.rules.tenant_id.clone(),
                scope: claim.scope.clone(),
                key: claim.key.clone(),
                request_hash: claim.request_hash.clone(),
                status: i32::from(job.status),
                response: job.swap_subject(rendered, true),
                created_at: naive(job.rules.now),
                receipt_id,
            });
        }
        outcomes[i] = Some(Ok(Outcome::Fresh { recorded, body }));
    }
    if render_first {
        backend::write_batch_rows(conn, &rows, &responses, &receipts)?;
    } else {
        backend::insert_responses(conn, &responses, &receipts)?;
    }
    // Per job: webhook deliveries, once its events are written (they describe the events'
    // subjects as stored).
    for (i, written, states) in changes {
        let job = &jobs[i];
        let hooks = &hooks_of[&job.rules.tenant_id];
        let described = describe_events(conn, &job.rules.tenant_id, written)?;
        let data: Vec<ConsentChange> =
            described.into_iter().zip(states).map(|(event, state)| ConsentChange { event, state }).collect();
        outbox::enqueue_to(conn, hooks, &job.rules.tenant_id, WebhookEventType::ConsentChanged, Utc::now(), data)?;
    }
    Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(diesel::result::Error::NotFound.into()))).collect())
}

struct Pending {
    purpose: PurposeKey,
    decision: Decision,
    source: ConsentSource,
    /// Record the event but leave the state as it is (a grant against a GPC opt-out).
    state_unchanged: bool,
}

/// Plans one submission against its subject's head and states, updating both: the events to
/// write (hashed into the chain) and the purposes granted against a GPC opt-out.
fn plan(
    job: &Submission,
    slot: &mut SubjectSlot,
    now: DateTime<Utc>,
) -> Result<(Vec<NewEvent>, Vec<String>), LedgerError> {
    let rules = &job.rules;
    let region = job.region.as_ref();
    let occurred_at = job.explicit_occurred_at.unwrap_or(now);
    let states = &mut slot.states;

    let mut pending: Vec<Pending> = Vec::new();
    let mut gpc_conflicts = Vec::new();
    if job.gpc {
        // GPC comes first: a denial for every purpose it applies to, unless already denied.
        for p in rules.purposes.iter().filter(|p| p.gpc_applies) {
            let denied = states.get(p.key.as_str()).is_some_and(|s| s.decision == Decision::Denied.as_str());
            if !denied {
                pending.push(Pending {
                    purpose: p.key.clone(),
                    decision: Decision::Denied,
                    source: ConsentSource::Gpc,
                    state_unchanged: false,
                });
            }
        }
    }
    for (key, decision) in job.choices.iter() {
        let purpose = rules.purpose(key.as_str()).ok_or(diesel::result::Error::NotFound)?;
        let gpc_conflict = job.gpc && purpose.gpc_applies && *decision == Decision::Granted;
        if gpc_conflict {
            gpc_conflicts.push(key.to_string());
        }
        let after_gpc = pending.iter().any(|p| &p.purpose == key);
        // Unchanged: the same decision under the same revision, still valid. A stale or
        // expired grant given again is a renewal and is recorded. A person's explicit choice
        // (banner, preference centre, placeholder, API) is evidence even when unchanged: it
        // is recorded and restarts the purpose's max age (issue 11, item 10). A decision that
        // occurred before the one in force (an import's history) repeats nothing: it is
        // recorded as history and leaves the state alone (below).
        let current = states.get(key.as_str());
        let history = job.explicit_occurred_at.is_some_and(|t| current.is_some_and(|s| t < utc(s.occurred_at)));
        let unchanged = !after_gpc
            && !history
            && !job.source.reconfirms()
            && current.is_some_and(|s| {
                s.to_choice().is_ok_and(|c| {
                    let lapsed =
                        matches!(rules.status(purpose, Some(&c), region).status, Status::Stale | Status::Expired);
                    c.decision == *decision && c.policy_revision == job.revision && !lapsed
                })
            });
        let same_as_gpc = after_gpc && *decision == Decision::Denied;
        if !unchanged && !same_as_gpc {
            pending.push(Pending {
                purpose: key.clone(),
                decision: *decision,
                source: job.source,
                state_unchanged: gpc_conflict,
            });
        }
    }

    let mut written: Vec<NewEvent> = Vec::with_capacity(pending.len());
    for p in pending {
        let mut event = NewEvent {
            id: new_id(),
            tenant_id: rules.tenant_id.clone(),
            subject_id: slot.subject_id.clone(),
            purpose_key: p.purpose.to_string(),
            decision: p.decision.as_str().to_owned(),
            policy_revision: job.revision.map(|r| r.to_string()),
            source: p.source.as_str().to_owned(),
            region: job.region.as_ref().map(|r| r.to_string()),
            site_id: job.site_id.clone(),
            occurred_at: naive(occurred_at),
            recorded_at: naive(now),
            prev_hash: slot.head.clone(),
            hash: String::new(),
            presentation_sha256: job.presentation_sha256.clone(),
        };
        event.hash = event.content().hash();
        slot.head = event.hash.clone();

        // The state follows the newest decision by occurred_at; an older decision recorded
        // later (an import with its own occurred_at) is kept as an event but does not
        // override a newer one. A live decision (no occurred_at) is always the newest.
        let current = states.get(event.purpose_key.as_str());
        let newer = job.explicit_occurred_at.is_none() || current.is_none_or(|s| utc(s.occurred_at) <= occurred_at);
        if newer && !p.state_unchanged {
            let row = StateRow {
                tenant_id: rules.tenant_id.clone(),
                purpose_key: event.purpose_key.clone(),
                subject_id: slot.subject_id.clone(),
                decision: event.decision.clone(),
                event_id: event.id.clone(),
                policy_revision: event.policy_revision.clone(),
                source: event.source.clone(),
                occurred_at: event.occurred_at,
                recorded_at: event.recorded_at,
            };
            states.insert(row.purpose_key.clone(), row);
        }
        written.push(event);
    }
    Ok((written, gpc_conflicts))
}
