//! What the person was shown (issue 11, item 2): issuing a presentation token with the site's
//! config, and accepting one back with a write.
//!
//! The token is a compact JWS signed with the receipt key (`EdDSA`, header `kid`, checked with
//! `GET /.well-known/jwks.json`) over [`PresentationClaims`]: the tenant, the site, the region
//! and locale of the config, and the SHA-256 of [`PresentationContent`] (the purposes with
//! titles, descriptions and effective consent models; the policy revisions with their sha256).
//! Its issue time is the start of the current UTC hour, and Ed25519 signatures are
//! deterministic, so the config is the same bytes for an hour while nothing changes (the token
//! does not defeat a cache every second; a token is at most an hour older than its config
//! fetch). The content is stored once per tenant and hash (`presentations`), the first time
//! this process issues it, so a proof bundle carries the text behind every hash.

use crate::db::models::naive;
use crate::db::models::presentation::PresentationRow;
use crate::db::models::revision::RevisionRow;
use crate::domain::presentation::{
    issue_time, PresentationClaims, PresentationContent, Shown, ShownPolicy, ShownPurpose, PRESENTATION_SCHEMA,
};
use crate::domain::RegionCode;
use crate::error::ApiError;
use crate::ledger::TenantRules;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use utoipa::ToSchema;

/// The longest `presentation` a write may carry (a token is about 600 characters).
pub const MAX_TOKEN_LEN: usize = 4096;

/// This process's presentation settings, the presentations it knows are stored, and the tokens
/// it issued or checked this hour.
pub struct Presentations {
    max_age: chrono::Duration,
    /// `<tenant id> <sha256>` of the presentations stored (by this process or another).
    stored: Mutex<HashSet<String>>,
    /// Tokens of this hour: a token is the same for every visitor of a site, region and locale
    /// for an hour (see the module), so an Ed25519 signature per config fetch and a signature
    /// check per write (the latter costs about twice the former) are done once an hour instead.
    tokens: Mutex<TokenCache>,
}

/// Tokens issued (by site, region, locale and content hash) and checked (by the token), for
/// one hour (`iat`); emptied when the hour changes or it holds [`TokenCache::MAX`] entries (the
/// locale is the visitor's).
#[derive(Default)]
struct TokenCache {
    hour: i64,
    issued: HashMap<String, String>,
    checked: HashMap<String, Checked>,
}

/// A token whose signature held: its claims, and the policy revision dates its content shows
/// (once looked up; `None` until then, or while its content is not on record).
#[derive(Clone)]
struct Checked {
    claims: PresentationClaims,
    revisions: Option<Vec<String>>,
}

impl TokenCache {
    const MAX: usize = 4096;

    /// The cache for `hour`, emptied if it held another hour's tokens or is full.
    fn at(&mut self, hour: i64) -> &mut Self {
        if self.hour != hour || self.issued.len() + self.checked.len() >= Self::MAX {
            self.hour = hour;
            self.issued.clear();
            self.checked.clear();
        }
        self
    }
}

impl Presentations {
    /// `max_age`: `receipts.presentation_max_age`.
    pub fn new(max_age: std::time::Duration) -> Self {
        Self {
            max_age: chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::hours(24)),
            stored: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    fn is_stored(&self, key: &str) -> bool {
        self.stored.lock().is_ok_and(|s| s.contains(key))
    }

    fn mark_stored(&self, key: String) {
        if let Ok(mut s) = self.stored.lock() {
            s.insert(key);
        }
    }
}

/// `presentation` of `GET /v1/sites/{key}/config`: send `token` back with the write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PresentationToken {
    /// A compact JWS (`EdDSA`, header `kid`; the keys of `GET /.well-known/jwks.json`) whose
    /// claims are `iss`, `iat`, `schema` (`consentry-presentation/1`), `tenant`, `site` (id),
    /// `region`, `locale` and `sha256`.
    #[schema(example = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJzaGEyNTYiOiIuLi4ifQ.c2ln")]
    pub token: String,
    /// SHA-256 (hex) of what the banner shows: `sha256("consentry-presentation-v1\n" + JSON)`,
    /// the JSON being `{"policies": [{"key", "revision_date", "sha256", "url"}], "purposes":
    /// [{"consent_model", "description", "key", "title"}]}` with sorted keys and no whitespace,
    /// in the order of this config's `policies` and `purposes`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// When the token was issued: the start of the current UTC hour (the same token all hour).
    pub issued_at: DateTime<Utc>,
}

/// What the banner of `rules` (a site's purposes) shows in `region`.
pub fn content(rules: &TenantRules, region: Option<&RegionCode>) -> PresentationContent {
    PresentationContent {
        policies: RevisionRow::current(&rules.revision_rows)
            .into_iter()
            .map(|r| ShownPolicy {
                key: r.policy_key.clone(),
                revision_date: r.revision_date.clone(),
                sha256: r.sha256.clone(),
                url: r.url.clone(),
            })
            .collect(),
        purposes: rules
            .presented_purposes()
            .map(|p| ShownPurpose {
                consent_model: p.model_in(region).as_str().to_owned(),
                description: p.description.clone(),
                key: p.key.to_string(),
                title: p.title.clone(),
            })
            .collect(),
    }
}

/// Issues the presentation token of a site's config (`rules` presenting its purposes) for
/// `region` and `locale`, and stores the content the first time this process issues it (a
/// failure to store is logged, the config still served: the next issue stores it).
///
/// Errors: a signing failure (503).
pub async fn issue(
    state: &AppState,
    site_id: &str,
    rules: &TenantRules,
    region: Option<&RegionCode>,
    locale: Option<&str>,
) -> Result<PresentationToken, ApiError> {
    let content = content(rules, region);
    let sha256 = content.sha256();
    let issued_at = issue_time(Utc::now());
    let hour = issued_at.timestamp();
    let key = format!(
        "{site_id}\n{}\n{}\n{sha256}",
        region.map(ToString::to_string).unwrap_or_default(),
        locale.unwrap_or("")
    );
    let cached = state.presentations.tokens.lock().ok().and_then(|mut c| c.at(hour).issued.get(&key).cloned());
    if let Some(token) = cached {
        return Ok(PresentationToken { token, sha256, issued_at });
    }
    let claims = PresentationClaims {
        iss: state.receipts.issuer.clone(),
        iat: issued_at.timestamp(),
        schema: PRESENTATION_SCHEMA.to_owned(),
        tenant: rules.tenant_id.clone(),
        site: site_id.to_owned(),
        region: region.map(ToString::to_string),
        locale: locale.map(str::to_owned),
        sha256: sha256.clone(),
    };
    let token = state
        .receipts
        .sign_claims(&claims)
        .map_err(|e| ApiError::Unavailable(format!("the presentation could not be signed: {e}").into()))?;
    if let Err(e) = store(state, &rules.tenant_id, &sha256, &content, &token).await {
        tracing::warn!(error = %e, "a presentation could not be stored; stored at its next issue");
    } else if let Ok(mut cache) = state.presentations.tokens.lock() {
        cache.at(hour).issued.insert(key, token.clone());
    }
    Ok(PresentationToken { token, sha256, issued_at })
}

async fn store(
    state: &AppState,
    tenant_id: &str,
    sha256: &str,
    content: &PresentationContent,
    token: &str,
) -> Result<(), ApiError> {
    let key = format!("{tenant_id} {sha256}");
    if state.presentations.is_stored(&key) {
        return Ok(());
    }
    let row = PresentationRow {
        tenant_id: tenant_id.to_owned(),
        sha256: sha256.to_owned(),
        content: serde_json::to_string(content).map_err(ApiError::internal)?,
        token: token.to_owned(),
        created_at: naive(super::now()),
    };
    state.db(move |conn| Ok(row.insert_if_absent(conn)?)).await?;
    state.presentations.mark_stored(key);
    Ok(())
}

/// The content of a presentation on record, by its hash.
async fn stored_content(
    state: &AppState,
    tenant_id: &str,
    sha256: &str,
) -> Result<Option<PresentationContent>, ApiError> {
    let (tenant_id, hashes) = (tenant_id.to_owned(), vec![sha256.to_owned()]);
    let rows = state.db(move |conn| Ok(PresentationRow::find_many(conn, &tenant_id, &hashes)?)).await?;
    Ok(rows.into_iter().next().and_then(|row| serde_json::from_str(&row.content).ok()))
}

/// Accepts the presentation token a public write carries: signed by a published receipt key,
/// a presentation token, issued for this tenant, site and region (`region` of the write).
/// Returns what to record and whether it is stale: a token issued more than
/// `receipts.presentation_max_age` ago is replaced by the current presentation of the site
/// (for the write's region and the token's locale), recorded instead.
///
/// Errors: 400 naming `presentation` for a token that does not verify, is not a presentation
/// token, or was issued for another tenant, site or region, or in the future, or whose content
/// does not show the `policy_revision` the write names (the proof would say the person agreed
/// to a revision they were not shown).
pub async fn accept(
    state: &AppState,
    site_id: &str,
    rules: &TenantRules,
    region: Option<&RegionCode>,
    raw: &str,
    policy_revision: Option<&str>,
) -> Result<(Shown, bool), ApiError> {
    let refused = |why: String| ApiError::invalid("presentation", why);
    if raw.len() > MAX_TOKEN_LEN {
        return Err(refused(format!("is longer than {MAX_TOKEN_LEN} characters: not a presentation token")));
    }
    let now = Utc::now();
    let hour = issue_time(now).timestamp();
    let cached = state.presentations.tokens.lock().ok().and_then(|mut c| c.at(hour).checked.get(raw).cloned());
    let Checked { claims, revisions } = match cached {
        Some(checked) => checked,
        None => {
            let claims: PresentationClaims = state
                .receipts
                .verify_claims(raw, now.date_naive())
                .map_err(|why| refused(format!("is not a presentation token of this service: {why}")))?;
            let checked = Checked { claims, revisions: None };
            if let Ok(mut cache) = state.presentations.tokens.lock() {
                cache.at(hour).checked.insert(raw.to_owned(), checked.clone());
            }
            checked
        }
    };
    if claims.schema != PRESENTATION_SCHEMA {
        return Err(refused(format!(
            "is not a presentation token (schema '{}')",
            crate::domain::shown(&claims.schema)
        )));
    }
    if claims.tenant != rules.tenant_id || claims.site != site_id {
        return Err(refused("was issued for another site".into()));
    }
    let region_name = region.map(ToString::to_string);
    if claims.region != region_name {
        return Err(refused(format!(
            "was issued for region {}, the write is for region {}: fetch the config for the visitor's region",
            claims.region.as_deref().unwrap_or("(none)"),
            region_name.as_deref().unwrap_or("(none)")
        )));
    }
    let issued_at = DateTime::from_timestamp(claims.iat, 0).ok_or_else(|| refused("has no valid iat".into()))?;
    if issued_at > now + chrono::Duration::seconds(60) {
        return Err(refused("was issued in the future".into()));
    }
    if now - issued_at > state.presentations.max_age {
        let current = issue(state, site_id, rules, region, claims.locale.as_deref()).await?;
        return Ok((Shown { sha256: current.sha256, issued_at: current.issued_at }, true));
    }
    // What the token shows, looked up once an hour per token: the site's current content (the
    // usual case, then stored if it is not on record yet), else the stored one.
    let revisions = match revisions {
        Some(revisions) => Some(revisions),
        None => {
            let current = content(rules, region);
            let shown = if current.sha256() == claims.sha256 {
                if !state.presentations.is_stored(&format!("{} {}", rules.tenant_id, claims.sha256)) {
                    store(state, &rules.tenant_id, &claims.sha256, &current, raw).await?;
                }
                Some(current)
            } else {
                stored_content(state, &rules.tenant_id, &claims.sha256).await?
            };
            // A presentation whose text is not on record (its storing failed) cannot be checked.
            let revisions: Option<Vec<String>> =
                shown.map(|c| c.policies.into_iter().map(|p| p.revision_date).collect());
            if let (Some(r), Ok(mut cache)) = (&revisions, state.presentations.tokens.lock()) {
                if let Some(checked) = cache.at(hour).checked.get_mut(raw) {
                    checked.revisions = Some(r.clone());
                }
            }
            revisions
        }
    };
    if let (Some(revision), Some(shown)) = (policy_revision, &revisions) {
        if !shown.iter().any(|d| d == revision) {
            return Err(refused(format!(
                "shows policy revisions {}, not {revision}, the policy_revision of the write: fetch the config again \
                 and show the visitor its policies",
                if shown.is_empty() { "(none)".to_owned() } else { shown.join(", ") }
            )));
        }
    }
    Ok((Shown { sha256: claims.sha256, issued_at }, false))
}
