//! The claims of a signed consent receipt: one accepted submission, as a third party can check
//! it. Field names follow the consent record of ISO/IEC TS 27560:2023 where one fits (record id,
//! PII principal as a pseudonymous id, collection method, timestamp, notice, purposes with their
//! consent type and status, events); JWT registered claims (RFC 7519 §4.1) where they exist.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `body` (a JSON object) with `"receipt": "<jws>"` added as its last member; any other body
/// as it is. Responses carry their receipt this way; the response stored for an
/// `Idempotency-Key` is kept without it (the receipt is stored once, in its own row) and gets it
/// back here when replayed.
pub fn with_receipt(body: &str, jws: &str) -> String {
    let trimmed = body.trim_end();
    match trimmed.strip_suffix('}') {
        Some(head) if trimmed.starts_with('{') => {
            let sep = if head.trim_end().ends_with('{') { "" } else { "," };
            let mut out = String::with_capacity(head.len() + jws.len() + 16);
            out.push_str(head);
            out.push_str(sep);
            out.push_str("\"receipt\":\"");
            out.push_str(jws);
            out.push_str("\"}");
            out
        }
        _ => body.to_owned(),
    }
}

/// `schema` of receipts of this shape.
pub const RECEIPT_SCHEMA: &str = "consentry-receipt/1 (ISO/IEC TS 27560)";

/// What a receipt asserts. Never holds a raw email address or phone number: the subject is the
/// pseudonymous data-subject id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptClaims {
    /// Receipt id (TS 27560 record identifier), a UUIDv7.
    pub jti: String,
    /// Who issued it: the service's `public_url`, or `consentry`.
    pub iss: String,
    /// When it was signed (seconds since the epoch, UTC).
    pub iat: i64,
    /// [`RECEIPT_SCHEMA`].
    pub schema: String,
    /// The tenant (data controller) id.
    pub tenant: String,
    /// The site whose public endpoint took the submission, if any (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The pseudonymous data-subject id (TS 27560 PII principal id): never an email or phone.
    pub sub: String,
    /// Where the person was (ISO 3166), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Collection method: `banner`, `preference_center`, `api`, `import`, `gpc`, …
    pub source: String,
    /// When the person decided (RFC 3339, UTC, microseconds).
    pub time: String,
    /// The revision date the person saw (`YYYY-MM-DD`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    /// Each policy in force at `time` (the latest revision per policy): TS 27560 notice.
    pub policies: Vec<ReceiptPolicy>,
    /// Each purpose decided, with its decision and consent model.
    pub purposes: Vec<ReceiptPurpose>,
    /// Present and true when the request carried Global Privacy Control (`Sec-GPC: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpc: Option<bool>,
    /// The consent events the submission wrote, with their chain hashes.
    pub events: Vec<ReceiptEvent>,
    /// What the person was shown (TS 27560 notice as presented): the SHA-256 of the banner's
    /// purposes and policy revisions (see [`crate::domain::presentation`]) and when its token
    /// was issued. Absent when the write carried none (server-side writes, older SDKs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation: Option<crate::domain::presentation::Shown>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptPolicy {
    pub key: String,
    pub revision_date: String,
    pub url: String,
    /// SHA-256 (hex) of the policy text, when the tenant published one.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptPurpose {
    pub purpose: String,
    /// `granted` or `denied`.
    pub decision: String,
    /// `opt_in`, `opt_out` or `notice_only` in the request's region.
    pub consent_model: String,
    /// Collection method of this decision (`gpc` for the signal's denials).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptEvent {
    pub id: String,
    /// The event's hash in the subject's chain (see [`crate::domain::ledger`]).
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::with_receipt;

    #[test]
    fn the_receipt_is_the_last_member() {
        assert_eq!(with_receipt(r#"{"a":1}"#, "x.y.z"), r#"{"a":1,"receipt":"x.y.z"}"#);
        assert_eq!(with_receipt("{}", "x.y.z"), r#"{"receipt":"x.y.z"}"#);
        assert_eq!(with_receipt("not json", "x.y.z"), "not json");
    }
}
