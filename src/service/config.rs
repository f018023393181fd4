//! Tenant configuration use cases: define a purpose, publish a policy revision, create a site.
//!
//! What a valid definition is lives here once: the API routes and `consentry apply` both check
//! their input with [`purpose`], [`revision`] and [`site`], and write it with the functions
//! below. A change is served at once by this instance (its directory entry is dropped after the
//! commit) and by the others within a poll (see [`super::directory`]).

use crate::db::backend::{write_transaction, write_transaction_retrying};
use crate::db::models::purpose::PurposeRow;
use crate::db::models::revision::RevisionRow;
use crate::db::models::site::Site;
use crate::db::models::{naive, new_id, utc};
use crate::db::AnyConnection;
use crate::domain::audit::{CookiePattern, HostPattern, MAX_DECLARED};
use crate::domain::{
    ConsentModel, LegalBasis, PolicyKey, Purpose, PurposeKey, PurposeKind, RegionCode, RegionalModels, RevisionDate,
};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

// ---- Purposes

/// The longest `max_age_days` accepted: 10 years.
pub const MAX_AGE_DAYS_LIMIT: u32 = 3_650;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Statistics cookies",
    "description": "Compile statistical data on the use and performance of our website (privacy policy §8).",
    "kind": "cookie_category", "consent_model": "opt_in", "legal_basis": "consent",
    "gpc_applies": false, "max_age_days": 395, "regions": {"US": "opt_out"},
    "cookies": ["_ga", "_ga_*"], "hosts": ["www.google-analytics.com", "*.doubleclick.net"]
}))]
pub struct PutPurpose {
    /// Shown to people, 1–200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Shown to people, at most 5,000 characters.
    #[schema(max_length = 5000)]
    pub description: String,
    pub kind: PurposeKind,
    /// The default consent model, where no entry of `regions` applies.
    pub consent_model: ConsentModel,
    pub legal_basis: LegalBasis,
    /// Whether a Global Privacy Control signal opts the person out (11 CCR §7025).
    pub gpc_applies: bool,
    /// How long a grant stays valid, in days (1–3650); absent or null: until withdrawn.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub max_age_days: Option<u32>,
    /// How long this purpose's events are kept, in days after they occurred (1–36500); absent
    /// or null: for ever. `consentry retention run` and the retention worker prune older events,
    /// never the one a current state rests on, leaving a signed checkpoint in the chain. A
    /// purpose whose denials are opt-outs of sale/sharing (`opt_out` model anywhere, or
    /// `gpc_applies`) keeps them at least 731 days, 24 months (11 CCR §7101): less is refused.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
    /// Region code (ISO 3166-1 alpha-2 or ISO 3166-2, e.g. `US-CA`) → consent model there;
    /// the most specific code wins.
    #[serde(default, deserialize_with = "crate::extract::unique_keys_opt")]
    #[schema(value_type = Option<BTreeMap<RegionCode, ConsentModel>>)]
    pub regions: Option<BTreeMap<String, ConsentModel>>,
    /// The cookies this purpose's vendors set: names, or prefixes ending in `*` (`_ga_*`); at
    /// most 100. The SDK deletes those it can see (on the page's host and the cookie domain)
    /// when the purpose is refused or withdrawn; the tracker audit attributes them to it.
    #[serde(default)]
    #[schema(max_items = 100, value_type = Option<Vec<CookiePattern>>)]
    pub cookies: Option<Vec<String>>,
    /// The hosts this purpose's vendors load from: host names, or `*.domain` for every
    /// subdomain; at most 100. The tracker audit attributes resources from them to it.
    #[serde(default)]
    #[schema(max_items = 100, value_type = Option<Vec<HostPattern>>)]
    pub hosts: Option<Vec<String>>,
}

/// Parses a declared list (`cookies` or `hosts`): at most [`MAX_DECLARED`] entries,
/// duplicates dropped. Errors: 400 naming `field[i]`.
fn declared<T: PartialEq>(
    field: &str,
    raw: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_DECLARED {
        return Err(ApiError::invalid(field, format!("list at most {MAX_DECLARED} entries")));
    }
    let mut out: Vec<T> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let v = parse(r).map_err(|m| ApiError::invalid(format!("{field}[{i}]"), m))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// A purpose key from a path or file. Errors: 400 naming `key`.
pub fn purpose_key(raw: &str) -> Result<PurposeKey, ApiError> {
    PurposeKey::parse(raw).map_err(|m| ApiError::invalid("key", m))
}

/// Checks a purpose definition; `key` as given in a path or file. Errors: 400 naming the field.
pub fn purpose(key: &str, body: PutPurpose) -> Result<Purpose, ApiError> {
    parse_purpose(purpose_key(key)?, body)
}

/// Checks a purpose definition under a parsed key.
fn parse_purpose(key: PurposeKey, body: PutPurpose) -> Result<Purpose, ApiError> {
    let title = body.title;
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("title", "must be 1 to 200 characters"));
    }
    if body.description.chars().count() > 5_000 {
        return Err(ApiError::invalid("description", "must be at most 5000 characters"));
    }
    if let Some(days) = body.max_age_days {
        if days == 0 || days > MAX_AGE_DAYS_LIMIT {
            return Err(ApiError::invalid("max_age_days", format!("must be 1 to {MAX_AGE_DAYS_LIMIT} days")));
        }
    }
    let mut regions = BTreeMap::new();
    for (code, model) in body.regions.unwrap_or_default() {
        let region = RegionCode::parse(&code).map_err(|m| ApiError::invalid(format!("regions.{code}"), m))?;
        regions.insert(region, model);
    }
    let any_notice_only =
        body.consent_model == ConsentModel::NoticeOnly || regions.values().any(|m| *m == ConsentModel::NoticeOnly);
    if body.gpc_applies && any_notice_only {
        return Err(ApiError::invalid(
            "gpc_applies",
            "a GPC opt-out cannot apply to a notice_only (strictly necessary) purpose, which cannot be refused",
        ));
    }
    let cookies = declared("cookies", body.cookies, CookiePattern::parse)?;
    let hosts = declared("hosts", body.hosts, HostPattern::parse)?;
    let purpose = Purpose {
        key,
        title,
        description: body.description,
        kind: body.kind,
        consent_model: body.consent_model,
        legal_basis: body.legal_basis,
        gpc_applies: body.gpc_applies,
        max_age_days: body.max_age_days,
        regions: RegionalModels::new(regions),
        cookies,
        hosts,
        retention_days: body.retention_days,
    };
    if let Some(days) = purpose.retention_days {
        crate::domain::retention::check_retention_days(&purpose, days)
            .map_err(|m| ApiError::invalid("retention_days", m))?;
    }
    Ok(purpose)
}

/// Creates or replaces `purpose` of `tenant_id`; returns (created, created_at, updated_at).
/// Changing a purpose never rewrites recorded decisions.
pub async fn put_purpose(
    state: &AppState,
    tenant_id: &str,
    purpose: &Purpose,
) -> Result<(bool, DateTime<Utc>, DateTime<Utc>), ApiError> {
    let row = PurposeRow::from_domain(tenant_id, purpose, naive(super::now()));
    let changed = state
        .db(move |conn| {
            write_transaction_retrying::<_, diesel::result::Error>(conn, |conn| {
                let created = row.upsert(conn)?;
                let (_, created_at, updated_at) =
                    PurposeRow::find(conn, &row.tenant_id, &row.key)?.ok_or(DieselError::NotFound)?;
                Ok((created, utc(created_at), utc(updated_at)))
            })
            .map_err(ApiError::from)
        })
        .await;
    state.directory.invalidate(tenant_id);
    changed
}

/// Fails unless every key of `keys` is a purpose of `tenant_id` (400 naming `purposes[i]`).
fn require_defined<K: AsRef<str>>(conn: &mut AnyConnection, tenant_id: &str, keys: &[K]) -> Result<(), ApiError> {
    let defined = PurposeRow::list(conn, tenant_id)?;
    for (i, k) in keys.iter().enumerate() {
        let k = k.as_ref();
        if !defined.iter().any(|p| p.key.as_str() == k) {
            return Err(ApiError::invalid(format!("purposes[{i}]"), format!("no purpose '{k}' is defined")));
        }
    }
    Ok(())
}

// ---- Policy revisions

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "revision_date": "2021-02-01",
    "url": "https://www.example.com/privacy-policy",
    "sha256": "3013eaacdb49e0092e9830e7fa783dcab21a3c5f1778494dbf75f7fabe58dce8",
    "requires_reconsent": false
}))]
pub struct CreateRevision {
    /// The date the revision carries, `YYYY-MM-DD`; unique per policy.
    #[schema(value_type = RevisionDate)]
    pub revision_date: String,
    /// When it takes effect (RFC 3339); default: 00:00 UTC on `revision_date`. A revision
    /// that takes effect in the future is stored but changes nothing until then.
    #[serde(default)]
    #[schema(pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub effective_at: Option<DateTime<Utc>>,
    /// Where the text of this revision is published: an http or https URL with a host.
    #[schema(value_type = HttpUrl)]
    pub url: String,
    /// SHA-256 of the published text, 64 hex digits: proof of which text people saw.
    #[serde(default)]
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    pub sha256: Option<String>,
    /// Whether grants given before this revision must be asked for again (they become `stale`).
    pub requires_reconsent: bool,
    /// The purposes this revision changes; absent: all purposes.
    #[serde(default)]
    #[schema(min_items = 1, value_type = Option<Vec<PurposeKey>>)]
    pub purposes: Option<Vec<String>>,
}

/// An absolute `http(s)://host[:port][path]` URL of visible ASCII, as the schema says.
pub const HTTP_URL_PATTERN: &str = concat!("^https?://[A-Za-z0-9.-]+(:", crate::PORT_PATTERN!(), ")?([/?#][!-~]*)?$");

fn parse_http_url(raw: &str) -> Option<url::Url> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(HTTP_URL_PATTERN).expect("a valid pattern"));
    if raw.len() > 2000 || !re.is_match(raw) {
        return None;
    }
    url::Url::parse(raw).ok()
}

/// A policy key from a path or file. Errors: 400 naming `policy_key`.
pub fn policy_key(raw: &str) -> Result<PolicyKey, ApiError> {
    PolicyKey::parse(raw).map_err(|m| ApiError::invalid("policy_key", m))
}

/// The schema of [`HTTP_URL_PATTERN`] URLs.
pub struct HttpUrl;

impl utoipa::PartialSchema for HttpUrl {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(HTTP_URL_PATTERN))
            .max_length(Some(2000))
            .examples([serde_json::json!("https://www.example.com/privacy-policy")])
            .into()
    }
}
impl ToSchema for HttpUrl {}

/// A checked revision, ready to publish.
pub struct NewRevision {
    pub row: RevisionRow,
    purposes: Option<Vec<PurposeKey>>,
}

/// Checks a revision of `policy_key` (no query). Errors: 400 naming the field.
pub fn revision(
    tenant_id: &str,
    policy_key: &str,
    body: CreateRevision,
    now: DateTime<Utc>,
) -> Result<NewRevision, ApiError> {
    let policy_key = self::policy_key(policy_key)?;
    let date = RevisionDate::parse(&body.revision_date).map_err(|m| ApiError::invalid("revision_date", m))?;
    let url = parse_http_url(&body.url)
        .ok_or_else(|| ApiError::invalid("url", "must be an absolute http or https URL with a host"))?;
    let sha256 = match body.sha256.as_deref() {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
        Some(_) => return Err(ApiError::invalid("sha256", "must be 64 hexadecimal digits (SHA-256 of the text)")),
    };
    let purposes = match body.purposes {
        None => None,
        Some(keys) => {
            let mut parsed: Vec<PurposeKey> = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                parsed.push(PurposeKey::parse(k).map_err(|m| ApiError::invalid(format!("purposes[{i}]"), m))?);
            }
            if parsed.is_empty() {
                return Err(ApiError::invalid(
                    "purposes",
                    "list at least one purpose, or leave it out for all purposes",
                ));
            }
            Some(parsed)
        }
    };
    let earliest = date.start_of_day_utc() - chrono::Duration::days(1);
    if body.effective_at.is_some_and(|t| t < earliest) {
        return Err(ApiError::invalid(
            "effective_at",
            "is more than a day before revision_date: a revision cannot take effect before it was written",
        ));
    }
    let row = RevisionRow {
        id: new_id(),
        tenant_id: tenant_id.to_owned(),
        policy_key: policy_key.to_string(),
        revision_date: date.to_string(),
        effective_at: naive(body.effective_at.unwrap_or_else(|| date.start_of_day_utc())),
        url: url.to_string(),
        sha256,
        requires_reconsent: body.requires_reconsent,
        purposes: purposes
            .as_ref()
            .map(|p| serde_json::Value::from(p.iter().map(|k| k.to_string()).collect::<Vec<_>>()).to_string()),
        created_at: naive(now),
    };
    Ok(NewRevision { row, purposes })
}

/// Publishes `revision` in `conn`'s transaction. Errors: a purpose it names that is not defined
/// (400), a revision of the same date (409: revisions are immutable).
pub fn insert_revision(conn: &mut AnyConnection, revision: &NewRevision) -> Result<(), ApiError> {
    let row = &revision.row;
    if let Some(keys) = &revision.purposes {
        require_defined(conn, &row.tenant_id, &keys.iter().map(PurposeKey::as_str).collect::<Vec<_>>())?;
    }
    match row.insert(conn) {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Err(ApiError::Conflict(format!(
            "policy '{}' already has a revision dated {}; revisions are immutable, publish a new date",
            row.policy_key, row.revision_date
        ))),
        other => Ok(other?),
    }
}

/// Publishes `revision` (see [`insert_revision`]).
pub async fn publish_revision(state: &AppState, revision: NewRevision) -> Result<RevisionRow, ApiError> {
    let tenant_id = revision.row.tenant_id.clone();
    let published = state
        .db(move |conn| {
            write_transaction(conn, |conn| insert_revision(conn, &revision))?;
            Ok(revision.row)
        })
        .await;
    state.directory.invalidate(&tenant_id);
    published
}

// ---- Sites

/// The most origins one site may list.
pub const MAX_ORIGINS: usize = 50;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "www.example.com", "origins": ["https://www.example.com"], "purposes": ["necessary", "statistics", "social_media", "sale_sharing"]}))]
pub struct CreateSite {
    /// A label for people, 1–200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Origins (`scheme://host[:port]`, http or https, no path) allowed to call the public
    /// endpoints; 1–50.
    #[schema(min_items = 1, max_items = 50, value_type = Vec<Origin>)]
    pub origins: Vec<String>,
    /// The purposes this site's banner and preference centre present (defined purpose keys);
    /// absent: every purpose of the tenant. `needs_consent` of its visitors counts only these.
    #[serde(default)]
    #[schema(min_items = 1, value_type = Option<Vec<PurposeKey>>)]
    pub purposes: Option<Vec<String>>,
    /// The share of page views (0 to 1) on which the SDK runs the tracker audit (observes the
    /// cookies and hosts the page uses and reports them); absent: 0, never.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub audit_sample_rate: Option<f64>,
}

/// Checks a tracker audit sample rate: a number from 0 to 1. Errors: 400 naming `audit_sample_rate`.
pub fn audit_sample_rate(raw: Option<f64>) -> Result<f64, ApiError> {
    match raw {
        None => Ok(0.0),
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Some(_) => {
            Err(ApiError::invalid("audit_sample_rate", "must be a number from 0 (never) to 1 (every page view)"))
        }
    }
}

/// An origin as `POST /v1/sites` takes it: `http(s)://host[:port]`, an optional final `/`.
pub const ORIGIN_PATTERN: &str = concat!("^https?://[A-Za-z0-9.-]+(:", crate::PORT_PATTERN!(), ")?/?$");

/// The longest origin accepted: a 253-character host (RFC 1035 §2.3.4), scheme and port.
pub const MAX_ORIGIN_LEN: usize = 270;

/// Normalises an origin to `scheme://host[:port]` (lower case, default port dropped),
/// the serialisation browsers send in `Origin` (RFC 6454 §6.1).
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let bad = |why: &str| format!("'{}' is not an origin: {why}", crate::domain::shown(raw));
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(ORIGIN_PATTERN).expect("a valid pattern"));
    if raw.len() > MAX_ORIGIN_LEN {
        return Err(bad(&format!("at most {MAX_ORIGIN_LEN} characters")));
    }
    if !re.is_match(raw) {
        let why = if raw.starts_with("http://") || raw.starts_with("https://") {
            "an origin is scheme://host[:port], with no path, query, fragment or credentials"
        } else {
            "use http:// or https://, e.g. https://www.example.com"
        };
        return Err(bad(why));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("use scheme://host[:port], e.g. https://www.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("an origin has no path, query, fragment or credentials"));
    }
    match url.origin() {
        url::Origin::Tuple(..) => Ok(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(bad("it has no host")),
    }
}

/// The schema of [`ORIGIN_PATTERN`] origins.
pub struct Origin;

impl utoipa::PartialSchema for Origin {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(ORIGIN_PATTERN))
            .max_length(Some(MAX_ORIGIN_LEN))
            .description(Some(
                "An origin: http or https, a host of letters, digits, dots and hyphens, an optional port.",
            ))
            .examples([serde_json::json!("https://www.example.com")])
            .into()
    }
}
impl ToSchema for Origin {}

/// A checked site, ready to create.
pub struct NewSite {
    pub site: Site,
    purposes: Option<Vec<String>>,
}

/// Checks a site definition (no query): name, origins (normalised, duplicates dropped), the
/// purposes it presents. Errors: 400 naming the field.
pub fn site(tenant_id: &str, body: CreateSite, now: NaiveDateTime) -> Result<NewSite, ApiError> {
    let name = body.name;
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    if body.origins.is_empty() || body.origins.len() > MAX_ORIGINS {
        return Err(ApiError::invalid("origins", format!("list 1 to {MAX_ORIGINS} origins")));
    }
    let mut origins = Vec::with_capacity(body.origins.len());
    for (i, raw) in body.origins.iter().enumerate() {
        let origin = parse_origin(raw).map_err(|m| ApiError::invalid(format!("origins[{i}]"), m))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let purposes = match &body.purposes {
        None => None,
        Some(keys) if keys.is_empty() => {
            return Err(ApiError::invalid("purposes", "list at least one purpose, or leave it out for all"))
        }
        Some(keys) => Some(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    PurposeKey::parse(k)
                        .map(|k| k.to_string())
                        .map_err(|m| ApiError::invalid(format!("purposes[{i}]"), m))
                })
                .collect::<Result<Vec<String>, _>>()?
                .into_iter()
                .fold(Vec::new(), |mut unique, k| {
                    if !unique.contains(&k) {
                        unique.push(k);
                    }
                    unique
                }),
        ),
    };
    let mut site = Site::new(tenant_id, &name, &origins, purposes.as_deref(), now);
    site.audit_sample_rate = audit_sample_rate(body.audit_sample_rate)?;
    Ok(NewSite { site, purposes })
}

/// Creates `site` in `conn`'s transaction, its identity secret sealed with `secrets`. Errors: a
/// purpose it names that is not defined (400).
pub fn insert_site(
    conn: &mut AnyConnection,
    secrets: &crate::secrets::SecretBox,
    site: &NewSite,
) -> Result<(), ApiError> {
    if let Some(keys) = &site.purposes {
        require_defined(conn, &site.site.tenant_id, keys)?;
    }
    let mut row = site.site.clone();
    row.identity_secret =
        row.identity_secret.map(|s| secrets.seal(&crate::secrets::identity_secret_context(&row.id), &s));
    Ok(row.insert(conn)?)
}

/// Creates `site` (see [`insert_site`]).
pub async fn create_site(state: &AppState, site: NewSite) -> Result<Site, ApiError> {
    let tenant_id = site.site.tenant_id.clone();
    let secrets = state.secrets.clone();
    let created = state
        .db(move |conn| {
            write_transaction(conn, |conn| insert_site(conn, &secrets, &site))?;
            Ok(site.site)
        })
        .await;
    state.directory.invalidate(&tenant_id);
    created
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        assert_eq!(parse_origin("https://WWW.Example.com").unwrap(), "https://www.example.com");
        assert_eq!(parse_origin("https://www.example.com:443/").unwrap(), "https://www.example.com");
        assert_eq!(parse_origin("http://127.0.0.1:8000").unwrap(), "http://127.0.0.1:8000");
        for bad in
            ["www.example.com", "ftp://example.com", "https://example.com/path", "https://example.com?q=1", "null"]
        {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
