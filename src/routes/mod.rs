//! HTTP routes, one file per resource. Handlers parse input into domain types, call the
//! ledger or the models, and render responses; they hold no rules of their own.

pub mod analytics;
pub mod audit;
pub mod consents;
pub mod console;
pub mod events;
pub mod health;
pub mod imports;
pub mod links;
pub mod opt_outs;
pub mod policies;
pub mod public;
pub mod purposes;
pub mod receipts;
pub mod sdk;
pub mod sites;
pub mod subjects;
pub mod suppressions;
pub mod tokens;
pub mod unsubscribe;
pub mod webhooks;

use crate::error::{ApiError, Problem};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    // actix tries routes in this order, each a regular expression: the hot paths first (the SDK's
    // public calls, then checks), so a page view or a send matches after a few tries.
    public::configure(cfg);
    consents::configure(cfg);
    health::configure(cfg);
    sites::configure(cfg);
    purposes::configure(cfg);
    policies::configure(cfg);
    events::configure(cfg);
    links::configure(cfg);
    opt_outs::configure(cfg);
    audit::configure(cfg);
    sdk::configure(cfg);
    unsubscribe::configure(cfg);
    suppressions::configure(cfg);
    webhooks::configure(cfg);
    receipts::configure(cfg);
    subjects::configure(cfg);
    imports::configure(cfg);
    analytics::configure(cfg);
    tokens::configure(cfg);
    console::configure(cfg);
}

/// The parts of the OpenAPI document that are not collected from handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Consentry API",
        description = "Consent and cookie preference-centre backend: per-purpose consent tied to policy revisions.\n\n\
            Management endpoints take `Authorization: Bearer <JWT>` (scopes `admin`, `consents:read`, \
            `consents:write`, `consents:check`). Public endpoints under `/v1/sites/{site_key}` are for browsers: \
            the `Origin` header must be one of the site's origins. Every error is an RFC 9457 \
            `application/problem+json` body.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(
        Problem,
        crate::domain::PurposeKey,
        crate::domain::PolicyKey,
        crate::domain::RegionCode,
        crate::domain::RevisionDate,
        crate::domain::SubjectIdentifier,
        suppressions::SuppressionFormat,
        analytics::ReportFormat,
        crate::domain::analytics::Interval,
        crate::ledger::outbox::WebhookPayload,
        crate::ledger::outbox::ConsentChange,
        crate::service::audit::SiteViolation
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "sites", description = "Websites of a tenant and their allowed origins"),
        (name = "purposes", description = "Purposes and cookie categories with their consent models"),
        (name = "policies", description = "Policy documents and their revisions"),
        (name = "consents", description = "Recording, reading and checking consent (server-to-server)"),
        (name = "opt-outs", description = "CCPA requests to opt out of sale/sharing, with their deadlines"),
        (name = "public", description = "Browser endpoints of a site, called by the SDK"),
        (name = "audit", description = "The tracker audit: what sampled page views saw, and what they saw without consent"),
        (name = "unsubscribe", description = "One-click unsubscribe links (RFC 8058)"),
        (name = "subjects", description = "The data subject's rights: export (GDPR Art. 15, 20; CCPA right to know), erasure (GDPR Art. 17), proof"),
        (name = "receipts", description = "Signed consent receipts: the public keys and a check anyone may ask for"),
        (name = "analytics", description = "Consent and opt-out figures over time, from incrementally kept rollups"),
        (name = "tokens", description = "Management tokens: issue, list, revoke; the console's sign-in"),
        (name = "webhooks", description = "Signed deliveries of consent changes and opt-out requests, with retries"),
        (name = "console", description = "The privacy team's console, a web UI that calls this API"),
        (name = "sdk", description = "The browser SDK and its demo page"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "origin",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Origin",
                "One of the site's origins; the site key is in the path.",
            ))),
        );
    }
}

/// The OpenAPI document of everything [`configure`] registers (what `consentry openapi` prints
/// and `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app_for_doc()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts();
    read_routing(&mut doc);
    add_common_problems(&mut doc);
    optional_bodies(&mut doc);
    doc
}

/// The reads a read replica may serve (see [`crate::service::read_route`]): (path, method).
/// The SDK's visitor read is served by the primary ([`crate::service::read_route::on_primary`]).
pub const ROUTED_READS: [(&str, &str); 6] = [
    ("/v1/consents/check", "POST"),
    ("/v1/subjects/{subject}/consents", "GET"),
    ("/v1/subjects/{subject}/events", "GET"),
    ("/v1/subjects/{subject}/export", "GET"),
    ("/v1/events", "GET"),
    ("/v1/purposes/{key}/suppressions", "GET"),
];

/// Whether a request to `path` with `method` is one of the [`ROUTED_READS`].
pub fn is_routed_read(method: &str, path: &str) -> bool {
    static READS: std::sync::LazyLock<Vec<(actix_web::dev::ResourceDef, &str)>> = std::sync::LazyLock::new(|| {
        ROUTED_READS.iter().map(|(path, method)| (actix_web::dev::ResourceDef::new(*path), *method)).collect()
    });
    READS.iter().any(|(def, m)| *m == method && def.is_match(path))
}

/// Documents read routing (issue 10): the routed reads take `Consentry-Read-After` and answer
/// `Consentry-Served-By`; the successful answers of writes carry `Consentry-Read-After` when a
/// read replica is configured.
fn read_routing(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let token = |pattern: &str| ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).build();
    let served_by = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["replica", "primary"])).build()))
        .description(Some(
            "Which database served the read: the read replica (`DATABASE_REPLICA_URL`), or the primary (no replica, \
             or it is down, lags more than `replica.max_lag`, or has not replayed `Consentry-Read-After` yet)",
        ))
        .build();
    let read_after = HeaderBuilder::new()
        .schema(Some(token("^[0-9a-f]{16}$")))
        .description(Some(
            "Only when a read replica is configured: an opaque token (the primary's WAL position once this write \
             committed). Send it back as `Consentry-Read-After` on a follow-up read to see this write there",
        ))
        .build();
    let parameter = ParameterBuilder::new()
        .name(crate::startup::READ_AFTER)
        .parameter_in(ParameterIn::Header)
        .required(utoipa::openapi::Required::False)
        .schema(Some(token("^[0-9a-fA-F]{1,16}$")))
        .description(Some(
            "The `Consentry-Read-After` of a write's answer: the read is served by the read replica only once it has \
             replayed that write (else by the primary), so it sees the write",
        ))
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations_mut(item) {
            let routed = ROUTED_READS.contains(&(path.as_str(), method));
            if routed {
                op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(parameter.clone()));
            }
            let writes = !routed && method != "GET" && method != "HEAD";
            for (code, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else { continue };
                if !code.starts_with('2') {
                    continue;
                }
                if routed {
                    response.headers.insert(crate::startup::SERVED_BY.into(), RefOr::T(served_by.clone()));
                } else if writes {
                    response.headers.insert(crate::startup::READ_AFTER.into(), RefOr::T(read_after.clone()));
                }
            }
        }
    }
}

/// Operations whose JSON body may be left out (utoipa marks a body required unless its type is
/// an `Option`, which would also make `null` a valid body).
const OPTIONAL_BODIES: [(&str, &str); 1] = [("/v1/opt-outs/{id}/complete", "POST")];

fn optional_bodies(doc: &mut utoipa::openapi::OpenApi) {
    for (path, method) in OPTIONAL_BODIES {
        let Some(item) = doc.paths.paths.get_mut(path) else { continue };
        for (m, op) in operations_mut(item) {
            if m == method {
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    body.required = Some(utoipa::openapi::Required::False);
                }
            }
        }
    }
}

/// Each operation with its method, in a fixed order.
pub fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
        ("HEAD", &mut item.head),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

/// Documents the problem responses every operation can give, in one place: 400 for malformed
/// parameters, 413/415 for bodies, 401/403 for tokens, 403/404 for public site requests,
/// 404 for a path that names nothing, 429 for rate limits, 503 when the database does not
/// answer.
fn add_common_problems(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        for (_, op) in operations_mut(item) {
            let params = op.parameters.as_deref().unwrap_or_default();
            let has_path = params.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
            let has_params = !params.is_empty();
            let has_body = op.request_body.is_some();
            let bearer =
                op.security.as_ref().is_some_and(|s| serde_json::to_string(s).is_ok_and(|j| j.contains("bearer")));
            let public = path.starts_with("/v1/sites/{site_key}");
            let mut add = |code: &str, description: &str| {
                op.responses.responses.entry(code.to_owned()).or_insert_with(|| problem(description));
            };
            if has_params || has_body {
                add("400", "A parameter or the body is malformed; `detail` and `errors` name the field");
            }
            if has_body {
                add("413", "The body is larger than the configured limit");
                add("415", "The body is not `application/json`");
            }
            if bearer {
                add("401", "No valid token: missing, malformed, expired, revoked or foreign");
                add("403", "The token lacks the scope this operation needs");
            }
            if public {
                add("403", "The `Origin` is not one of the site's origins");
                add("404", "No site has this key");
            }
            if has_path {
                add("404", "The path names nothing");
            }
            if public || bearer {
                add("429", "A rate limit was reached (per site and client address, or per token); retry after `Retry-After` seconds (`RateLimit`, `RateLimit-Policy`)");
            }
            if path.starts_with("/v1/") || path == "/readyz" {
                add("503", "The database does not answer; retry after `Retry-After` seconds");
            }
        }
    }
}

trait ForDoc<T> {
    fn into_utoipa_app_for_doc(self) -> utoipa_actix_web::UtoipaApp<T>;
}

impl<T> ForDoc<T> for actix_web::App<T> {
    fn into_utoipa_app_for_doc(self) -> utoipa_actix_web::UtoipaApp<T> {
        utoipa_actix_web::AppExt::into_utoipa_app(self)
    }
}

pub use crate::service::now;

/// Parses an optional `region` query or body value (absent: no region; empty: an error).
pub fn parse_region(raw: Option<&str>) -> Result<Option<crate::domain::RegionCode>, ApiError> {
    raw.map(|r| crate::domain::RegionCode::parse(r).map_err(|m| ApiError::invalid("region", m))).transpose()
}
