//! Server-to-server consent: `POST /v1/consents`, `POST /v1/consents/check`,
//! `GET /v1/subjects/{subject}/consents`, `GET /v1/subjects/{subject}/events`.

use crate::auth::{Caller, Scope};
use crate::db::models::event::Event;
use crate::db::models::subject::DataSubject;
use crate::db::models::tenant::Tenant;
use crate::domain::{ConsentSource, PurposeKey, RegionCode, RevisionDate, SubjectIdentifier};
use crate::error::{ApiError, Problem};
use crate::extract::{idempotency_key, JsonBody};
use crate::ledger::{
    self, CheckResult, EventResponse, Finish, IdempotencyClaim, Outcome, PurposeState, RecordRequest, Recorded,
};
use crate::routes::parse_region;
use crate::service::{self, directory::TenantConfig};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(record_consents).service(check_consents).service(get_subject_consents).service(list_subject_events);
}

/// The consent state of one data subject.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "subject": "email:ada@example.com", "needs_consent": false,
    "purposes": {"marketing": {"status": "granted", "allowed": true, "reason": "granted", "decision": "granted",
        "policy_revision": "2021-02-01", "updated_at": "2026-11-29T10:00:00Z", "expires_at": "2027-12-29T10:00:00Z", "source": "api"}}
}))]
pub struct ConsentState {
    /// The subject as normalised (`email:` lower-cased, `phone:` in E.164).
    pub subject: String,
    /// True when any `opt_in` purpose is `not_asked`, `stale` or `expired`.
    pub needs_consent: bool,
    pub purposes: BTreeMap<String, PurposeState>,
    /// On the public endpoint: whether the request carried the GPC signal (`Sec-GPC: 1`) and it
    /// was honoured, so the page can show "Opt-Out Request Honored" (11 CCR §7025(c)(6)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpc_honored: Option<bool>,
    /// With `?as_of=`: the instant the state is shown for (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// With `?as_of=`: the policy revisions in force then (effective by then; the latest per
    /// policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies_in_force: Option<Vec<crate::routes::public::PolicyInForce>>,
}

/// The result of recording choices.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordResponse {
    /// The events written, one per purpose whose decision changed (empty when nothing changed).
    pub event_ids: Vec<String>,
    /// The state after recording. Absent on `POST /v1/consents` when the token lacks
    /// `consents:read`: writing does not grant reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consents: Option<ConsentState>,
    /// True when a Global Privacy Control signal was received and honoured: show
    /// "Opt-Out Request Honored" (11 CCR §7025(c)(6)).
    pub gpc_honored: bool,
    /// Purposes granted while the GPC signal was present: recorded, but the opt-out stays in
    /// force (11 CCR §7025(c)(3)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpc_conflicts: Vec<String>,
    /// The signed consent receipt of this submission: a compact JWS (`EdDSA`, header `kid`)
    /// whose claims name the events written, the policies in force and each purpose's decision
    /// and consent model (ISO/IEC TS 27560). Check it with `GET /.well-known/jwks.json` or
    /// `POST /v1/receipts/verify`. Added once the submission is committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJqdGkiOiIuLi4ifQ.c2ln")]
    pub receipt: Option<String>,
    /// Present and true when the write's `presentation` token was issued longer ago than the
    /// server's `receipts.presentation_max_age` (default 24 h): the choices were recorded with
    /// the site's current presentation instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presentation_stale: bool,
}

pub fn consent_state(subject: &SubjectIdentifier, view: &ledger::SubjectView) -> ConsentState {
    ConsentState {
        subject: subject.to_string(),
        needs_consent: view.needs_consent,
        purposes: view.purposes.clone(),
        gpc_honored: None,
        as_of: None,
        policies_in_force: None,
    }
}

pub fn record_response(subject: &SubjectIdentifier, r: &Recorded, with_state: bool) -> RecordResponse {
    RecordResponse {
        event_ids: r.event_ids.clone(),
        consents: with_state.then(|| consent_state(subject, &r.view)),
        gpc_honored: r.gpc_honored,
        gpc_conflicts: r.gpc_conflicts.clone(),
        receipt: None,
        presentation_stale: false,
    }
}

/// The claim for the request's `Idempotency-Key`, if it has one: the key, and a hash of the
/// method, path and body that a retry must match.
pub fn idempotency_claim(req: &HttpRequest, scope: String, body: &[u8]) -> Result<Option<IdempotencyClaim>, ApiError> {
    let gpc = crate::extract::has_gpc(req)?;
    Ok(idempotency_key(req)?.map(|key| {
        let mut h = Sha256::new();
        h.update(req.method().as_str().as_bytes());
        h.update(b" ");
        h.update(req.path().as_bytes());
        h.update(b"\n");
        h.update(body);
        // The signal changes what the request does, so a retry must carry the same.
        h.update(if gpc { "\ngpc" } else { "\n" });
        IdempotencyClaim { scope, key, request_hash: hex::encode(h.finalize()) }
    }))
}

/// Runs a recording and renders 201 (or the replayed first response, with
/// `Idempotent-Replayed: true`).
/// `presented`: the purposes the response shows (a site's list; `None`: all); `with_state`:
/// whether it shows the state at all.
/// `user`: the user a verified identity token names, to link the visitor to (public writes).
pub async fn record_and_respond(
    state: &AppState,
    config: Arc<TenantConfig>,
    presented: Option<Vec<String>>,
    with_state: bool,
    subject: SubjectIdentifier,
    owned: RecordRequestOwned,
    user: Option<SubjectIdentifier>,
) -> Result<HttpResponse, ApiError> {
    let rules = AppState::rules(&config, presented)?;
    let stored = subject.stored_form(&config.subject_key);
    let shown = subject.shown_personal();
    let req = owned.borrow(&stored);
    let stale = owned.presentation_stale;
    let finish = Finish::render(move |r| {
        let body = RecordResponse { presentation_stale: stale, ..record_response(&subject, r, with_state) };
        Ok(serde_json::to_string(&body).unwrap_or_default())
    });
    let outcome = match user {
        Some(user) => {
            let user = user.stored_form(&config.subject_key);
            service::consents::record_identified(state, rules, &req, user, 201, finish).await?
        }
        None => service::consents::record_with_receipt(state, rules, &req, shown, 201, finish).await?,
    };
    let (status, body, replayed) = match outcome {
        Outcome::Fresh { body, .. } => (201, body, false),
        Outcome::Replay { status, body } => (status, body, true),
    };
    let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED));
    res.content_type("application/json");
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.body(body))
}

pub struct RecordRequestOwned {
    pub choices: BTreeMap<String, bool>,
    pub policy_revision: Option<String>,
    pub source: ConsentSource,
    pub region: Option<RegionCode>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub site_id: Option<String>,
    pub gpc: bool,
    pub idempotency: Option<IdempotencyClaim>,
    /// What the person was shown (a verified presentation token of a public write).
    pub presentation: Option<crate::domain::presentation::Shown>,
    /// The token was stale: `presentation` is the current one (`presentation_stale` answered).
    pub presentation_stale: bool,
}

impl RecordRequestOwned {
    fn borrow<'a>(&'a self, stored_identifier: &'a str) -> RecordRequest<'a> {
        RecordRequest {
            subject: stored_identifier,
            choices: &self.choices,
            policy_revision: self.policy_revision.as_deref(),
            source: self.source,
            region: self.region.as_ref(),
            occurred_at: self.occurred_at,
            site_id: self.site_id.as_deref(),
            gpc: self.gpc,
            idempotency: self.idempotency.clone(),
            presentation: self.presentation.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "subject": "email:ada@example.com",
    "choices": {"marketing": true, "b2b_contact": false},
    "policy_revision": "2021-02-01",
    "source": "api"
}))]
pub struct RecordConsents {
    /// `visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`.
    #[schema(value_type = SubjectIdentifier)]
    pub subject: String,
    /// Purpose key → granted (`true`) or refused (`false`); 1 to 200 purposes.
    #[schema(value_type = crate::domain::choices::ChoicesSchema)]
    #[serde(deserialize_with = "crate::extract::unique_keys")]
    pub choices: BTreeMap<String, bool>,
    /// The revision date (`YYYY-MM-DD`) of the policy text the person saw; must be in force.
    #[serde(default)]
    #[schema(value_type = Option<RevisionDate>)]
    pub policy_revision: Option<String>,
    pub source: ConsentSource,
    /// When the person decided (RFC 3339, from 1970 on), if not now; not in the future. Expiry
    /// counts from it.
    #[serde(default)]
    #[schema(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Where the person is: ISO 3166-1 alpha-2 or ISO 3166-2 (`US-CA`); picks regional consent models.
    #[serde(default)]
    #[schema(value_type = Option<RegionCode>)]
    pub region: Option<String>,
}

/// Records decisions for any data subject. Requires `consents:write`. One event per purpose
/// whose decision changes, all in one transaction; a retry with the same `Idempotency-Key`
/// returns the first response and writes nothing.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters (a UUID, say); makes a retry return the first result without writing again")),
    request_body = RecordConsents,
    responses(
        (status = 201, description = "Recorded (committed)", body = RecordResponse),
        (status = 400, description = "Invalid subject, purpose, revision or time", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `consents:write`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/consents")]
pub async fn record_consents(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    JsonBody(body, raw): JsonBody<RecordConsents>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsWrite)?;
    let subject = SubjectIdentifier::parse(&body.subject).map_err(|e| ApiError::invalid("subject", e.to_string()))?;
    let region = parse_region(body.region.as_deref())?;
    let with_state = caller.require(Scope::ConsentsRead).is_ok();
    // The stored response shows the state only to a token that may read it, so a retry must
    // come from a token that may see as much: a write-only token that replays a reader's key
    // gets 422, not the reader's response.
    let idempotency = idempotency_claim(&req, "api".into(), &raw)?.map(|claim| IdempotencyClaim {
        request_hash: format!("{}{}", claim.request_hash, if with_state { "" } else { ":no-state" }),
        ..claim
    });
    record_and_respond(
        &state,
        caller.config.clone(),
        None,
        with_state,
        subject,
        RecordRequestOwned {
            choices: body.choices,
            policy_revision: body.policy_revision,
            source: body.source,
            region,
            occurred_at: body.occurred_at,
            site_id: None,
            gpc: false,
            idempotency,
            presentation: None,
            presentation_stale: false,
        },
        None,
    )
    .await
}

pub async fn load_tenant(_state: &AppState, caller: &Caller) -> Result<Tenant, ApiError> {
    Ok(caller.config.tenant.clone())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"purpose": "marketing", "subjects": ["email:ada@example.com", "user:42"]}))]
pub struct CheckConsents {
    #[schema(value_type = PurposeKey)]
    pub purpose: String,
    /// 1 to 10,000 subjects; results come back in this order, each echoing its subject as given.
    #[schema(value_type = Vec<SubjectIdentifier>, min_items = 1, max_items = 10_000)]
    pub subjects: Vec<String>,
    /// Where the subjects are (ISO 3166), for regional consent models.
    #[serde(default)]
    #[schema(value_type = Option<RegionCode>)]
    pub region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// One result per subject, in request order.
    pub results: Vec<CheckResult>,
}

/// Asks whether `purpose` is allowed for each subject now. Requires `consents:check`.
/// Unknown subjects are `not_asked` (so not allowed for `opt_in` purposes).
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    request_body = CheckConsents,
    responses(
        (status = 200, description = "One result per subject, in request order", body = CheckResponse),
        (status = 400, description = "Unknown purpose or malformed subject", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `consents:check`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 10,000 subjects", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/consents/check")]
pub async fn check_consents(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(body, _): JsonBody<CheckConsents>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsCheck)?;
    if body.subjects.is_empty() {
        return Err(ApiError::invalid("subjects", "name at least one subject"));
    }
    if body.subjects.len() > ledger::MAX_CHECK_SUBJECTS {
        return Err(ApiError::PayloadTooLarge(format!(
            "subjects: {} subjects given; at most {} per check",
            body.subjects.len(),
            ledger::MAX_CHECK_SUBJECTS
        )));
    }
    let region = parse_region(body.region.as_deref())?;
    let rules = AppState::rules(&caller.config, None)?;
    let key = caller.config.subject_key.clone();
    let results = service::consents::check(&state, rules, key, &body.purpose, body.subjects, region).await?;
    Ok(HttpResponse::Ok().json(CheckResponse { results }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegionQuery {
    /// ISO 3166-1 alpha-2 or ISO 3166-2 code (`US-CA`) for regional consent models.
    #[param(value_type = Option<RegionCode>)]
    pub region: Option<String>,
}

fn parse_subject(raw: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::parse(raw).map_err(|e| ApiError::invalid("subject", e.to_string()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubjectStateQuery {
    /// ISO 3166-1 alpha-2 or ISO 3166-2 code (`US-CA`) for regional consent models.
    #[param(value_type = Option<RegionCode>)]
    pub region: Option<String>,
    /// An instant (RFC 3339, e.g. `2026-03-01T12:00:00Z`, not in the future): the state as it
    /// was then, from the events decided by then, with the revisions in force then: as now
    /// known, so a revision published later with an earlier `effective_at`, and history
    /// imported later, count from their dates.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub as_of: Option<String>,
    /// With `as_of`: the state as the service held it at that instant, what a check answered
    /// then: only events recorded by then and revisions published by then count (default
    /// `false`).
    pub as_recorded: Option<bool>,
}

/// The consent state of any data subject, now or `as_of` a past instant. Requires
/// `consents:read`. Unknown subjects are `not_asked` for every purpose.
///
/// `as_of` (issue 11): the state at that instant is rebuilt from the events decided by then
/// (`occurred_at`), evaluated (status, expiry, staleness) at that instant against the policy
/// revisions in force then, which the answer lists in `policies_in_force`. Purposes are
/// evaluated with their current configuration (consent model, max age): it has no history.
/// This is the state as now known; `as_recorded=true` gives it as the service held it then
/// (events recorded and revisions published by then): what a check answered at that instant.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(("subject" = SubjectIdentifier, Path, description = "`visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`", example = "email:ada@example.com"), SubjectStateQuery),
    responses(
        (status = 200, description = "Per-purpose state", body = ConsentState),
        (status = 400, description = "Malformed subject or region", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `consents:read`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/subjects/{subject}/consents")]
pub async fn get_subject_consents(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
    query: crate::extract::Query<SubjectStateQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let subject = parse_subject(&subject)?;
    let region = parse_region(query.region.as_deref())?;
    let Some(raw) = query.as_of.as_deref() else {
        if query.as_recorded.is_some() {
            return Err(ApiError::invalid(
                "as_recorded",
                "is given without as_of: it says how to read an as_of instant",
            ));
        }
        let body = read_state(&state, &caller.config, None, subject, region).await?;
        return Ok(HttpResponse::Ok().json(body));
    };
    let as_of = DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| crate::domain::ledger::to_micros(t.with_timezone(&Utc)))
        .map_err(|_| ApiError::invalid("as_of", "is not an RFC 3339 instant, e.g. 2026-03-01T12:00:00Z"))?;
    if as_of > service::now() {
        return Err(ApiError::invalid("as_of", "is in the future: the state of a past instant is asked"));
    }
    let stored = subject.stored_form(&caller.config.subject_key);
    let (view, revisions) = service::subjects::state_as_of(
        &state,
        &caller.config,
        stored,
        region,
        as_of,
        query.as_recorded.unwrap_or(false),
    )
    .await?;
    let mut body = consent_state(&subject, &view);
    body.as_of = Some(as_of);
    body.policies_in_force = Some(revisions.iter().map(crate::routes::public::PolicyInForce::from_row).collect());
    Ok(HttpResponse::Ok().json(body))
}

/// Reads the consent state of a subject of `tenant`, showing the `presented` purposes (`None`: all).
pub async fn read_state(
    state: &AppState,
    config: &TenantConfig,
    presented: Option<Vec<String>>,
    subject: SubjectIdentifier,
    region: Option<RegionCode>,
) -> Result<ConsentState, ApiError> {
    let rules = AppState::rules(config, presented)?;
    let stored = subject.stored_form(&config.subject_key);
    let view = service::consents::read_state(state, rules, stored, region).await?;
    Ok(consent_state(&subject, &view))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub subject: String,
    /// Oldest first.
    pub events: Vec<EventResponse>,
    /// Present when more events follow this page: pass it as `after` for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Events a page of one subject's events: default and most.
const MAX_SUBJECT_EVENTS: i64 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubjectEventsQuery {
    /// The `next_cursor` of the previous page; absent: from the subject's first event.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub after: Option<String>,
    /// Events per page, 1 to 10000 (default 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// The consent events of a data subject, oldest first: the proof of what they decided, when,
/// under which revision (GDPR Art. 7(1)). Requires `consents:read`. Pages of up to `limit`
/// events (10,000 by default); `next_cursor` is present when more follow.
#[utoipa::path(
    tag = "consents",
    security(("bearer" = [])),
    params(("subject" = SubjectIdentifier, Path, description = "`visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`", example = "email:ada@example.com"), SubjectEventsQuery),
    responses(
        (status = 200, description = "A page of the events (empty for an unknown subject)", body = EventList),
        (status = 400, description = "Malformed subject, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `consents:read`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/subjects/{subject}/events")]
pub async fn list_subject_events(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
    query: crate::extract::Query<SubjectEventsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let subject = parse_subject(&subject)?;
    let (after, limit) =
        super::events::page(query.after.as_deref(), query.limit, MAX_SUBJECT_EVENTS, MAX_SUBJECT_EVENTS)?;
    let tenant = load_tenant(&state, &caller).await?;
    let stored = subject.stored_form(&tenant.subject_key());
    let mut events = state
        .read_db(move |conn| {
            Ok(match DataSubject::resolve(conn, &tenant.id, &stored)? {
                Some(id) => {
                    let ids = DataSubject::with_merged(conn, &tenant.id, &id)?;
                    // One more than the page: whether another follows.
                    Event::list_for_subject_after(conn, &tenant.id, &ids, after, limit + 1)?
                }
                None => Vec::new(),
            })
        })
        .await?;
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = events.len() > page;
    events.truncate(page);
    let next_cursor = more.then(|| events.last().map(|e| e.seq.to_string())).flatten();
    let events = events.into_iter().map(|e| EventResponse::from_row(e.row)).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(EventList { subject: subject.to_string(), events, next_cursor }))
}
