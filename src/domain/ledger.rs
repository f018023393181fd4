//! The per-subject hash chain over consent events.
//!
//! Each event stores `prev_hash` (the `hash` of the same data subject's previous event, or
//! [`GENESIS_HASH`] for the first) and `hash` = SHA-256 over the event's canonical form,
//! which includes `prev_hash`. Changing, removing or reordering any stored event breaks every
//! later link, which `consentry ledger verify` detects: proof that the record of what a person
//! agreed to was not rewritten (GDPR Art. 7(1), the controller must be able to demonstrate consent).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `prev_hash` of a subject's first event: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an event that its hash covers, in a fixed order.
///
/// Timestamps are hashed as RFC 3339 UTC with microseconds, the precision both databases keep.
#[derive(Debug, Clone, Serialize)]
pub struct EventContent<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub subject_id: &'a str,
    pub purpose: &'a str,
    pub decision: &'a str,
    pub policy_revision: Option<&'a str>,
    pub source: &'a str,
    pub region: Option<&'a str>,
    #[serde(serialize_with = "micros")]
    pub occurred_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: &'a str,
    /// SHA-256 of what the person was shown (`domain::presentation`). Hashed only when present
    /// (as the last member), so the events written before it existed keep their hashes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presentation: Option<&'a str>,
}

fn micros<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl EventContent<'_> {
    /// Lower-case hex SHA-256 of `consentry-event-v1\n` followed by the canonical JSON.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain struct serialises");
        let mut digest = Sha256::new();
        digest.update(b"consentry-event-v1\n");
        digest.update(&json);
        hex::encode(digest.finalize())
    }
}

/// Truncates to whole microseconds, so that what is hashed is what both databases store.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn content(prev: &str) -> EventContent<'_> {
        let t = Utc.with_ymd_and_hms(2021, 3, 1, 12, 0, 0).unwrap();
        EventContent {
            id: "e1",
            tenant_id: "t1",
            subject_id: "s1",
            purpose: "analytics",
            decision: "granted",
            policy_revision: Some("2021-02-01"),
            source: "banner",
            region: None,
            occurred_at: t,
            recorded_at: t,
            prev_hash: prev,
            presentation: None,
        }
    }

    #[test]
    fn the_hash_is_stable_and_covers_every_field() {
        let base = content(GENESIS_HASH);
        assert_eq!(base.hash(), content(GENESIS_HASH).hash());
        assert_eq!(base.hash().len(), 64);
        let mut changed = content(GENESIS_HASH);
        changed.decision = "denied";
        assert_ne!(base.hash(), changed.hash());
        let relinked = content("ab");
        assert_ne!(base.hash(), relinked.hash());
    }

    #[test]
    fn a_presentation_is_hashed_only_when_present() {
        // An event without one hashes as before the column existed (the value is what the
        // v1 form gave before `presentation` was added, computed independently with Python's
        // hashlib), so old chains still verify.
        let base = content(GENESIS_HASH);
        assert_eq!(base.hash(), "968a4de17622bb88e156f223f3e0b95546ac83d4208ed33f96e2e16aaa0a75ed");
        let mut shown = content(GENESIS_HASH);
        shown.presentation = Some("ab");
        assert_ne!(base.hash(), shown.hash());
        let mut other = content(GENESIS_HASH);
        other.presentation = Some("cd");
        assert_ne!(shown.hash(), other.hash());
    }

    #[test]
    fn timestamps_are_cut_to_microseconds() {
        let t = Utc.timestamp_opt(1_614_600_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
