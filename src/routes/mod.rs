//! HTTP routes, one file per resource. Handlers parse input into domain types, call the
//! ledger or the models, and render responses; they hold no rules of their own.

pub mod consents;
pub mod health;
pub mod policies;
pub mod public;
pub mod purposes;
pub mod sdk;
pub mod sites;

use crate::error::{ApiError, Problem};
use chrono::{DateTime, Utc};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    health::configure(cfg);
    sites::configure(cfg);
    purposes::configure(cfg);
    policies::configure(cfg);
    consents::configure(cfg);
    public::configure(cfg);
    sdk::configure(cfg);
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
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "sites", description = "Websites of a tenant and their allowed origins"),
        (name = "purposes", description = "Purposes and cookie categories with their consent models"),
        (name = "policies", description = "Policy documents and their revisions"),
        (name = "consents", description = "Recording, reading and checking consent (server-to-server)"),
        (name = "public", description = "Browser endpoints of a site, called by the SDK"),
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
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
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

/// The OpenAPI document of everything [`configure`] registers (what `consentry openapi` prints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = actix_web::App::new()
        .into_utoipa_app_for_doc()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts();
    doc
}

trait ForDoc<T> {
    fn into_utoipa_app_for_doc(self) -> utoipa_actix_web::UtoipaApp<T>;
}

impl<T> ForDoc<T> for actix_web::App<T> {
    fn into_utoipa_app_for_doc(self) -> utoipa_actix_web::UtoipaApp<T> {
        utoipa_actix_web::AppExt::into_utoipa_app(self)
    }
}

/// The request's clock reading; every rule in one request sees the same instant.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Parses an optional `region` query or body value.
pub fn parse_region(raw: Option<&str>) -> Result<Option<crate::domain::RegionCode>, ApiError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => crate::domain::RegionCode::parse(r)
            .map(Some)
            .map_err(|m| ApiError::invalid("region", m)),
    }
}
