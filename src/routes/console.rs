//! The privacy team's console (`/console`): a single-page app built from `console/` (TypeScript,
//! Preact, uPlot; `npm run build` there) into `console/dist`, committed and embedded here. It is
//! an API client: every call it makes is a documented operation, with the admin token the user
//! signs in with (kept in `sessionStorage`). Served under a strict Content-Security-Policy: its
//! own script and stylesheet only, calls to this origin only, no inline code, no framing.

use crate::error::ApiError;
use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use std::sync::OnceLock;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_console).service(get_console_asset);
}

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 2] = [
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/dist/assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/dist/assets/console.css"),
    },
];

const INDEX: &[u8] = include_bytes!("../../console/dist/index.html");

fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| super::sdk::etags(&ASSETS.iter().map(|a| a.body).collect::<Vec<_>>()))[i]
}

const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The console's page (sign in with an admin token; `#code=<code>` signs in once with a code
/// from `serve --demo`, exchanged by `POST /v1/console/sign-in`).
#[utoipa::path(
    tag = "console",
    responses((status = 200, description = "The console's page", content_type = "text/html"))
)]
#[get("/console")]
pub async fn get_console() -> HttpResponse {
    let mut res = HttpResponse::Ok();
    for header in SECURITY_HEADERS {
        res.insert_header(header);
    }
    res.content_type("text/html; charset=utf-8").insert_header((header::CACHE_CONTROL, "no-cache")).body(INDEX)
}

/// The console's script and stylesheet. Cached for an hour, then revalidated by ETag.
#[utoipa::path(
    tag = "console",
    params(("file" = String, Path, description = "`console.js` or `console.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css")
        )),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such file", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/console/assets/{file}")]
pub async fn get_console_asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(i) = ASSETS.iter().position(|a| a.name == file.as_str()) else {
        return Err(ApiError::NotFound(format!(
            "no console file '{}'; use console.js or console.css",
            crate::domain::shown(&file)
        )));
    };
    let mut res = super::sdk::cached_asset(&req, etag(i), ASSETS[i].content_type, ASSETS[i].body);
    for (name, value) in SECURITY_HEADERS {
        res.headers_mut().insert(name, header::HeaderValue::from_static(value));
    }
    Ok(res)
}
