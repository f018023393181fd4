//! The browser SDK (`/sdk/consentry.js`, `.mjs`, `.core.mjs`, `.core-gcm.mjs`, `.audit.mjs`) and the demo page (`/demo`),
//! embedded in the binary from `sdk-js/dist` and `sdk-js/demo` (built and committed there).

use crate::db::models::site::Site;
use crate::db::models::tenant::Tenant;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_sdk_file).service(get_demo);
}

/// The example tenant and site that `/demo` is wired to (see `examples/`).
pub const DEMO_TENANT: &str = "ntt-cloud-communications";
pub const DEMO_SITE: &str = "www.example.com";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 5] = [
    Asset {
        name: "consentry.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../sdk-js/dist/consentry.js"),
    },
    Asset {
        name: "consentry.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../sdk-js/dist/consentry.mjs"),
    },
    Asset {
        name: "consentry.core.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../sdk-js/dist/consentry.core.mjs"),
    },
    Asset {
        name: "consentry.core-gcm.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../sdk-js/dist/consentry.core-gcm.mjs"),
    },
    Asset {
        name: "consentry.audit.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../sdk-js/dist/consentry.audit.mjs"),
    },
];

const DEMO_PAGE: &str = include_str!("../../sdk-js/demo/index.html");

/// Strong ETags of the assets, computed once.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| etags(&ASSETS.iter().map(|a| a.body).collect::<Vec<_>>()))[i]
}

/// The SDK build: `consentry.js` (IIFE with UI, `window.Consentry`), `consentry.mjs` (ES module
/// with UI), `consentry.core.mjs` (headless), `consentry.core-gcm.mjs` (headless with Google
/// Consent Mode), `consentry.audit.mjs` (the tracker audit, imported by the others on sampled
/// page views). Cached for an hour, then revalidated by ETag;
/// served to any origin (it is a public script).
#[utoipa::path(
    tag = "sdk",
    params(("file" = String, Path, description = "`consentry.js`, `consentry.mjs`, `consentry.core.mjs`, `consentry.core-gcm.mjs` or `consentry.audit.mjs`")),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such file", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sdk/{file}")]
pub async fn get_sdk_file(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(i) = ASSETS.iter().position(|a| a.name == file.as_str()) else {
        return Err(ApiError::NotFound(format!(
            "no SDK file '{}'; use consentry.js, consentry.mjs, consentry.core.mjs, consentry.core-gcm.mjs or consentry.audit.mjs",
            crate::domain::shown(&file)
        )));
    };
    let mut res = cached_asset(&req, etag(i), ASSETS[i].content_type, ASSETS[i].body);
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header::HeaderValue::from_static("*"));
    Ok(res)
}

/// The answer to a GET of a file embedded in the binary: `304 Not Modified` when
/// `If-None-Match` names `tag`, else the body with its `ETag`; cached for an hour, then
/// revalidated; `nosniff`.
pub fn cached_asset(
    req: &HttpRequest,
    tag: &'static str,
    content_type: &'static str,
    body: &'static [u8],
) -> HttpResponse {
    let cache = (header::CACHE_CONTROL, "public, max-age=3600, must-revalidate");
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        return HttpResponse::NotModified().insert_header((header::ETAG, tag)).insert_header(cache).finish();
    }
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::ETAG, tag))
        .insert_header(cache)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// Strong ETags of embedded files: the first 128 bits of each one's SHA-256, quoted.
pub fn etags(bodies: &[&[u8]]) -> Vec<String> {
    bodies.iter().map(|b| format!("\"{}\"", &hex::encode(Sha256::digest(b))[..32])).collect()
}

/// A demo shop page wired to the example tenant's site: open it, click the banner, and see
/// the consent recorded. Needs the example tenant (`consentry serve --demo` creates it).
#[utoipa::path(
    tag = "sdk",
    responses(
        (status = 200, description = "The demo page", content_type = "text/html"),
        (status = 404, description = "The example tenant is not set up", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/demo")]
pub async fn get_demo(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let site_key = state
        .db(|conn| {
            let Some(tenant) = Tenant::find_by_slug(conn, DEMO_TENANT)? else { return Ok(None) };
            Ok(Site::list(conn, &tenant.id)?.into_iter().find(|s| s.name == DEMO_SITE).map(|s| s.site_key))
        })
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "the demo needs the example tenant '{DEMO_TENANT}': start with `consentry serve --demo`, or run `consentry apply examples/ntt-cloud-communications/consentry.toml`"
            ))
        })?;
    let info = req.connection_info();
    let endpoint = format!("{}://{}", info.scheme(), info.host());
    let page =
        DEMO_PAGE.replace("{{SITE_KEY}}", &html_escape(&site_key)).replace("{{ENDPOINT}}", &html_escape(&endpoint));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}
