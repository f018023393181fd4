//! Signed consent receipts: issued for each accepted submission once the writer has committed it
//! (a receipt is never handed out for something that is not on record), stored with the
//! pseudonymous subject id, and replayed with the response of a retried `Idempotency-Key`.

use crate::db::models::event::{Event, NewEvent};
use crate::db::models::receipt::ReceiptRow;
use crate::db::models::{naive, new_id, utc};
use crate::domain::receipt::{ReceiptClaims, ReceiptEvent, ReceiptPolicy, ReceiptPurpose, RECEIPT_SCHEMA};
use crate::domain::ConsentSource;
use crate::error::ApiError;
use crate::ledger::{Outcome, RecordRequest, TenantRules};
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
        }
    }
}

/// Adds `"receipt": "<jws>"` as the last member of a JSON object body.
fn with_receipt(body: String, jws: &str) -> String {
    let trimmed = body.trim_end();
    match trimmed.strip_suffix('}') {
        Some(head) if trimmed.starts_with('{') => {
            let sep = if head.trim_end().ends_with('{') { "" } else { "," };
            format!("{head}{sep}\"receipt\":\"{jws}\"}}")
        }
        _ => body,
    }
}

/// Issues the receipt of a committed submission and adds it to the response body; for a
/// replay, adds the receipt issued the first time (none when the first response was committed
/// but its receipt was not, e.g. a crash in between).
///
/// Errors: the database (503) or a signing failure (500); the submission stays committed, and a
/// retry under the same `Idempotency-Key` writes nothing again.
pub async fn attach(state: &AppState, ctx: ReceiptContext, outcome: Outcome) -> Result<Outcome, ApiError> {
    match outcome {
        Outcome::Fresh { recorded, body } => {
            let keys = state.receipts.clone();
            let subject_id = recorded.subject_id.clone();
            let ids = recorded.event_ids.clone();
            let jws = state
                .db(move |conn| {
                    let mut events = Event::by_ids(conn, &ctx.tenant_id, &subject_id, &ids)?;
                    events.sort_by_key(|e| ids.iter().position(|id| *id == e.id));
                    let claims = ctx.claims(&keys.issuer, &subject_id, &events);
                    let jws = keys.sign(&claims).map_err(ApiError::internal)?;
                    ReceiptRow {
                        id: claims.jti.clone(),
                        tenant_id: ctx.tenant_id.clone(),
                        subject_id,
                        idempotency: ctx.idempotency.clone(),
                        event_ids: serde_json::to_string(&ids).map_err(ApiError::internal)?,
                        jws: jws.clone(),
                        issued_at: naive(Utc::now()),
                    }
                    .insert(conn)?;
                    Ok(jws)
                })
                .await?;
            Ok(Outcome::Fresh { body: with_receipt(body, &jws), recorded })
        }
        Outcome::Replay { status, body } => {
            let Some(slot) = ctx.idempotency.clone() else { return Ok(Outcome::Replay { status, body }) };
            let tenant_id = ctx.tenant_id.clone();
            let stored = state.db(move |conn| Ok(ReceiptRow::find_by_idempotency(conn, &tenant_id, &slot)?)).await?;
            let body = match stored {
                Some(row) => with_receipt(body, &row.jws),
                None => body,
            };
            Ok(Outcome::Replay { status, body })
        }
    }
}

/// `POST /v1/receipts/verify`: checks a receipt against the keys published today.
pub fn verify(state: &AppState, jws: &str) -> Verification {
    state.receipts.verify(jws, Utc::now().date_naive())
}

#[cfg(test)]
mod tests {
    use super::with_receipt;

    #[test]
    fn the_receipt_is_the_last_member() {
        assert_eq!(with_receipt(r#"{"a":1}"#.into(), "x.y.z"), r#"{"a":1,"receipt":"x.y.z"}"#);
        assert_eq!(with_receipt("{}".into(), "x.y.z"), r#"{"receipt":"x.y.z"}"#);
        assert_eq!(with_receipt("not json".into(), "x.y.z"), "not json");
    }
}
