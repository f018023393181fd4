//! Request ids and the access log.
//!
//! Every request gets an id: its `X-Request-Id` when that is a plain token (letters, digits,
//! `-`, `_`, `.`, `:`, at most 128), else a new UUID. The id is returned in `X-Request-Id`, put
//! in problem bodies and on every log line written while the request runs. The access log names
//! the route pattern (`/v1/subjects/{subject}/events`), never the path or the query: paths carry
//! identifiers (an email) and capabilities (an unsubscribe token).

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request id to use: the client's when it is a plain token, else a new one.
fn choose_id(given: Option<&HeaderValue>) -> String {
    let plain = |v: &&str| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    given.and_then(|v| v.to_str().ok()).filter(plain).map_or_else(new_request_id, str::to_owned)
}

/// A new request id: a random (version 4) UUID. From the thread's generator (uuid's `fast-rng`),
/// as every id here: asking the kernel (`getrandom`) each time was 2% of a check's CPU on the
/// HTTP threads, and five system calls a public write on the writer thread.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One request's id, span and start time. For `App::wrap_fn`, outermost:
/// `let t = Traced::begin(&req); let fut = t.enter(|| srv.call(req)); t.finish(fut)`.
pub struct Traced {
    id: String,
    method: actix_web::http::Method,
    start: Instant,
    span: tracing::Span,
}

impl Traced {
    pub fn begin(req: &ServiceRequest) -> Self {
        let id = choose_id(req.headers().get(&REQUEST_ID_HEADER));
        let span = tracing::info_span!("request", request_id = %id);
        Self { id, method: req.method().clone(), start: Instant::now(), span }
    }

    /// Runs `f` (the call into the inner service) inside the request's scope and span.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        REQUEST_ID.sync_scope(self.id.clone(), || self.span.in_scope(f))
    }

    /// Serves `served` inside the request's scope and span, then writes the access log line and
    /// returns the id in `X-Request-Id`.
    pub async fn finish<B: MessageBody>(
        self,
        served: impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    ) -> Result<ServiceResponse<B>, actix_web::Error> {
        let Self { id, method, start, span } = self;
        let mut res = REQUEST_ID.scope(id.clone(), served).instrument(span.clone()).await?;
        // The route pattern from a tree of segments (crate::metrics::route_pattern), not actix's
        // `match_pattern`, which matches the path against every route's regular expression again
        // (6% of the HTTP threads on public writes).
        let route = crate::metrics::route_pattern(res.request().path());
        crate::metrics::observe_request(&method, route, res.status().as_u16(), start.elapsed());
        if tracing::enabled!(target: "consentry::access", tracing::Level::INFO) {
            let bytes = match res.response().body().size() {
                BodySize::Sized(n) => Some(n),
                _ => None,
            };
            span.in_scope(|| {
                tracing::info!(
                    target: "consentry::access",
                    method = %method,
                    route = route.unwrap_or("(no route)"),
                    status = res.status().as_u16(),
                    bytes,
                    duration_ms = start.elapsed().as_secs_f64() * 1000.0,
                    "request"
                )
            });
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_id_is_kept_and_anything_else_replaced() {
        assert_eq!(choose_id(Some(&HeaderValue::from_static("req-42.a:b_c"))), "req-42.a:b_c");
        for odd in ["ada@example.com", "", "a b", &"x".repeat(129)] {
            let id = choose_id(Some(&HeaderValue::from_str(odd).unwrap()));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{odd:?} gave {id}");
        }
        assert!(uuid::Uuid::parse_str(&choose_id(None)).is_ok());
    }
}

/// Lets a log line through at most once a second, counting what it held back: for conditions
/// that repeat on every request or connection while they last (a database outage answered 503
/// thousands of times a second), where one line a second with a count says as much. The count
/// goes out with the next line let through, which may come long after the condition ended: the
/// line also says how long ago the previous one was, the span the count covers.
pub struct Throttle {
    /// Milliseconds since [`Throttle::epoch`] of the last line let through, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

/// What [`Throttle::pass`] held back since the previous line it let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Lines held back.
    pub count: u64,
    /// Whole seconds since the previous line let through; `None` for the first.
    pub since_previous_secs: Option<u64>,
}

impl Throttle {
    pub const fn new() -> Self {
        Self { last: std::sync::atomic::AtomicU64::new(0), held: std::sync::atomic::AtomicU64::new(0) }
    }

    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// `Some` when a line may be logged now (none was in the last second), with what was held
    /// back since the previous one; `None`, and one more held back, otherwise.
    pub fn pass(&self) -> Option<Held> {
        use std::sync::atomic::Ordering;
        let now = Self::epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 1000)
            && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let since_previous_secs = (last != 0).then(|| (now - last) / 1000);
            return Some(Held { count: self.held.swap(0, Ordering::Relaxed), since_previous_secs });
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;

    #[test]
    fn a_throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let throttle = Throttle::new();
        assert_eq!(throttle.pass(), Some(super::Held { count: 0, since_previous_secs: None }));
        for _ in 0..5 {
            assert_eq!(throttle.pass(), None);
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let next = throttle.pass().expect("a second later");
        assert_eq!(next.count, 5, "the next line counts the five held back");
        assert_eq!(next.since_previous_secs, Some(1), "over the second since the previous line");
        assert_eq!(throttle.pass(), None);
    }
}
