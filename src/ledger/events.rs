//! How consent events are shown to integrators: in the subject's history, the tenant's change
//! feed and webhook deliveries (one shape everywhere).

use crate::db::models::event::NewEvent;
use crate::db::models::subject::DataSubject;
use crate::db::models::{corrupt, utc};
use crate::db::AnyConnection;
use crate::domain::{ConsentSource, Decision};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One recorded consent event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    pub purpose: String,
    pub decision: Decision,
    pub policy_revision: Option<String>,
    pub source: ConsentSource,
    pub region: Option<String>,
    /// The site whose public endpoint recorded it, if any.
    pub site_id: Option<String>,
    /// When the person decided (UTC).
    pub occurred_at: DateTime<Utc>,
    /// When Consentry committed it (UTC).
    pub recorded_at: DateTime<Utc>,
    /// `hash` of the subject's previous event (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this event's canonical form, including `prev_hash`.
    pub hash: String,
    /// SHA-256 of what the person was shown (the write's `presentation`), when it carried one;
    /// covered by `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation_sha256: Option<String>,
}

impl EventResponse {
    pub fn from_row(r: NewEvent) -> Result<Self, diesel::result::Error> {
        Ok(Self {
            decision: Decision::parse(&r.decision).ok_or_else(|| corrupt("decision", &r.decision))?,
            source: ConsentSource::parse(&r.source).ok_or_else(|| corrupt("source", &r.source))?,
            id: r.id,
            purpose: r.purpose_key,
            policy_revision: r.policy_revision,
            region: r.region,
            site_id: r.site_id,
            occurred_at: utc(r.occurred_at),
            recorded_at: utc(r.recorded_at),
            prev_hash: r.prev_hash,
            hash: r.hash,
            presentation_sha256: r.presentation_sha256,
        })
    }
}

/// One event of the feed, with the data subject it belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    #[serde(flatten)]
    pub event: EventResponse,
    /// The pseudonymous id of the data subject (the person it joined, after identity linking).
    pub subject_id: String,
    /// The subject's identifiers as stored: `visitor:<uuid>`, `user:<id>`, and email and phone
    /// as `email:h:<hex>` / `phone:h:<hex>` keyed hashes.
    pub identifiers: Vec<String>,
}

/// The events as the feed shows them: each with its data subject (the person it joined, after
/// identity linking) and that person's stored identifiers. Two queries, whatever the count.
pub fn describe_events(
    conn: &mut AnyConnection,
    tenant_id: &str,
    rows: Vec<NewEvent>,
) -> Result<Vec<FeedEvent>, diesel::result::Error> {
    let mut ids: Vec<&str> = rows.iter().map(|e| e.subject_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let canonical: BTreeMap<String, String> = DataSubject::canonical(conn, tenant_id, &ids)?.into_iter().collect();
    let people: Vec<&str> = canonical.values().map(String::as_str).collect();
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (subject, identifier) in DataSubject::identifiers_of(conn, tenant_id, &people)? {
        by_subject.entry(subject).or_default().push(identifier);
    }
    rows.into_iter()
        .map(|row| {
            let subject_id = canonical.get(&row.subject_id).cloned().unwrap_or_else(|| row.subject_id.clone());
            Ok(FeedEvent {
                identifiers: by_subject.get(&subject_id).cloned().unwrap_or_default(),
                subject_id,
                event: EventResponse::from_row(row)?,
            })
        })
        .collect()
}
