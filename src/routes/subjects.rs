//! The data subject's rights: `GET /v1/subjects/{subject}/export` (GDPR Art. 15 and 20, CCPA
//! right to know), `DELETE /v1/subjects/{subject}` (GDPR Art. 17).

use crate::auth::{Caller, Scope};
use crate::domain::{ConsentSource, SubjectIdentifier};
use crate::error::{ApiError, Problem};
use crate::ledger::EventResponse;
use crate::routes::consents::ConsentState;
use crate::service::opt_outs::OptOutResponse;
use crate::service::{self, subjects};
use crate::state::AppState;
use actix_web::{delete, get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(export_subject).service(erase_subject).service(subject_proof);
}

/// `format` of export documents of this shape.
pub const EXPORT_FORMAT: &str = "consentry-export/1";

fn parse_subject(raw: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::parse(raw).map_err(|e| ApiError::invalid("subject", e.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantRef {
    pub id: String,
    pub slug: String,
}

/// One stored identifier of the person.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredIdentifier {
    /// The pseudonymous subject it names.
    pub subject_id: String,
    /// As stored: `visitor:<uuid>`, `user:<id>`; email and phone as `email:h:<hex>` /
    /// `phone:h:<hex>` (keyed hashes: the address itself is not kept).
    pub identifier: String,
}

/// A link made by identity linking: `subject_id`'s history joined `merged_into`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectLink {
    pub subject_id: String,
    pub merged_into: String,
}

/// An event of the person, with the pseudonymous subject whose chain holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedEvent {
    pub subject_id: String,
    #[serde(flatten)]
    pub event: EventResponse,
}

/// A receipt issued for one of the person's submissions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedReceipt {
    /// The receipt's `jti`.
    pub id: String,
    pub issued_at: DateTime<Utc>,
    pub event_ids: Vec<String>,
    /// The compact JWS as handed out.
    pub receipt: String,
}

/// Everything held about a data subject, in one machine-readable document (GDPR Art. 15 and
/// Art. 20; CCPA right to know, Cal. Civ. Code §1798.110/.130: every record since it began,
/// which covers the look-back to 2022-01-01).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectExport {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    pub exported_at: DateTime<Utc>,
    /// The controller.
    pub tenant: TenantRef,
    /// The subject as asked for, normalised.
    pub subject: String,
    /// False when nothing is held about this identifier (every list is then empty).
    pub found: bool,
    /// The person's pseudonymous subject ids: the one the identifier names first, then those
    /// merged into it.
    pub subject_ids: Vec<String>,
    pub identifiers: Vec<StoredIdentifier>,
    pub links: Vec<SubjectLink>,
    /// The state now.
    pub consents: ConsentState,
    /// Every consent event of the person and of every identifier linked to them, oldest first.
    pub events: Vec<ExportedEvent>,
    pub receipts: Vec<ExportedReceipt>,
    pub opt_out_requests: Vec<OptOutResponse>,
    /// The one-click unsubscribes (RFC 8058) among `events`.
    pub unsubscribes: Vec<ExportedEvent>,
}

/// Everything held about a data subject as one JSON document (documented in the README):
/// identifiers (email and phone as keyed hashes), links, the current state, every event of the
/// person and of the identifiers linked to them, receipts, opt-out requests and unsubscribes.
/// Requires `consents:read`. An unknown subject gets `found: false` and empty lists.
#[utoipa::path(
    tag = "subjects",
    security(("bearer" = [])),
    params(("subject" = SubjectIdentifier, Path, description = "`visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`", example = "email:ada@example.com")),
    responses(
        (status = 200, description = "The export document", body = SubjectExport),
        (status = 400, description = "Malformed subject", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/subjects/{subject}/export")]
pub async fn export_subject(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let subject = parse_subject(&subject)?;
    let config = caller.config.clone();
    let stored = subject.stored_form(&config.subject_key);
    let held = subjects::holdings(&state, &config.tenant.id, stored.clone()).await?;
    let consents = crate::routes::consents::read_state(&state, &config, None, subject.clone(), None).await?;
    let now = service::now();
    let exported = |e: crate::db::models::event::NewEvent| -> Result<ExportedEvent, ApiError> {
        Ok(ExportedEvent { subject_id: e.subject_id.clone(), event: EventResponse::from_row(e)? })
    };
    let unsubscribes = held
        .events
        .iter()
        .filter(|e| e.source == ConsentSource::OneClickUnsubscribe.as_str())
        .cloned()
        .map(exported)
        .collect::<Result<Vec<_>, _>>()?;
    let events = held.events.into_iter().map(exported).collect::<Result<Vec<_>, _>>()?;
    let receipts = held
        .receipts
        .into_iter()
        .map(|r| {
            let event_ids: Vec<String> = serde_json::from_str(&r.event_ids)
                .map_err(|_| ApiError::internal(crate::db::models::corrupt("receipt event ids", &r.event_ids)))?;
            Ok(ExportedReceipt { id: r.id, issued_at: crate::db::models::utc(r.issued_at), event_ids, receipt: r.jws })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let opt_out_requests =
        held.opt_outs.iter().map(|r| service::opt_outs::response(r, now, None)).collect::<Result<Vec<_>, _>>()?;
    let (subject_ids, links) = match &held.person {
        Some(p) => (
            p.subject_ids.iter().rev().cloned().collect::<Vec<_>>(),
            p.subject_ids
                .iter()
                .filter(|id| **id != p.subject_id)
                .map(|id| SubjectLink { subject_id: id.clone(), merged_into: p.subject_id.clone() })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let body = SubjectExport {
        format: EXPORT_FORMAT.into(),
        exported_at: now,
        tenant: TenantRef { id: config.tenant.id.clone(), slug: config.tenant.slug.clone() },
        subject: subject.to_string(),
        found: held.person.is_some(),
        subject_ids,
        identifiers: held
            .identifiers
            .into_iter()
            .map(|(subject_id, identifier)| StoredIdentifier { subject_id, identifier })
            .collect(),
        links,
        consents,
        events,
        receipts,
        opt_out_requests,
        unsubscribes,
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Disposition", "attachment; filename=\"consentry-export.json\""))
        .json(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EraseQuery {
    /// Keep the opt-outs in force (denials of sale/sharing and of `opt_out` purposes) as a
    /// suppression entry (default `true`): an erasure must not restart selling or what the
    /// person objected to. `false` removes them with the rest.
    pub keep_opt_out: Option<bool>,
}

/// A suppression entry kept by an erasure.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suppression {
    /// The stored identifier (a keyed hash) that still answers `denied` for `purposes`.
    pub identifier: String,
    pub purposes: Vec<String>,
}

/// What an erasure removed and kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureResponse {
    pub subject: String,
    /// The pseudonymous subject ids that no identifier names any more.
    pub subject_ids: Vec<String>,
    pub removed: ErasureRemoved,
    pub kept: ErasureKept,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureRemoved {
    /// Identifiers removed, as stored (email and phone as keyed hashes).
    pub identifiers: Vec<String>,
    /// Links between subjects removed.
    pub links: usize,
    /// Stored idempotent responses removed (they could show the identifier).
    pub stored_responses: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureKept {
    /// Events kept under the pseudonymous ids, so hash chains and receipts still verify.
    pub events: usize,
    /// Opt-outs of sale/sharing kept as suppression entries.
    pub suppressions: Vec<Suppression>,
}

/// Erases a data subject (GDPR Art. 17): their identifiers (keyed hashes of email and phone,
/// user and visitor ids) and links are removed, so they can no longer be found by them; the
/// pseudonymous events, receipts and opt-out requests stay, so chains and receipts still
/// verify. The opt-outs in force (denials of sale/sharing and of `opt_out` purposes, GDPR
/// Art. 21 objections) are kept as a suppression entry unless `keep_opt_out=false`. Requires `admin`. 404 when the identifier names nobody.
#[utoipa::path(
    tag = "subjects",
    security(("bearer" = [])),
    params(("subject" = SubjectIdentifier, Path, description = "`visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`", example = "email:ada@example.com"), EraseQuery),
    responses(
        (status = 200, description = "Erased: what was removed and kept", body = ErasureResponse),
        (status = 400, description = "Malformed subject", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No data subject has this identifier", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/subjects/{subject}")]
pub async fn erase_subject(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
    query: crate::extract::Query<EraseQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let subject = parse_subject(&subject)?;
    let rules = AppState::rules(&caller.config, None)?;
    let stored = subject.stored_form(&caller.config.subject_key);
    let keep = query.keep_opt_out.unwrap_or(true);
    let who = subject.clone();
    let erased = state.db(move |conn| subjects::erase(conn, rules, &who, &stored, keep)).await?;
    let Some(erased) = erased else {
        return Err(ApiError::NotFound("no data subject has this identifier".into()));
    };
    state.wake_webhooks();
    Ok(HttpResponse::Ok().json(ErasureResponse {
        subject: subject.to_string(),
        subject_ids: erased.subject_ids,
        removed: ErasureRemoved {
            identifiers: erased.identifiers,
            links: erased.links,
            stored_responses: erased.stored_responses,
        },
        kept: ErasureKept {
            events: erased.events_kept,
            suppressions: erased
                .suppressed
                .into_iter()
                .map(|(identifier, purposes)| Suppression { identifier, purposes })
                .collect(),
        },
    }))
}

/// A proof bundle of everything a person decided: every event of their subjects with whole hash
/// chains, the receipts, the policy revisions, the JWKS, and an attestation signed over the rest
/// (see the README's "Checking a proof bundle"). `consentry proof verify <file>` checks it
/// offline. Requires `consents:read`. 404 when the identifier names nobody.
#[utoipa::path(
    tag = "subjects",
    security(("bearer" = [])),
    params(("subject" = SubjectIdentifier, Path, description = "`visitor:<uuid>`, `user:<id>`, `email:<address>` or `phone:<E.164>`", example = "email:ada@example.com")),
    responses(
        (status = 200, description = "The bundle", body = crate::service::proof::ProofBundle),
        (status = 400, description = "Malformed subject", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No data subject has this identifier", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/subjects/{subject}/proof")]
pub async fn subject_proof(
    state: web::Data<AppState>,
    caller: Caller,
    subject: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ConsentsRead)?;
    let subject = parse_subject(&subject)?;
    let stored = subject.stored_form(&caller.config.subject_key);
    let Some(bundle) = service::proof::build(&state, &caller.config.tenant.id, stored).await? else {
        return Err(ApiError::NotFound("no data subject has this identifier".into()));
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Disposition", "attachment; filename=\"consentry-proof.json\""))
        .json(bundle))
}
