//! What a person was shown (issue 11, item 2): the purposes of a site's banner with their titles,
//! descriptions and effective consent models, and the policy revisions in force with their
//! SHA-256. Its canonical hash goes into a signed token (`GET /v1/sites/{key}/config`), comes
//! back with the write, is stored with the events and named in the receipt, so the proof says
//! which text the person saw (GDPR Art. 7(1) and Recital 42: consent is informed only if the
//! person knew what they agreed to).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// `schema` claim of presentation tokens.
pub const PRESENTATION_SCHEMA: &str = "consentry-presentation/1";

/// The prefix hashed before the canonical JSON (domain separation from event hashes).
const HASH_PREFIX: &[u8] = b"consentry-presentation-v1\n";

/// What the banner shows. Every object's members are declared in lexicographic order, so the
/// compact JSON of this struct is also its sorted-key form: anyone recomputes the hash with
/// `sha256(b"consentry-presentation-v1\n" + json.dumps(content, sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False).encode())`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresentationContent {
    /// The policy revisions in force (latest per policy), in the config's order.
    pub policies: Vec<ShownPolicy>,
    /// The site's purposes, in the config's order.
    pub purposes: Vec<ShownPurpose>,
}

/// A purpose as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShownPurpose {
    /// `opt_in`, `opt_out` or `notice_only`: the model in force in the config's region.
    pub consent_model: String,
    pub description: String,
    pub key: String,
    pub title: String,
}

/// A policy revision as linked from the banner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShownPolicy {
    pub key: String,
    pub revision_date: String,
    /// SHA-256 (hex) of the policy text, when the tenant published one.
    pub sha256: Option<String>,
    pub url: String,
}

impl PresentationContent {
    /// Lower-case hex SHA-256 of `consentry-presentation-v1\n` followed by the compact JSON.
    pub fn sha256(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain struct serialises");
        let mut digest = Sha256::new();
        digest.update(HASH_PREFIX);
        digest.update(&json);
        hex::encode(digest.finalize())
    }
}

/// The claims of a presentation token: "this service showed content `sha256` for `site` in
/// `region` and `locale`, as of `iat`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresentationClaims {
    /// Who issued it: the service's `public_url`, or `consentry`.
    pub iss: String,
    /// When it was issued (seconds since the epoch, UTC): the start of the hour it was asked
    /// for in, so the config stays the same bytes for an hour.
    pub iat: i64,
    /// [`PRESENTATION_SCHEMA`].
    pub schema: String,
    pub tenant: String,
    /// The site's id.
    pub site: String,
    /// The region the consent models were resolved for (the config's `region`).
    #[serde(default)]
    pub region: Option<String>,
    /// The config's `locale`.
    #[serde(default)]
    pub locale: Option<String>,
    /// [`PresentationContent::sha256`].
    pub sha256: String,
}

/// The presentation a submission was made under, as recorded: its hash and when its token was
/// issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shown {
    /// [`PresentationContent::sha256`].
    pub sha256: String,
    /// When the token was issued (RFC 3339, UTC).
    pub issued_at: DateTime<Utc>,
}

/// The start of the UTC hour of `t`: the issue time of a token asked for at `t`.
pub fn issue_time(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(3600), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn content() -> PresentationContent {
        PresentationContent {
            policies: vec![ShownPolicy {
                key: "privacy".into(),
                revision_date: "2021-02-01".into(),
                sha256: None,
                url: "https://example.com/p".into(),
            }],
            purposes: vec![ShownPurpose {
                consent_model: "opt_in".into(),
                description: "Zählt Besuche".into(),
                key: "analytics".into(),
                title: "Statistik".into(),
            }],
        }
    }

    #[test]
    fn the_hash_is_over_the_sorted_key_json_and_covers_the_text() {
        let c = content();
        let json = serde_json::to_string(&c).unwrap();
        // Sorted keys, no whitespace, non-ASCII as is: what json.dumps(sort_keys=True) gives.
        assert_eq!(
            json,
            r#"{"policies":[{"key":"privacy","revision_date":"2021-02-01","sha256":null,"url":"https://example.com/p"}],"purposes":[{"consent_model":"opt_in","description":"Zählt Besuche","key":"analytics","title":"Statistik"}]}"#
        );
        let mut expected = Sha256::new();
        expected.update(b"consentry-presentation-v1\n");
        expected.update(json.as_bytes());
        assert_eq!(c.sha256(), hex::encode(expected.finalize()));
        let mut changed = content();
        changed.purposes[0].description.push('.');
        assert_ne!(c.sha256(), changed.sha256());
        let mut model = content();
        model.purposes[0].consent_model = "opt_out".into();
        assert_ne!(c.sha256(), model.sha256());
    }

    #[test]
    fn tokens_are_issued_at_the_start_of_the_hour() {
        let t = Utc.with_ymd_and_hms(2026, 12, 5, 13, 59, 59).unwrap();
        assert_eq!(issue_time(t), Utc.with_ymd_and_hms(2026, 12, 5, 13, 0, 0).unwrap());
    }
}
