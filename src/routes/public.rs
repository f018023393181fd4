//! Public endpoints for browsers, under `/v1/sites/{site_key}`: the site's configuration, a
//! visitor's consent state, and recording a visitor's choices. The `Origin` header, when
//! present, must be one of the site's origins; CORS answers only those.

use crate::auth::PublicSite;
use crate::domain::audit::{CookiePattern, HostPattern};
use crate::domain::{
    ConsentModel, ConsentSource, LegalBasis, PurposeKind, RegionCode, RevisionDate, SubjectIdentifier,
};
use crate::error::{ApiError, Problem};
use crate::extract::{has_gpc, JsonBody};
use crate::routes::consents::{
    idempotency_claim, read_state, record_and_respond, ConsentState, RecordRequestOwned, RecordResponse,
};
use crate::routes::parse_region;
use crate::state::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_site_config)
        .service(get_visitor_consents)
        .service(record_visitor_consents)
        .service(get_gpc_support);
}

/// How long the SDK keeps the visitor's choices in its cookie when no purpose sets a shorter
/// `max_age_days`: 13 months, the longest the CNIL accepts for consent cookies
/// (CNIL, Délibération n° 2020-091, §50).
pub const DEFAULT_COOKIE_MAX_AGE_DAYS: u32 = 395;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// ISO 3166-1 alpha-2 or ISO 3166-2 code (`US-CA`): consent models are resolved for it.
    #[param(value_type = Option<RegionCode>)]
    pub region: Option<String>,
    /// BCP 47 language tag of the visitor, e.g. `en-US` (echoed; titles are the tenant's text).
    #[param(pattern = "^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,7}$")]
    pub locale: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteConfig {
    pub site: PublicSiteInfo,
    /// The region the consent models were resolved for.
    pub region: Option<String>,
    pub locale: Option<String>,
    /// Whether any purpose honours the Global Privacy Control signal.
    pub gpc_honored: bool,
    /// How long the SDK keeps choices in its cookie, in days.
    pub cookie_max_age_days: u32,
    /// The share of page views (0 to 1) on which the SDK runs the tracker audit; 0: never.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub audit_sample_rate: f64,
    /// The revisions in force, latest per policy.
    pub policies: Vec<PolicyInForce>,
    /// Every purpose, with its consent model for `region`.
    pub purposes: Vec<PublicPurpose>,
    /// What this banner shows (the purposes' titles, descriptions and consent models; the
    /// policies' revisions and sha256), hashed and signed: send `presentation.token` back as
    /// `presentation` with the write, and the receipt names what the person was shown.
    pub presentation: crate::service::presentation::PresentationToken,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicSiteInfo {
    pub site_key: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInForce {
    pub policy_key: String,
    pub revision_date: String,
    pub effective_at: DateTime<Utc>,
    pub url: String,
    pub sha256: Option<String>,
    pub requires_reconsent: bool,
}

impl PolicyInForce {
    pub fn from_row(r: &crate::db::models::revision::RevisionRow) -> Self {
        Self {
            policy_key: r.policy_key.clone(),
            revision_date: r.revision_date.clone(),
            effective_at: r.effective_at_utc(),
            url: r.url.clone(),
            sha256: r.sha256.clone(),
            requires_reconsent: r.requires_reconsent,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicPurpose {
    pub key: String,
    pub title: String,
    pub description: String,
    pub kind: PurposeKind,
    /// The consent model in force for the requested region.
    pub consent_model: ConsentModel,
    pub legal_basis: LegalBasis,
    pub gpc_applies: bool,
    pub max_age_days: Option<u32>,
    /// Cookie names and `prefix*` patterns its vendors set: the SDK deletes those it sees
    /// when the purpose is refused or withdrawn.
    #[schema(value_type = Vec<CookiePattern>)]
    pub cookies: Vec<String>,
    /// Hosts and `*.domain` patterns its vendors load from (for the tracker audit).
    #[schema(value_type = Vec<HostPattern>)]
    pub hosts: Vec<String>,
}

/// The site's purposes (consent model resolved for `region`) and the policy revisions in force.
///
/// Answers a strong `ETag` over the body (the body stays the same bytes while nothing changes,
/// within the presentation's hour), and `304 Not Modified` without a body when `If-None-Match`
/// names it or is `*` (RFC 9110 §13.1.2, weak comparison).
#[utoipa::path(
    tag = "public",
    security((), ("origin" = [])),
    params(("site_key" = String, Path, description = "The site's public key"), ConfigQuery),
    responses(
        (status = 200, description = "The configuration", body = SiteConfig,
         headers(("ETag" = String, description = "Strong entity tag of the body (RFC 9110 §8.8.3)"))),
        (status = 304, description = "Not modified: the `If-None-Match` names the current ETag (RFC 9110 §13.1.2)",
         headers(("ETag" = String, description = "The current entity tag"))),
        (status = 400, description = "Malformed region", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown site key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/sites/{site_key}/config")]
pub async fn get_site_config(
    req: HttpRequest,
    state: web::Data<AppState>,
    site: PublicSite,
    query: crate::extract::Query<ConfigQuery>,
) -> Result<HttpResponse, ApiError> {
    let region = parse_region(query.region.as_deref())?;
    if let Some(locale) = &query.locale {
        let ok = locale.len() <= 71
            && locale.split('-').enumerate().all(|(i, part)| {
                (1..=8).contains(&part.len())
                    && part.bytes().all(|b| if i == 0 { b.is_ascii_alphabetic() } else { b.is_ascii_alphanumeric() })
            })
            && locale.split('-').count() <= 8;
        if !ok {
            return Err(ApiError::invalid("locale", "must be a BCP 47 language tag such as en or en-US"));
        }
    }
    let rules = AppState::rules(&site.config, site.entry.purposes.clone())?;
    let purposes: Vec<PublicPurpose> = rules
        .presented_purposes()
        .map(|p| PublicPurpose {
            key: p.key.to_string(),
            title: p.title.clone(),
            description: p.description.clone(),
            kind: p.kind,
            consent_model: p.model_in(region.as_ref()),
            legal_basis: p.legal_basis,
            gpc_applies: p.gpc_applies,
            max_age_days: p.max_age_days,
            cookies: p.cookies.iter().map(ToString::to_string).collect(),
            hosts: p.hosts.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let cookie_max_age_days = purposes
        .iter()
        .filter_map(|p| p.max_age_days)
        .min()
        .unwrap_or(DEFAULT_COOKIE_MAX_AGE_DAYS)
        .min(DEFAULT_COOKIE_MAX_AGE_DAYS);
    let policies = crate::db::models::revision::RevisionRow::current(&rules.revision_rows)
        .into_iter()
        .map(PolicyInForce::from_row)
        .collect();
    let presentation = crate::service::presentation::issue(
        &state,
        &site.entry.site.id,
        &rules,
        region.as_ref(),
        query.locale.as_deref(),
    )
    .await?;
    let config = SiteConfig {
        site: PublicSiteInfo { site_key: site.entry.site.site_key.clone(), name: site.entry.site.name.clone() },
        region: region.map(|r| r.to_string()),
        locale: query.locale.clone(),
        gpc_honored: purposes.iter().any(|p| p.gpc_applies),
        cookie_max_age_days,
        audit_sample_rate: site.entry.site.audit_sample_rate,
        policies,
        purposes,
        presentation,
    };
    let body = serde_json::to_vec(&config).map_err(ApiError::internal)?;
    Ok(with_etag(&req, body))
}

/// A 200 with `body` (JSON) and its strong `ETag`, the SHA-256 of the body in base64url; or a
/// 304 Not Modified with the same `ETag` and caching headers and no body when the request's
/// `If-None-Match` names it or is `*` (RFC 9110 §13.1.2: weak comparison). A malformed
/// `If-None-Match` is ignored (the full answer).
fn with_etag(req: &HttpRequest, body: Vec<u8>) -> HttpResponse {
    use actix_web::http::header::{EntityTag, Header, IfNoneMatch};
    use base64::Engine;
    use sha2::Digest;
    let tag =
        EntityTag::new_strong(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&body)));
    let matched = match IfNoneMatch::parse(req) {
        Ok(IfNoneMatch::Any) => req.headers().contains_key(header::IF_NONE_MATCH),
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&tag)),
        Err(_) => false,
    };
    let mut res = if matched { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CACHE_CONTROL, "no-cache")).insert_header(header::ETag(tag));
    if matched {
        res.finish()
    } else {
        res.insert_header(header::ContentType::json()).body(body)
    }
}

fn parse_visitor(raw: &str, field: &str) -> Result<SubjectIdentifier, ApiError> {
    // Surrounding whitespace is trimmed, as in every identifier (issue 11, item 9).
    crate::domain::identifiers::parse_hyphenated_uuid(raw.trim())
        .map(SubjectIdentifier::Visitor)
        // Not repeated: a site that puts an email address or phone number here would see it
        // come back in the problem body, and go into whatever logs those.
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("is not a hyphenated UUID (36 characters; this one has {})", raw.trim().chars().count()),
            )
        })
}

/// The sources a browser may name.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VisitorSource {
    /// The first-layer banner.
    Banner,
    /// The preference centre.
    PreferenceCentre,
    /// A placeholder of blocked content that grants in place.
    Placeholder,
}

impl From<VisitorSource> for ConsentSource {
    fn from(s: VisitorSource) -> Self {
        match s {
            VisitorSource::Banner => Self::Banner,
            VisitorSource::PreferenceCentre => Self::PreferenceCentre,
            VisitorSource::Placeholder => Self::Placeholder,
        }
    }
}

/// A visitor's consent state, with `needs_consent` telling the SDK whether to show the banner.
#[utoipa::path(
    tag = "public",
    security((), ("origin" = [])),
    params(
        ("site_key" = String, Path, description = "The site's public key"),
        ("visitor_id" = uuid::Uuid, Path, description = "The visitor's UUID, hyphenated"),
        ("Sec-GPC" = Option<String>, Header, description = "`1`: the Global Privacy Control signal, recorded as an opt-out before the state is read"),
        crate::routes::consents::RegionQuery,
    ),
    responses(
        (status = 200, description = "Per-purpose state", body = ConsentState),
        (status = 400, description = "Malformed visitor id or region", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown site key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/sites/{site_key}/visitors/{visitor_id}/consents")]
pub async fn get_visitor_consents(
    state: web::Data<AppState>,
    site: PublicSite,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: crate::extract::Query<crate::routes::consents::RegionQuery>,
) -> Result<HttpResponse, ApiError> {
    let visitor = parse_visitor(&path.1, "visitor_id")?;
    let region = parse_region(query.region.as_deref())?;
    let presented = site.entry.purposes.clone();
    let gpc = has_gpc(&req)?;
    let mut body = if gpc {
        // The signal is an opt-out on every public endpoint (11 CCR §7025(b)): record it first.
        let rules = AppState::rules(&site.config, presented)?;
        let none = BTreeMap::new();
        let stored = visitor.stored_form(&site.config.subject_key);
        let record = crate::ledger::RecordRequest {
            region: region.as_ref(),
            site_id: Some(&site.entry.site.id),
            gpc: true,
            ..crate::ledger::RecordRequest::new(&stored, &none, ConsentSource::Banner)
        };
        match crate::service::consents::record(&state, rules, &record, 200, crate::ledger::Finish::empty()).await? {
            crate::ledger::Outcome::Fresh { recorded, .. } => {
                crate::routes::consents::consent_state(&visitor, &recorded.view)
            }
            crate::ledger::Outcome::Replay { .. } => {
                return Err(ApiError::internal(std::io::Error::other("a read without an idempotency key replayed")))
            }
        }
    } else {
        // On the primary: the SDK cannot send Consentry-Read-After back (see `on_primary`).
        crate::service::read_route::on_primary(read_state(&state, &site.config, presented, visitor, region)).await?
    };
    body.gpc_honored = Some(gpc);
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// The site's Global Privacy Control support resource (GPC specification §3.4): this service
/// honours the signal.
#[utoipa::path(
    tag = "public",
    responses((status = 200, description = "GPC support", body = GpcSupport))
)]
#[get("/.well-known/gpc.json")]
pub async fn get_gpc_support() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(GpcSupport { gpc: true, last_update: GPC_SUPPORT_SINCE })
}

/// When Consentry's handling of the signal last changed (the `lastUpdate` of gpc.json).
pub const GPC_SUPPORT_SINCE: &str = "2026-11-29";

#[derive(Debug, Serialize, ToSchema)]
pub struct GpcSupport {
    /// `true`: the signal is honoured.
    pub gpc: bool,
    /// `YYYY-MM-DD`.
    #[serde(rename = "lastUpdate")]
    pub last_update: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "visitor_id": "0b9c3f1e-8d4a-4f6e-9a51-2c7d8e9f0a1b",
    "choices": {"statistics": true, "social_media": false},
    "policy_revision": "2021-02-01",
    "source": "banner"
}))]
pub struct RecordVisitorConsents {
    /// The visitor's UUID (set by the SDK in a first-party cookie), hyphenated.
    #[schema(value_type = uuid::Uuid)]
    pub visitor_id: String,
    /// Purpose key → granted (`true`) or refused (`false`); 1 to 200 of the site's purposes.
    #[schema(value_type = crate::domain::choices::ChoicesSchema)]
    #[serde(deserialize_with = "crate::extract::unique_keys")]
    pub choices: BTreeMap<String, bool>,
    /// The revision date (`YYYY-MM-DD`) of the policy shown; must be in force.
    #[schema(value_type = RevisionDate)]
    pub policy_revision: String,
    /// `banner`, `preference_centre` or `placeholder`.
    pub source: VisitorSource,
    /// Where the visitor is (ISO 3166), for regional consent models.
    #[serde(default)]
    #[schema(value_type = Option<RegionCode>)]
    pub region: Option<String>,
    /// The page saw `navigator.globalPrivacyControl === true` (the `Sec-GPC: 1` header counts too).
    #[serde(default)]
    pub gpc: Option<bool>,
    /// A JWT from the site's backend (HS256 keyed with the site's identity secret string as given,
    /// claims `sub` = the user id and `exp`, 60 s leeway): the visitor is that user, and the
    /// browser's anonymous history joins the user before the choices are recorded (a browser
    /// that was another user's moves to this one without merging the two people). A bad or
    /// expired token is a 401; nothing is recorded.
    #[serde(default)]
    pub identity_token: Option<String>,
    /// `presentation.token` of `GET /v1/sites/{site_key}/config` (for this site and `region`):
    /// what the visitor was shown. Its hash is stored with the events and named in the receipt.
    /// A token that does not verify, or was issued for another site or region, is a 400 naming
    /// `presentation`; one older than the server's `receipts.presentation_max_age` (default
    /// 24 h) is replaced by the current presentation, and the response says
    /// `presentation_stale: true`. Absent (older SDKs): nothing is recorded for it.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub presentation: Option<String>,
}

/// How far `exp` and `nbf` may be off against this server's clock (seconds), as jsonwebtoken's
/// default: the site's clock and ours differ a little.
const IDENTITY_LEEWAY_SECS: f64 = 60.0;

/// Verifies an identity token with the site's secret (stored sealed, opened with `secrets`);
/// returns the user's identifier (`user:<sub>`).
///
/// The token is a JWS (RFC 7515) signed with HS256 over JWT claims (RFC 7519): `sub` a string,
/// `exp` required and `nbf` optional, each a NumericDate (a JSON number of seconds since 1970,
/// fractions allowed, RFC 7519 §2), with 60 s of leeway. Each refusal (401) names its reason: a
/// header that is malformed, names another algorithm or asks for an extension (`crit`); a
/// signature that does not verify; a claim that is missing, of the wrong type, expired or not
/// valid yet. Nothing is recorded.
fn verify_identity(
    secrets: &crate::secrets::SecretBox,
    site: &crate::db::models::site::Site,
    token: &str,
) -> Result<SubjectIdentifier, ApiError> {
    use jsonwebtoken::errors::ErrorKind as K;
    let refused = |why: &str| ApiError::Unauthorized(format!("identity_token: {why}"));
    let stored = site.identity_secret.as_deref().ok_or_else(|| refused("this site has no identity secret"))?;
    let secret = secrets
        .open(&crate::secrets::identity_secret_context(&site.id), stored)
        .map_err(|why| ApiError::internal(std::io::Error::other(format!("the site's identity secret: {why}"))))?;
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).map_err(ApiError::internal)?;
    let malformed = "the token is malformed: a JWT is three base64url parts joined by dots (RFC 7515 §7.1)";
    // The header first: a token whose header names another algorithm (`none`, RS256) or is not
    // JSON is refused as such, not as a bad signature (RFC 7515 §4.1.1, RFC 7518 §3.1).
    match jsonwebtoken::decode_header(token) {
        Ok(h) if h.alg == jsonwebtoken::Algorithm::HS256 => {}
        Ok(h) => {
            return Err(refused(&format!(
                "the token is signed with {:?}; identity tokens are signed with HS256",
                h.alg
            )))
        }
        Err(e) if matches!(e.kind(), K::Json(_)) => {
            return Err(refused(
                "the token's header is malformed or names an algorithm other than HS256 (such as none)",
            ))
        }
        Err(_) => return Err(refused(malformed)),
    }
    // The signature, then the claims as JSON: their types and times are checked here, so that
    // each refusal says what is wrong (jsonwebtoken reads `exp` only as a whole number that
    // fits in 64 bits and calls anything else missing).
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            K::InvalidSignature => refused("the token is not signed with this site's identity secret"),
            // Three parts and a JSON header, yet invalid: the header's `crit` or `b64`.
            K::InvalidToken if token.split('.').count() == 3 => refused(
                "the token's header asks for an extension this service does not support (crit, b64: RFC 7515 §4.1.11)",
            ),
            K::Json(_) | K::Utf8(_) => {
                refused("the claims are malformed: they must be a JSON object giving each claim once, numbers in range")
            }
            _ => refused(malformed),
        })?
        .claims;
    let sub = match claims.get("sub") {
        None => return Err(refused("the token lacks the claim 'sub'")),
        Some(serde_json::Value::String(sub)) => sub,
        Some(_) => return Err(refused("the claim 'sub' must be a string: the user's id")),
    };
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let numeric_date = |name: &str| -> Result<Option<f64>, ApiError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                refused(&format!(
                    "the claim '{name}' must be a NumericDate: seconds since 1970 as a JSON number (RFC 7519 §2)"
                ))
            }),
        }
    };
    let exp = numeric_date("exp")?.ok_or_else(|| refused("the token lacks the claim 'exp'"))?;
    if exp + IDENTITY_LEEWAY_SECS <= now {
        return Err(refused("the token has expired"));
    }
    if numeric_date("nbf")?.is_some_and(|nbf| nbf - IDENTITY_LEEWAY_SECS > now) {
        return Err(refused("the token is not valid yet (nbf)"));
    }
    SubjectIdentifier::parse(&format!("user:{sub}")).map_err(|e| refused(&format!("sub: {e}")))
}

/// Records a visitor's choices. One event per changed purpose, in one transaction; a retry
/// with the same `Idempotency-Key` returns the first response. With `Sec-GPC: 1`, purposes
/// with `gpc_applies` are denied (source `gpc`) before the choices are applied (11 CCR §7025).
#[utoipa::path(
    tag = "public",
    security(("origin" = [])),
    params(
        ("site_key" = String, Path, description = "The site's public key"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters (a UUID, say); makes a retry return the first result without writing again"),
        ("Sec-GPC" = Option<String>, Header, description = "`1`: the Global Privacy Control signal"),
    ),
    request_body = RecordVisitorConsents,
    responses(
        (status = 201, description = "Recorded (committed). When the API is served on the page's site (`consent.example.com` for `www.example.com`), also `Set-Cookie: consentry_<8 characters of the site key>_id=<visitor id>` for their shared domain, 395 days, so that browsers capping script-set cookies keep the visitor", body = RecordResponse),
        (status = 400, description = "Invalid visitor id, purpose, revision, source or presentation", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The identity token is not valid or has expired", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin missing or not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown site key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/sites/{site_key}/consents")]
pub async fn record_visitor_consents(
    state: web::Data<AppState>,
    site: PublicSite,
    req: HttpRequest,
    // Taken as a Result so that a bad body is reported after the site and its origin are
    // known: the problem response then carries CORS headers and the page can read it.
    body: Result<JsonBody<RecordVisitorConsents>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(body, raw) = body?;
    let visitor = parse_visitor(&body.visitor_id, "visitor_id")?;
    // Verified now (a bad token is 401 before anything happens); linked once the choices are
    // known to be valid (see `service::consents::record_identified`).
    let user = body
        .identity_token
        .as_deref()
        .map(|token| verify_identity(&state.secrets, &site.entry.site, token))
        .transpose()?;
    let presented = site.entry.purposes.clone();
    if let Some(keys) = &presented {
        if let Some(other) = body.choices.keys().find(|k| !keys.contains(k)) {
            return Err(ApiError::invalid(
                format!("choices.{}", crate::domain::shown(other)),
                format!("'{}' is not one of this site's purposes", crate::domain::shown(other)),
            ));
        }
    }
    let region = parse_region(body.region.as_deref())?;
    let (presentation, presentation_stale) = match body.presentation.as_deref() {
        Some(token) => {
            let rules = AppState::rules(&site.config, presented.clone())?;
            let (shown, stale) = crate::service::presentation::accept(
                &state,
                &site.entry.site.id,
                &rules,
                region.as_ref(),
                token,
                Some(&body.policy_revision),
            )
            .await?;
            (Some(shown), stale)
        }
        None => (None, false),
    };
    let gpc = has_gpc(&req)? || body.gpc == Some(true);
    let idempotency = idempotency_claim(&req, format!("site:{}", site.entry.site.id), &raw)?;
    let site_id = site.entry.site.id.clone();
    let cookie = visitor_cookie(&state, &req, &site.entry.site.site_key, &body.visitor_id);
    let mut res = record_and_respond(
        &state,
        site.config.clone(),
        presented,
        true,
        visitor,
        RecordRequestOwned {
            choices: body.choices,
            policy_revision: Some(body.policy_revision),
            source: body.source.into(),
            region,
            occurred_at: None,
            site_id: Some(site_id),
            gpc,
            idempotency,
            presentation,
            presentation_stale,
        },
        user,
    )
    .await?;
    if let Some(cookie) = cookie {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(res)
}

/// How long the visitor cookie the API sets lives: 395 days, the SDK's cookie lifetime (13
/// months, CNIL Délibération n° 2020-091, §50).
pub const VISITOR_COOKIE_MAX_AGE: u32 = DEFAULT_COOKIE_MAX_AGE_DAYS * 86_400;

/// The name of the visitor cookie of `site_key`: the SDK's cookie name (`consentry_` and the
/// first 8 letters and digits of the key after its `pk_` prefix) and `_id`.
pub fn visitor_cookie_name(site_key: &str) -> String {
    let key = site_key.split_once('_').map_or(site_key, |(_, rest)| rest);
    let short: String = key.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    format!("consentry_{short}_id")
}

/// The domain the page (`page_host`) and the API (`api_host`) share, when they are on the same
/// site: the hosts themselves when equal (a host-only cookie: `Some("")`), else their longest
/// common parent of at least two labels (`www.example.com` and `consent.example.com`:
/// `example.com`). A public suffix such as `co.uk` may come out; browsers refuse a cookie for
/// it (RFC 6265 §5.3 step 5), so none is stored then. IP addresses share only themselves.
pub fn shared_domain(page_host: &str, api_host: &str) -> Option<String> {
    let (page, api) = (page_host.to_ascii_lowercase(), api_host.to_ascii_lowercase());
    if page == api {
        return Some(String::new());
    }
    if page.parse::<std::net::IpAddr>().is_ok() || api.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let common: Vec<&str> = page.rsplit('.').zip(api.rsplit('.')).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    (common.len() >= 2).then(|| common.into_iter().rev().collect::<Vec<_>>().join("."))
}

/// The `Set-Cookie` value that keeps the visitor's id in a cookie set by the API itself, when the
/// API is served on the page's site (`consent.example.com` for `www.example.com`): browsers that
/// cap cookies set from JavaScript (Safari: 7 days) keep a cookie set in an HTTP response by the
/// site's own server. The SDK reads it when its own cookie is gone. Not `HttpOnly` (the SDK reads
/// it), `SameSite=Lax`, `Secure` on https pages. The API's host is `public_url`'s, else the
/// request's `Host`.
fn visitor_cookie(state: &AppState, req: &HttpRequest, site_key: &str, visitor_id: &str) -> Option<HeaderValue> {
    let origin = url::Url::parse(req.headers().get(header::ORIGIN)?.to_str().ok()?).ok()?;
    let api_host = match &state.public_url {
        Some(u) => url::Url::parse(u).ok()?.host_str()?.to_owned(),
        None => {
            let host = req.connection_info().host().to_owned();
            url::Url::parse(&format!("http://{host}")).ok()?.host_str()?.to_owned()
        }
    };
    let domain = shared_domain(origin.host_str()?, &api_host)?;
    let id = crate::domain::identifiers::parse_hyphenated_uuid(visitor_id)?;
    let mut cookie =
        format!("{}={id}; Path=/; Max-Age={VISITOR_COOKIE_MAX_AGE}; SameSite=Lax", visitor_cookie_name(site_key));
    if !domain.is_empty() {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    if origin.scheme() == "https" {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).ok()
}

/// CORS preflight for the public endpoints: answered only for the site's origins.
/// (`Access-Control-Allow-Origin` itself is added by the CORS middleware in `startup`.)
pub async fn preflight(_site: PublicSite) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type, Idempotency-Key"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::{shared_domain, visitor_cookie_name};

    #[test]
    fn the_visitor_cookie_is_shared_only_on_the_same_site() {
        assert_eq!(shared_domain("www.example.com", "consent.example.com").as_deref(), Some("example.com"));
        assert_eq!(shared_domain("shop.example.co.uk", "api.example.co.uk").as_deref(), Some("example.co.uk"));
        assert_eq!(shared_domain("127.0.0.1", "127.0.0.1").as_deref(), Some(""), "the same host: host-only");
        assert_eq!(shared_domain("www.example.com", "consent.other.com"), None);
        assert_eq!(shared_domain("127.0.0.1", "127.0.0.2"), None);
        assert_eq!(shared_domain("example.com", "example.org"), None);
        assert_eq!(visitor_cookie_name("pk_9vbSSQgVL6BOYBt26mJVkBT8"), "consentry_9vbSSQgV_id");
    }
}
