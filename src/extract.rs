//! Request extractors that turn bad input into precise problem bodies.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// A JSON body, deserialised with the path of the offending field in every error
/// (`choices.analytics: invalid type: string "yes", expected a boolean`).
///
/// Errors: 415 when `Content-Type` is not JSON, 413 above the configured size, 400 for
/// malformed JSON or a wrong shape.
pub struct JsonBody<T>(pub T, pub web::Bytes);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(1 << 20, |s| s.max_body_bytes);
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let essence =
                content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            let is_json = essence.as_deref().is_some_and(|e| e == "application/json" || e.ends_with("+json"));
            if !is_json {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type must be application/json, not {}",
                    content_type.as_deref().unwrap_or("absent")
                )));
            }
            let too_large = || ApiError::PayloadTooLarge(format!("the body exceeds the limit of {limit} bytes"));
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::MalformedBody(format!("the body could not be read: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            let body = body.freeze();
            let de = &mut serde_json::Deserializer::from_slice(&body);
            match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(value) => Ok(JsonBody(value, body)),
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    let syntax = matches!(
                        inner.classify(),
                        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                    );
                    if syntax || path.is_empty() || path == "." {
                        Err(ApiError::MalformedBody(format!("body: {inner}")))
                    } else {
                        Err(ApiError::invalid(path, inner.to_string()))
                    }
                }
            }
        })
    }
}

/// The optional `Idempotency-Key` header: 1–255 visible ASCII characters.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?.trim();
    // A structured-field string may be quoted (draft-ietf-httpapi-idempotency-key-header §2.1).
    let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters, e.g. a UUID"));
    }
    Ok(Some(key.to_owned()))
}

/// Whether the request carries the Global Privacy Control signal: `Sec-GPC: 1`, exactly
/// (GPC specification §3.1: any other value is to be ignored).
pub fn has_gpc(req: &HttpRequest) -> bool {
    req.headers().get("Sec-GPC").is_some_and(|v| v.as_bytes() == b"1")
}
