//! Retention: how long events are kept, and the signed checkpoint that stands in for a data
//! subject's pruned events in its hash chain.
//!
//! Pruning removes events of a purpose older than its `retention_days`, except the event a
//! current state rests on and the subject's last event. What it removes may sit anywhere in the
//! subject's chain, so the events kept no longer link one to the next everywhere. The
//! checkpoint says, signed with the receipt key, how many events are gone (`events`), their time
//! range, the hash of the last one (`last_hash`), and for every kept event whose predecessor is
//! gone a [`Bridge`]: the `prev_hash` it carries and the hash of the kept event before it
//! (`after`, or [`GENESIS_HASH`]). A verifier walks the kept events as usual and takes a
//! bridged event's link from the checkpoint; every bridge must be used, so no kept event can be
//! removed unseen, and a bridge cannot be forged without the key.

use super::ledger::GENESIS_HASH;
use super::purpose::Purpose;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `schema` of checkpoints of this shape.
pub const CHECKPOINT_SCHEMA: &str = "consentry-checkpoint/1";

/// The least number of days the records of CCPA opt-out requests are kept: 24 months at their
/// longest (731 days), 11 CCR §7101(a) ("at least 24 months").
pub const CCPA_RECORD_DAYS: u32 = 731;

/// The longest `retention_days` accepted: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Checks a purpose's `retention_days`: 1 to [`MAX_RETENTION_DAYS`], and at least
/// [`CCPA_RECORD_DAYS`] when its denials are opt-outs of sale/sharing (11 CCR §7101).
pub fn check_retention_days(purpose: &Purpose, days: u32) -> Result<(), String> {
    if days == 0 || days > MAX_RETENTION_DAYS {
        return Err(format!("must be 1 to {MAX_RETENTION_DAYS} days"));
    }
    if purpose.records_opt_outs() && days < CCPA_RECORD_DAYS {
        return Err(format!(
            "must be at least {CCPA_RECORD_DAYS} days (24 months): this purpose's denials are opt-outs of \
             sale/sharing, whose records are kept at least 24 months (11 CCR §7101)"
        ));
    }
    Ok(())
}

/// The days a purpose's events are kept, as pruning applies it: its `retention_days`, never
/// less than [`CCPA_RECORD_DAYS`] for a purpose that records opt-outs (should its definition
/// have changed since); `None`: kept for ever.
pub fn effective_retention_days(purpose: &Purpose) -> Option<u32> {
    let days = purpose.retention_days?;
    Some(if purpose.records_opt_outs() { days.max(CCPA_RECORD_DAYS) } else { days })
}

/// How a kept event whose predecessor was pruned links into the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    /// The event's own `prev_hash` (the hash of the pruned event before it).
    pub prev_hash: String,
    /// The hash of the kept event before it, or [`GENESIS_HASH`] when none is kept.
    pub after: String,
}

/// What a checkpoint asserts (the claims of its JWS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    /// [`CHECKPOINT_SCHEMA`].
    pub schema: String,
    pub iss: String,
    /// When it was signed (seconds since the epoch).
    pub iat: i64,
    /// The tenant id.
    pub tenant: String,
    /// The pseudonymous data-subject id whose chain it belongs to.
    pub sub: String,
    /// Events of the subject pruned so far, in all.
    pub events: u64,
    /// The earliest and latest `occurred_at` of the pruned events (RFC 3339, UTC, microseconds).
    pub first_occurred_at: String,
    pub last_occurred_at: String,
    /// The hash of the last pruned event, in recorded order.
    pub last_hash: String,
    /// The largest log position (`seq`) of the pruned events.
    pub through_seq: i64,
    /// Kept event id → how it links (see [`Bridge`]).
    pub bridges: BTreeMap<String, Bridge>,
}

/// One event of a chain as the bridge computation needs it.
pub struct Link<'a> {
    pub id: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// The bridges of the events kept (in recorded order) of a subject whose whole chain, as far
/// as it is stored and checkpointed, has been verified: each kept event whose `prev_hash` is not
/// the hash of the kept event before it (or [`GENESIS_HASH`] for the first) gets one.
pub fn bridges<'a>(kept: impl IntoIterator<Item = Link<'a>>) -> BTreeMap<String, Bridge> {
    let mut out = BTreeMap::new();
    let mut before = GENESIS_HASH.to_owned();
    for e in kept {
        if e.prev_hash != before {
            out.insert(e.id.to_owned(), Bridge { prev_hash: e.prev_hash.to_owned(), after: before.clone() });
        }
        before = e.hash.to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_cover_exactly_the_kept_events_after_a_gap() {
        let l = |id, prev, hash| Link { id, prev_hash: prev, hash };
        // e1 e2 e3 e4 e5, e1 and e3 pruned: e2 and e4 are bridged, e5 links to e4.
        let kept = [l("e2", "h1", "h2"), l("e4", "h3", "h4"), l("e5", "h4", "h5")];
        let b = bridges(kept);
        assert_eq!(b.len(), 2);
        assert_eq!(b["e2"], Bridge { prev_hash: "h1".into(), after: GENESIS_HASH.into() });
        assert_eq!(b["e4"], Bridge { prev_hash: "h3".into(), after: "h2".into() });
        assert!(bridges([l("e1", GENESIS_HASH, "h1"), l("e2", "h1", "h2")]).is_empty());
    }
}
