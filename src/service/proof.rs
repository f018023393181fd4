//! Proof bundles: a self-contained file that shows what a person decided, checkable offline
//! with no database and no Consentry code (GDPR Art. 7(1): the controller must be able to
//! demonstrate consent). `GET /v1/subjects/{subject}/proof` builds one; `consentry proof verify
//! <file>` ([`verify`]) checks one and says what is broken.
//!
//! What it holds: every event of the person's subjects, whole hash chains from their first
//! event; the receipts issued for them; the policy revisions of the tenant (url, sha256); what
//! the person was shown (each presentation the events name: its content and a token); the
//! JWKS whose keys signed the receipts; and an `attestation`, a JWS by the same key over the
//! SHA-256 of the rest of the file (sorted-key compact JSON) and each chain's head, so a changed
//! byte, a removed event or a removed receipt is caught.

use crate::db::models::event::NewEvent;
use crate::db::models::revision::RevisionRow;
use crate::db::models::{naive, utc};
use crate::domain::presentation::{PresentationClaims, PresentationContent, PRESENTATION_SCHEMA};
use crate::domain::receipt::ReceiptClaims;
use crate::error::ApiError;
use crate::ledger::verify::{verify_checkpoint, Chains, CheckpointRow};
use crate::receipts::{verify_with_jwks, Jwks};
use crate::state::AppState;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// `format` of bundles of this shape.
pub const PROOF_FORMAT: &str = "consentry-proof/1";

/// One event as the bundle holds it: every field its hash covers, timestamps exactly as hashed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofEvent {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    pub purpose: String,
    pub decision: String,
    pub policy_revision: Option<String>,
    pub source: String,
    pub region: Option<String>,
    /// Not covered by the hash.
    pub site_id: Option<String>,
    /// RFC 3339, UTC, microseconds, as hashed.
    pub occurred_at: String,
    pub recorded_at: String,
    pub prev_hash: String,
    pub hash: String,
    /// SHA-256 of what the person was shown (one of `presentations`); hashed only when
    /// present, as the last member of the hashed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation_sha256: Option<String>,
}

fn micros(t: NaiveDateTime) -> String {
    utc(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl ProofEvent {
    fn from_row(e: &NewEvent) -> Self {
        Self {
            id: e.id.clone(),
            tenant_id: e.tenant_id.clone(),
            subject_id: e.subject_id.clone(),
            purpose: e.purpose_key.clone(),
            decision: e.decision.clone(),
            policy_revision: e.policy_revision.clone(),
            source: e.source.clone(),
            region: e.region.clone(),
            site_id: e.site_id.clone(),
            occurred_at: micros(e.occurred_at),
            recorded_at: micros(e.recorded_at),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
            presentation_sha256: e.presentation_sha256.clone(),
        }
    }

    fn to_row(&self) -> Result<NewEvent, String> {
        let time = |raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| naive(t.with_timezone(&Utc)))
                .map_err(|_| format!("event {}: '{raw}' is not an RFC 3339 time", self.id))
        };
        Ok(NewEvent {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            subject_id: self.subject_id.clone(),
            purpose_key: self.purpose.clone(),
            decision: self.decision.clone(),
            policy_revision: self.policy_revision.clone(),
            source: self.source.clone(),
            region: self.region.clone(),
            site_id: self.site_id.clone(),
            occurred_at: time(&self.occurred_at)?,
            recorded_at: time(&self.recorded_at)?,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            presentation_sha256: self.presentation_sha256.clone(),
        })
    }
}

/// What a person was shown, as the bundle holds it: the content whose hash events and receipts
/// name, and the first token the service issued for it (signed by a key of `jwks`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofPresentation {
    /// `sha256("consentry-presentation-v1\n" + content as sorted-key compact JSON)`.
    pub sha256: String,
    pub content: PresentationContent,
    /// A presentation token (compact JWS) whose `sha256` claim is this one.
    pub token: String,
}

/// A policy revision as the bundle holds it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofPolicy {
    pub policy_key: String,
    pub revision_date: String,
    pub effective_at: DateTime<Utc>,
    pub url: String,
    pub sha256: Option<String>,
}

/// The proof bundle (documented in the README).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofBundle {
    /// [`PROOF_FORMAT`].
    pub format: String,
    pub issuer: String,
    pub generated_at: DateTime<Utc>,
    pub tenant: String,
    /// The person's pseudonymous subject ids (no email or phone is in the bundle).
    pub subject_ids: Vec<String>,
    /// Every event of those subjects in recorded order: whole chains from their first event,
    /// or from a checkpoint where events were pruned.
    pub events: Vec<ProofEvent>,
    /// The signed checkpoints (compact JWS, claims `consentry-checkpoint/1`) that stand in for
    /// the subjects' pruned events; absent when none was pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<String>,
    /// The receipts issued for them (compact JWS).
    pub receipts: Vec<String>,
    /// The tenant's policy revisions (what receipts and events name).
    pub policies: Vec<ProofPolicy>,
    /// What the person was shown: each presentation the events name, with its content.
    pub presentations: Vec<ProofPresentation>,
    /// The keys that signed the receipts, checkpoints, presentations and the attestation: those
    /// published when the bundle was made, and any retired key (from the ledger's key history,
    /// [`crate::ledger::keys`]) that signed something of the bundle. Each `kid` is the key's
    /// RFC 7638 thumbprint.
    pub jwks: Jwks,
    /// A JWS (same keys) over [`Attestation`].
    pub attestation: String,
}

/// The claims of a bundle's attestation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attestation {
    pub iss: String,
    pub iat: i64,
    pub format: String,
    pub tenant: String,
    /// Subject id → hash of its last event (the chain head when the bundle was made).
    pub heads: BTreeMap<String, String>,
    pub events: usize,
    pub receipts: usize,
    /// Lower-case hex SHA-256 of the bundle without `attestation`, as compact JSON with keys
    /// sorted (see [`digest`]).
    pub bundle_sha256: String,
}

/// SHA-256 (hex) of a bundle's JSON without its `attestation`, serialised with sorted keys and
/// no whitespace: `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
pub fn digest(doc: &serde_json::Value) -> String {
    let mut doc = doc.clone();
    if let Some(map) = doc.as_object_mut() {
        map.remove("attestation");
    }
    let canonical = serde_json::to_string(&sort(doc)).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn sort(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> = map.into_iter().map(|(k, v)| (k, sort(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort).collect()),
        other => other,
    }
}

/// Builds the bundle of the person behind `stored`. `None` when nobody is.
pub async fn build(state: &AppState, tenant_id: &str, stored: String) -> Result<Option<ProofBundle>, ApiError> {
    let held = super::subjects::holdings(state, tenant_id, stored).await?;
    let Some(person) = held.person else { return Ok(None) };
    let (tenant, ids) = (tenant_id.to_owned(), person.subject_ids.clone());
    let checkpoints: Vec<String> = state
        .db(move |conn| Ok(CheckpointRow::list_for_subjects(conn, &tenant, &ids)?))
        .await?
        .into_iter()
        .map(|c| c.jws)
        .collect();
    let config = state.tenant_config(tenant_id).await?.ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    let policies = config.revisions.iter().map(|r: &RevisionRow| ProofPolicy {
        policy_key: r.policy_key.clone(),
        revision_date: r.revision_date.clone(),
        effective_at: r.effective_at_utc(),
        url: r.url.clone(),
        sha256: r.sha256.clone(),
    });
    let mut heads = BTreeMap::new();
    for e in &held.events {
        heads.insert(e.subject_id.clone(), e.hash.clone());
    }
    let mut shown: Vec<String> = held.events.iter().filter_map(|e| e.presentation_sha256.clone()).collect();
    shown.sort_unstable();
    shown.dedup();
    let presentations = if shown.is_empty() {
        Vec::new()
    } else {
        let tenant = tenant_id.to_owned();
        let rows = state
            .db(move |conn| Ok(crate::db::models::presentation::PresentationRow::find_many(conn, &tenant, &shown)?))
            .await?;
        rows.into_iter()
            .map(|r| {
                let content = serde_json::from_str(&r.content)
                    .map_err(|_| ApiError::internal(crate::db::models::corrupt("presentation", &r.sha256)))?;
                Ok(ProofPresentation { sha256: r.sha256, content, token: r.token })
            })
            .collect::<Result<Vec<_>, ApiError>>()?
    };
    // The keys published today, and every key of the ledger's history that signed something
    // of the bundle: a retired key, unpublished since, still verifies what it signed.
    let keys = state.receipts.clone();
    let history = state.db(move |conn| Ok(crate::ledger::keys::history(conn, &keys)?)).await?;
    let mut jwks = state.receipts.jwks(Utc::now().date_naive());
    let named: std::collections::HashSet<String> = checkpoints
        .iter()
        .chain(held.receipts.iter().map(|r| &r.jws))
        .chain(presentations.iter().map(|p| &p.token))
        .filter_map(|jws| jsonwebtoken::decode_header(jws).ok()?.kid)
        .collect();
    for key in history.keys {
        if named.contains(&key.kid) && !jwks.keys.iter().any(|k| k.kid == key.kid) {
            jwks.keys.push(key);
        }
    }
    let mut bundle = ProofBundle {
        format: PROOF_FORMAT.into(),
        issuer: state.receipts.issuer.clone(),
        generated_at: super::now(),
        tenant: tenant_id.to_owned(),
        subject_ids: person.subject_ids.clone(),
        events: held.events.iter().map(ProofEvent::from_row).collect(),
        checkpoints,
        receipts: held.receipts.into_iter().map(|r| r.jws).collect(),
        policies: policies.collect(),
        presentations,
        jwks,
        attestation: String::new(),
    };
    let doc = serde_json::to_value(&bundle).map_err(ApiError::internal)?;
    let attestation = Attestation {
        iss: bundle.issuer.clone(),
        iat: Utc::now().timestamp(),
        format: PROOF_FORMAT.into(),
        tenant: bundle.tenant.clone(),
        heads,
        events: bundle.events.len(),
        receipts: bundle.receipts.len(),
        bundle_sha256: digest(&doc),
    };
    bundle.attestation = state.receipts.sign_claims(&attestation).map_err(ApiError::internal)?;
    Ok(Some(bundle))
}

/// What `consentry proof verify` found.
#[derive(Debug, Serialize)]
pub struct ProofReport {
    pub valid: bool,
    pub events: usize,
    pub subjects: usize,
    pub receipts: usize,
    /// Checkpoints that stand in for pruned events, each verified (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub checkpoints: usize,
    /// The keys the signatures were checked with: the RFC 7638 thumbprint of each key of the
    /// bundle's `jwks`. Without `trusted` keys, compare them with the service's
    /// `/.well-known/jwks.json`: a bundle can carry any key.
    pub keys: Vec<String>,
    /// Whether those keys were checked against keys the auditor trusts (`--jwks`).
    pub keys_pinned: bool,
    /// What is broken, one sentence each (empty when valid).
    pub problems: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Checks a bundle offline: the attestation's signature (with the bundle's JWKS) and its digest
/// of the rest of the file; every event's hash and link, with the ledger's own check
/// ([`link`]); each chain's head against the attested one; each receipt's signature, that its
/// events are in the chains with the same hashes, and that its policies and presentation are the
/// bundle's; each presentation's content against its hash and its token; each event's presentation.
///
/// The bundle's keys are its own: each key's `kid` must be its RFC 7638 thumbprint, and with
/// `trusted` (the service's published JWKS, obtained apart from the bundle) each must be one of
/// those, the same key; without, the report lists their thumbprints to compare.
pub fn verify(text: &str, trusted: Option<&Jwks>) -> ProofReport {
    let mut problems = Vec::new();
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return report(0, 0, 0, vec![format!("the file is not JSON: {e}")]),
    };
    let bundle: ProofBundle = match serde_json::from_value(doc.clone()) {
        Ok(b) => b,
        Err(e) => return report(0, 0, 0, vec![format!("the file is not a proof bundle: {e}")]),
    };
    if bundle.format != PROOF_FORMAT {
        problems.push(format!("format '{}' is not {PROOF_FORMAT}", bundle.format));
    }
    let keys: Vec<String> = bundle.jwks.keys.iter().map(|k| crate::receipts::thumbprint(&k.x)).collect();
    for (key, thumbprint) in bundle.jwks.keys.iter().zip(&keys) {
        if &key.kid != thumbprint {
            problems.push(format!(
                "jwks: the key named {} is not that key (its RFC 7638 thumbprint is {thumbprint})",
                crate::domain::shown(&key.kid)
            ));
        }
        if let Some(trusted) = trusted {
            if !trusted.keys.iter().any(|t| t.x == key.x && &crate::receipts::thumbprint(&t.x) == thumbprint) {
                problems.push(format!("jwks: key {thumbprint} of the bundle is not one of the trusted keys (--jwks)"));
            }
        }
    }
    let attested = match verify_with_jwks::<Attestation>(&bundle.attestation, &bundle.jwks) {
        Ok((_, a)) => Some(a),
        Err(why) => {
            problems.push(format!("attestation: {why}"));
            None
        }
    };
    if let Some(a) = &attested {
        if a.bundle_sha256 != digest(&doc) {
            problems.push(
                "attestation: the file's content differs from what was attested (changed after it was issued)".into(),
            );
        }
        if a.events != bundle.events.len() || a.receipts != bundle.receipts.len() {
            problems.push(format!(
                "attestation: {} events and {} receipts were attested, the file has {} and {}",
                a.events,
                a.receipts,
                bundle.events.len(),
                bundle.receipts.len()
            ));
        }
    }

    let mut chains = Chains::default();
    // Subject id → the time range of its pruned events (a receipt may name some of them).
    let mut pruned: HashMap<String, (String, String)> = HashMap::new();
    for (i, jws) in bundle.checkpoints.iter().enumerate() {
        match verify_checkpoint(jws, &bundle.jwks) {
            Ok(c) if c.tenant == bundle.tenant => {
                chains.start_from(&c);
                pruned.insert(c.sub.clone(), (c.first_occurred_at.clone(), c.last_occurred_at.clone()));
            }
            Ok(c) => problems.push(format!("checkpoint {}: of tenant {}, not the bundle's", i + 1, c.tenant)),
            Err(why) => problems.push(format!("checkpoint {}: {why}", i + 1)),
        }
    }
    let mut hashes: HashMap<&str, &str> = HashMap::new();
    for event in &bundle.events {
        match event.to_row() {
            Ok(row) => {
                if !chains.link(&row) {
                    problems.push(format!(
                        "event {}: its hash or its link to the previous event of subject {} does not hold",
                        event.id, event.subject_id
                    ));
                }
            }
            Err(why) => problems.push(why),
        }
        hashes.insert(event.id.as_str(), event.hash.as_str());
    }
    for (subject, id) in chains.unused_bridges() {
        problems.push(format!("chain of subject {subject}: event {id}, which its checkpoint says is kept, is missing"));
    }
    let heads = chains.heads;
    if let Some(a) = &attested {
        for (subject, head) in &a.heads {
            if heads.get(subject) != Some(head) {
                problems.push(format!(
                    "chain of subject {subject}: its last event is not the attested one (events removed or added)"
                ));
            }
        }
    }

    let mut shown: HashMap<&str, &ProofPresentation> = HashMap::new();
    for p in &bundle.presentations {
        if p.content.sha256() != p.sha256 {
            problems.push(format!("presentation {}: its content does not hash to it (the text was changed)", p.sha256));
        }
        match verify_with_jwks::<PresentationClaims>(&p.token, &bundle.jwks) {
            Ok((_, c)) if c.schema == PRESENTATION_SCHEMA && c.sha256 == p.sha256 && c.tenant == bundle.tenant => {}
            Ok(_) => problems.push(format!("presentation {}: its token is for another presentation", p.sha256)),
            Err(why) => problems.push(format!("presentation {}: token: {why}", p.sha256)),
        }
        shown.insert(p.sha256.as_str(), p);
    }
    for event in &bundle.events {
        if let Some(h) = &event.presentation_sha256 {
            if !shown.contains_key(h.as_str()) {
                problems.push(format!("event {}: presentation {h} is not in the bundle", event.id));
            }
        }
    }
    let policies: HashMap<(&str, &str), &ProofPolicy> =
        bundle.policies.iter().map(|p| ((p.policy_key.as_str(), p.revision_date.as_str()), p)).collect();
    for (i, jws) in bundle.receipts.iter().enumerate() {
        let claims: ReceiptClaims = match verify_with_jwks(jws, &bundle.jwks) {
            Ok((_, c)) => c,
            Err(why) => {
                problems.push(format!("receipt {}: {why}", i + 1));
                continue;
            }
        };
        for e in &claims.events {
            match hashes.get(e.id.as_str()) {
                Some(h) if *h == e.hash => {}
                Some(_) => {
                    problems.push(format!("receipt {}: event {} has another hash in the chain", claims.jti, e.id))
                }
                // Pruned under retention: the subject's checkpoint accounts for it, if the
                // receipt's time falls in the range of the pruned events.
                None if pruned.get(&claims.sub).is_some_and(|(first, last)| within(&claims.time, first, last)) => {}
                None => problems.push(format!("receipt {}: event {} is not in the bundle", claims.jti, e.id)),
            }
        }
        if let Some(p) = &claims.presentation {
            if !shown.contains_key(p.sha256.as_str()) {
                problems.push(format!("receipt {}: presentation {} is not in the bundle", claims.jti, p.sha256));
            }
        }
        for p in &claims.policies {
            match policies.get(&(p.key.as_str(), p.revision_date.as_str())) {
                Some(b) if b.url == p.url && b.sha256 == p.sha256 => {}
                _ => problems.push(format!(
                    "receipt {}: policy {} {} is not the bundle's (url or sha256 differ, or missing)",
                    claims.jti, p.key, p.revision_date
                )),
            }
        }
    }
    let mut out = report(bundle.events.len(), heads.len(), bundle.receipts.len(), problems);
    out.checkpoints = bundle.checkpoints.len();
    out.keys = keys;
    out.keys_pinned = trusted.is_some();
    out
}

/// Whether the RFC 3339 time `t` lies in `[first, last]` (all three as hashed: UTC, micros).
fn within(t: &str, first: &str, last: &str) -> bool {
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok();
    match (parse(t), parse(first), parse(last)) {
        (Some(t), Some(first), Some(last)) => first <= t && t <= last,
        _ => false,
    }
}

fn report(events: usize, subjects: usize, receipts: usize, problems: Vec<String>) -> ProofReport {
    ProofReport {
        valid: problems.is_empty(),
        events,
        subjects,
        receipts,
        checkpoints: 0,
        keys: Vec::new(),
        keys_pinned: false,
        problems,
    }
}
