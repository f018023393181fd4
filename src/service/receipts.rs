//! Signed consent receipts: issued for each accepted submission in the transaction that records
//! it (a receipt is never handed out for something that is not on record), stored with the
//! pseudonymous subject id, and replayed with the response of a retried `Idempotency-Key`.

use crate::db::models::event::NewEvent;
use crate::db::models::receipt::ReceiptRow;
use crate::db::models::{naive, new_id, utc};
use crate::domain::receipt::{ReceiptClaims, ReceiptEvent, ReceiptPolicy, ReceiptPurpose, RECEIPT_SCHEMA};
use crate::domain::ConsentSource;
use crate::ledger::{LedgerError, RecordRequest, Seal, TenantRules};
use crate::receipts::Verification;
use crate::state::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;

/// What a receipt says besides the events: taken from the request and the tenant's rules before
/// the write.
pub struct ReceiptContext {
    tenant_id: String,
    site_id: Option<String>,
    region: Option<String>,
    source: ConsentSource,
    gpc: bool,
    policy_revision: Option<String>,
    /// `<scope>:<key>` of the request's `Idempotency-Key`.
    idempotency: Option<String>,
    policies: Vec<ReceiptPolicy>,
    /// Purpose key → consent model in the request's region.
    models: HashMap<String, &'static str>,
    presentation: Option<crate::domain::presentation::Shown>,
    now: DateTime<Utc>,
}

impl ReceiptContext {
    pub fn new(rules: &TenantRules, req: &RecordRequest<'_>) -> Self {
        let policies = crate::db::models::revision::RevisionRow::current(&rules.revision_rows)
            .into_iter()
            .map(|row| ReceiptPolicy {
                key: row.policy_key.clone(),
                revision_date: row.revision_date.clone(),
                url: row.url.clone(),
                sha256: row.sha256.clone(),
            })
            .collect();
        Self {
            tenant_id: rules.tenant_id.clone(),
            site_id: req.site_id.map(str::to_owned),
            region: req.region.map(|r| r.to_string()),
            source: req.source,
            gpc: req.gpc,
            policy_revision: req.policy_revision.map(str::to_owned),
            idempotency: req.idempotency.as_ref().map(|c| format!("{}:{}", c.scope, c.key)),
            policies,
            models: rules.purposes.iter().map(|p| (p.key.to_string(), p.model_in(req.region).as_str())).collect(),
            presentation: req.presentation.cloned(),
            now: rules.now,
        }
    }

    /// The claims of a receipt over `events` (the submission's, in the order written).
    fn claims(&self, issuer: &str, subject_id: &str, events: &[NewEvent]) -> ReceiptClaims {
        let time = events.first().map_or(self.now, |e| utc(e.occurred_at));
        ReceiptClaims {
            jti: new_id(),
            iss: issuer.to_owned(),
            iat: Utc::now().timestamp(),
            schema: RECEIPT_SCHEMA.to_owned(),
            tenant: self.tenant_id.clone(),
            site: self.site_id.clone(),
            sub: subject_id.to_owned(),
            region: self.region.clone(),
            source: self.source.as_str().to_owned(),
            time: time.to_rfc3339_opts(SecondsFormat::Micros, true),
            policy_revision: self.policy_revision.clone(),
            policies: self.policies.clone(),
            purposes: events
                .iter()
                .map(|e| ReceiptPurpose {
                    purpose: e.purpose_key.clone(),
                    decision: e.decision.clone(),
                    consent_model: self.models.get(&e.purpose_key).copied().unwrap_or("opt_in").to_owned(),
                    source: e.source.clone(),
                })
                .collect(),
            gpc: self.gpc.then_some(true),
            events: events.iter().map(|e| ReceiptEvent { id: e.id.clone(), hash: e.hash.clone() }).collect(),
            presentation: self.presentation.clone(),
        }
    }
}

/// The [`Seal`] of a submission: its response carries a signed receipt.
///
/// The receipt is signed inside the submission's transaction, over the events the batch is
/// writing (their ids and chain hashes, known before the insert), stored with them
/// (`consent_receipts`, one statement for the batch) and added to the response body as its
/// last member, `receipt`. So a receipt exists exactly when its events are committed. The body
/// stored for an `Idempotency-Key` names the receipt (it is stored once), and a retry gets the
/// same receipt back. A batch that fails is rolled back whole and its submissions written again
/// one by one, each signing anew.
///
/// Errors: a signing failure (the submission fails, 503).
pub fn sealer(state: &AppState, ctx: ReceiptContext) -> Seal {
    let keys = state.receipts.clone();
    std::sync::Arc::new(move |recorded| {
        let claims = ctx.claims(&keys.issuer, &recorded.subject_id, &recorded.events);
        let jws = keys
            .sign(&claims)
            .map_err(|e| LedgerError::Unavailable(format!("the receipt could not be signed: {e}")))?;
        Ok(ReceiptRow {
            id: claims.jti,
            tenant_id: ctx.tenant_id.clone(),
            subject_id: recorded.subject_id.clone(),
            idempotency: ctx.idempotency.clone(),
            event_ids: serde_json::to_string(&recorded.event_ids).unwrap_or_default(),
            jws,
            issued_at: naive(Utc::now()),
        })
    })
}

/// `POST /v1/receipts/verify`: checks a receipt against the keys published today.
pub fn verify(state: &AppState, jws: &str) -> Verification {
    state.receipts.verify(jws, Utc::now().date_naive())
}
