//! Request extractors that turn bad input into precise problem bodies.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

/// The largest beacon body accepted (`JsonBody<T, true>`), in bytes.
pub const BEACON_MAX_BYTES: usize = 16 * 1024;

/// A JSON body, deserialised with the path of the offending field in every error
/// (`choices.analytics: invalid type: a string, expected a boolean`; quoted values are left out).
///
/// Errors: 415 when `Content-Type` is not JSON, 413 above the configured size, 400 for
/// malformed JSON or a wrong shape.
///
/// `JsonBody<T, true>` is a beacon's body (`navigator.sendBeacon`): `text/plain` is taken as
/// JSON too, and the limit is [`BEACON_MAX_BYTES`].
pub struct JsonBody<T, const TEXT: bool = false>(pub T, pub web::Bytes);

impl<T: DeserializeOwned + 'static, const TEXT: bool> FromRequest for JsonBody<T, TEXT> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(1 << 20, |s| s.max_body_bytes);
        let limit = if TEXT { limit.min(BEACON_MAX_BYTES) } else { limit };
        let content_type = match single_header(req, "Content-Type") {
            Ok(v) => v.and_then(|v| v.to_str().ok()).map(str::to_owned),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let encoding = req.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").to_owned());
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let mut params = content_type.as_deref().unwrap_or("").split(';');
            let essence = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let charset_ok = params.all(|p| match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                    v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                }
                _ => true,
            });
            // `TEXT`: text/plain too, which is what `navigator.sendBeacon` sends for a string body
            // (a JSON content type would need a CORS preflight, which beacons cannot make)
            let is_json =
                essence == "application/json" || essence.ends_with("+json") || (TEXT && essence == "text/plain");
            if !is_json || !charset_ok {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type must be application/json{} (UTF-8, RFC 8259 §8.1), not {}",
                    if TEXT { " or text/plain" } else { "" },
                    content_type.as_deref().unwrap_or("absent")
                )));
            }
            if let Some(enc) = encoding.filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Encoding '{enc}' is not accepted; send the body unencoded"
                )));
            }
            let too_large = || ApiError::PayloadTooLarge(format!("the body exceeds the limit of {limit} bytes"));
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let read = async {
                let mut body = web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk =
                        chunk.map_err(|e| ApiError::MalformedBody(format!("the body could not be read: {e}")))?;
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body.freeze())
            };
            let body = actix_web::rt::time::timeout(BODY_TIMEOUT, read).await.map_err(|_| {
                ApiError::RequestTimeout(format!("the body did not arrive within {} seconds", BODY_TIMEOUT.as_secs()))
            })??;
            // A byte order mark before the JSON text (some Windows tools write one) is ignored,
            // as RFC 8259 §8.1 allows; the idempotency hash still covers the body as sent.
            let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
            // Every request body is a JSON object; serde would also take a struct as an array.
            let first = json.iter().find(|b| !b.is_ascii_whitespace());
            if first.is_some_and(|b| matches!(b, b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')) {
                return Err(ApiError::MalformedBody("body: must be a JSON object ({ … })".into()));
            }
            if has_nul_escape(json) {
                return Err(ApiError::MalformedBody(format!("body: {}", crate::error::NUL_MESSAGE)));
            }
            let de = &mut serde_json::Deserializer::from_slice(json);
            match serde_path_to_error::deserialize::<_, T>(&mut *de) {
                Ok(value) => match de.end() {
                    Ok(()) => Ok(JsonBody(value, body)),
                    Err(e) => Err(ApiError::MalformedBody(format!(
                        "body: {e}: nothing may follow the JSON object (RFC 8259 §2)"
                    ))),
                },
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    let syntax = matches!(
                        inner.classify(),
                        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                    );
                    let message = without_values(&inner.to_string());
                    if syntax {
                        return Err(ApiError::MalformedBody(format!("body: {message}")));
                    }
                    // The position matters for syntax errors only; a field error names its field.
                    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
                    if let Some(name) = named_field(&message) {
                        // "missing field `x`" is reported at the enclosing object: name x itself.
                        let field =
                            if path.is_empty() || path == "." { name.to_owned() } else { format!("{path}.{name}") };
                        Err(ApiError::invalid(field, message))
                    } else if path.is_empty() || path == "." {
                        Err(ApiError::MalformedBody(format!("body: {message}")))
                    } else {
                        Err(ApiError::invalid(path, message))
                    }
                }
            }
        })
    }
}

/// Whether a JSON text holds the escape `\u0000` (a NUL in a string), which PostgreSQL text
/// cannot store: refused on both databases alike. `\\u0000` (a backslash, then `u0000`) is
/// not one.
fn has_nul_escape(body: &[u8]) -> bool {
    body.windows(6)
        .enumerate()
        .any(|(i, w)| w == br"\u0000" && body[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0)
}

/// A serde message without the string values it quotes (`invalid type: string "email:ada@…",
/// expected a sequence` becomes `invalid type: a string, expected a sequence`): a value in the
/// wrong place may be an email address or a phone number, and problem bodies never repeat one.
fn without_values(message: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r#"string "(?:[^"\\]|\\.)*""#).expect("a valid pattern"));
    re.replace_all(message, "a string").into_owned()
}

/// How long a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The field a serde message names: `missing field `x``, `duplicate field `x``.
pub fn named_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("duplicate field `"))?;
    rest.split('`').next().filter(|f| !f.is_empty())
}

/// A serde message about a whole field, as the field and what is wrong with it: `missing field
/// `x`` is (`x`, `is required`), `duplicate field `x`` (`x`, `is given more than once`).
pub fn field_problem(message: &str) -> Option<(&str, &'static str)> {
    let name = named_field(message)?;
    Some((name, if message.starts_with("missing") { "is required" } else { "is given more than once" }))
}

/// The one field line of the header `name`, if the request has one. `name` is spelled as the
/// documentation spells it (`Idempotency-Key`, `Sec-GPC`; header names match in any case), and
/// the problem names it so. A singleton field given twice (RFC 9110 §5.3) is refused (400 naming
/// the header): which one counts would be a guess, and a proxy that joins repeated lines with a
/// comma would send yet another value.
pub fn single_header<'r>(
    req: &'r HttpRequest,
    name: &'static str,
) -> Result<Option<&'r header::HeaderValue>, ApiError> {
    let mut lines = req.headers().get_all(name);
    let first = lines.next();
    if lines.next().is_some() {
        return Err(ApiError::invalid(name, "is given more than once"));
    }
    Ok(first)
}

/// The optional `Idempotency-Key` header: 1–255 visible ASCII characters, given once.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = single_header(req, "Idempotency-Key")? else {
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
/// Given twice it is refused (400), as every singleton header here ([`single_header`]), and so
/// is one line holding a list (`1, 1`: two lines a proxy joined, RFC 9110 §5.3): guessing could
/// drop the person's opt-out.
pub fn has_gpc(req: &HttpRequest) -> Result<bool, ApiError> {
    let Some(value) = single_header(req, "Sec-GPC")? else { return Ok(false) };
    if value.as_bytes().contains(&b',') {
        return Err(ApiError::invalid("Sec-GPC", "is given more than once"));
    }
    Ok(value.as_bytes() == b"1")
}

/// Deserialises a JSON object into a map, refusing a key given twice (serde's maps keep the
/// last value silently, which would hide a contradictory submission).
pub fn unique_keys<'de, D, V>(d: D) -> Result<std::collections::BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    struct Keys<V>(std::marker::PhantomData<V>);
    impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Keys<V> {
        type Value = std::collections::BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = std::collections::BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("'{}' is given twice", crate::domain::shown(&key))));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Keys(std::marker::PhantomData))
}

/// [`unique_keys`] for an optional object.
pub fn unique_keys_opt<'de, D, V>(d: D) -> Result<Option<std::collections::BTreeMap<String, V>>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(bound = "V: serde::Deserialize<'de>")]
    struct Wrap<V>(#[serde(deserialize_with = "unique_keys")] std::collections::BTreeMap<String, V>);
    <Option<Wrap<V>> as serde::Deserialize>::deserialize(d).map(|w| w.map(|w| w.0))
}

/// An optional JSON body: `None` when the request has no `Content-Type` and no body (absent or
/// zero `Content-Length`), else a [`JsonBody`] with its errors.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let no_type = req.headers().get(header::CONTENT_TYPE).is_none();
        let no_length =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == "0");
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        if no_type && no_length && !chunked {
            return Box::pin(std::future::ready(Ok(Self(None))));
        }
        let body = JsonBody::<T>::from_request(req, payload);
        Box::pin(async move { Ok(Self(Some(body.await?.0))) })
    }
}

/// A query string, deserialised like `web::Query` but with every error a 400 problem naming the
/// parameter at fault and what it takes (`limit: expected a whole number from 1 to 1000`),
/// never serde's bare text (`invalid digit found in string`). What a number takes comes from
/// the parameter's documented schema (`T`'s [`IntoParams`]: `minimum`, `maximum`), so the
/// message and the OpenAPI document agree. Handlers still check what a type cannot say (a
/// limit out of range), with the same wording ([`expected_whole_number`]).
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + IntoParams> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

/// Parses a query string (without its `?`) as [`Query`] does.
pub fn parse_query<T: DeserializeOwned + IntoParams>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if let Some((name, what)) = field_problem(&message) {
            return ApiError::invalid(name, what);
        }
        if path.is_empty() || path == "." {
            return ApiError::invalid("query", without_values(&message));
        }
        let params = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query));
        let schema = params.iter().find(|p| p.name == path).and_then(|p| match &p.schema {
            Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(o))) => Some(o),
            _ => None,
        });
        ApiError::invalid(path, expected(&message, schema))
    })
}

/// What a query parameter takes, from serde's message about the value given and the
/// parameter's schema (its bounds).
fn expected(message: &str, schema: Option<&utoipa::openapi::schema::Object>) -> String {
    use utoipa::openapi::schema::{SchemaType, Type};
    let integer = schema.is_some_and(|o| match &o.schema_type {
        SchemaType::Type(t) => *t == Type::Integer,
        SchemaType::Array(ts) => ts.contains(&Type::Integer),
        SchemaType::AnyValue => false,
    });
    // The messages of `str::parse` for the integer, boolean and float types.
    let not_integer = message.contains("invalid digit")
        || message.contains("cannot parse integer")
        || message.contains("number too large")
        || message.contains("number too small");
    if integer || not_integer {
        let bound = |n: Option<&utoipa::Number>| match n {
            Some(utoipa::Number::Int(n)) => i64::try_from(*n).ok(),
            Some(utoipa::Number::UInt(n)) => i64::try_from(*n).ok(),
            Some(utoipa::Number::Float(_)) | None => None,
        };
        let (min, max) = schema.map_or((None, None), |o| (bound(o.minimum.as_ref()), bound(o.maximum.as_ref())));
        return expected_whole_number(min, max);
    }
    if message.contains("provided string was not `true` or `false`") {
        return "expected true or false".into();
    }
    if message.contains("invalid float literal") {
        return "expected a number".into();
    }
    // `unknown variant `x`, expected one of `a`, `b``: the choices, not the value given.
    if let Some((_, choices)) = message.split_once(", expected ") {
        return format!("expected {choices}");
    }
    without_values(message)
}

/// `expected a whole number from 1 to 1000` (or `of at least 1`, `of at most 9`): what an
/// integer parameter takes, for its parsing ([`Query`]) and its range check alike.
pub fn expected_whole_number(min: Option<i64>, max: Option<i64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("expected a whole number from {min} to {max}"),
        (Some(min), None) => format!("expected a whole number of at least {min}"),
        (None, Some(max)) => format!("expected a whole number of at most {max}"),
        (None, None) => "expected a whole number".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    struct Params {
        /// 1 to 1000.
        #[param(minimum = 1, maximum = 1000)]
        limit: Option<i64>,
        keep: Option<bool>,
        status: Option<Status>,
        name: Option<String>,
    }

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    enum Status {
        Open,
        Closed,
    }

    fn detail(query: &str) -> String {
        parse_query::<Params>(query).unwrap_err().to_string()
    }

    #[test]
    fn query_errors_name_the_parameter_and_what_it_takes() {
        assert_eq!(detail("limit=abc"), "limit: expected a whole number from 1 to 1000");
        assert_eq!(detail("limit="), "limit: expected a whole number from 1 to 1000");
        assert_eq!(detail("limit=99999999999999999999"), "limit: expected a whole number from 1 to 1000");
        assert_eq!(detail("keep=yes"), "keep: expected true or false");
        assert_eq!(detail("status=ajar"), "status: expected `open` or `closed`");
        assert_eq!(detail("limit=5&limit=6"), "limit: is given more than once");
        let ok = parse_query::<Params>("limit=5&keep=false&status=open&name=x&other=1").unwrap();
        assert_eq!((ok.limit, ok.keep, ok.name.as_deref()), (Some(5), Some(false), Some("x")));
    }

    #[test]
    fn serde_messages_lose_the_values_they_quote() {
        assert_eq!(
            without_values(r#"invalid type: string "email:ada@example.com", expected a sequence"#),
            "invalid type: a string, expected a sequence"
        );
        assert_eq!(
            without_values(r#"invalid value: string "+1 \"415\" 555", expected x"#),
            "invalid value: a string, expected x"
        );
        assert_eq!(
            without_values("invalid type: integer `7`, expected a string"),
            "invalid type: integer `7`, expected a string"
        );
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(br#"{"name":"a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"name":"\\\u0000"}"#), "an escaped backslash, then a NUL");
        assert!(!has_nul_escape(br#"{"name":"\\u0000"}"#), "a backslash, then the text u0000");
        assert!(!has_nul_escape(br#"{"name":"a\u0001b"}"#));
    }
}
