//! Webhook rules: the event types a receiver can subscribe to, the signature of a delivery and
//! the retry schedule. Pure: the caller passes the clock and the randomness.

use super::shown;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use utoipa::ToSchema;

/// What a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
pub enum WebhookEventType {
    /// A consent event was recorded: one delivery per purpose whose decision changed, with the
    /// event as the change feed shows it and the purpose's state after it.
    #[serde(rename = "consent.changed")]
    ConsentChanged,
    /// A CCPA request to opt out of sale/sharing was received (Cal. Civ. Code §1798.120).
    #[serde(rename = "opt_out.created")]
    OptOutCreated,
    /// An opt-out request was marked completed.
    #[serde(rename = "opt_out.completed")]
    OptOutCompleted,
    /// The tracker audit saw a cookie or host on a site, while the purpose that declares it was
    /// not allowed, for the first time (one delivery per site, item and purpose).
    #[serde(rename = "site.violation")]
    SiteViolation,
}

impl WebhookEventType {
    pub const ALL: [Self; 4] = [Self::ConsentChanged, Self::OptOutCreated, Self::OptOutCompleted, Self::SiteViolation];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsentChanged => "consent.changed",
            Self::OptOutCreated => "opt_out.created",
            Self::OptOutCompleted => "opt_out.completed",
            Self::SiteViolation => "site.violation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl<'de> Deserialize<'de> for WebhookEventType {
    /// From its name; anything else (another string, a number, null) is refused naming the
    /// accepted types.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = || Self::ALL.map(Self::as_str).join(", ");
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Self::parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown event type '{}'; use one of {}", shown(&s), expected()))
            }),
            other => Err(serde::de::Error::custom(format!("{other} is not an event type; use one of {}", expected()))),
        }
    }
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest webhook URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2000;

/// Checks a receiver URL: absolute `http` or `https` with a host, no user name or password
/// (the signature authenticates deliveries), no fragment, at most [`MAX_URL_LEN`] bytes.
///
/// The URL is taken as written: whitespace, control characters and backslashes (which URL
/// parsers drop or rewrite silently), `http:///x` (an empty authority) and port 0 are refused,
/// and the limit applies to the normalised form that is stored and called.
/// Whether a webhook must not be sent to `ip` unless private receivers are allowed: loopback,
/// private (RFC 1918, RFC 4193), link-local (RFC 3927, RFC 4291; 169.254.169.254 is the cloud
/// metadata service), shared (RFC 6598), unspecified, broadcast and multicast addresses, also
/// when written as IPv4-mapped IPv6.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
            }
        },
    }
}

/// Why a receiver URL's host is internal, when it is written as one (`localhost`, or an address
/// for which [`is_internal`] holds); `None` for names, which are checked once resolved.
pub fn internal_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then(|| format!("{name} is this machine"))
        }
        url::Host::Ipv4(ip) => is_internal(ip.into()).then(|| format!("{ip} is an internal address")),
        url::Host::Ipv6(ip) => is_internal(ip.into()).then(|| format!("{ip} is an internal address")),
    }
}

pub fn parse_receiver_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("is longer than {MAX_URL_LEN} bytes"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err("must not contain spaces, control characters or backslashes".into());
    }
    let authority = raw.split_once("://").map(|(_, rest)| rest);
    if authority.is_none_or(|a| a.is_empty() || a.starts_with('/')) {
        return Err("must be an absolute URL: scheme://host[:port]/path".into());
    }
    if authority.and_then(|a| a.split(['/', '?']).next()).is_some_and(|host| host.contains('@')) {
        return Err("must not carry a user name or password: deliveries are authenticated by their signature".into());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!("is longer than {MAX_URL_LEN} bytes once percent-encoded"));
    }
    if url.port() == Some(0) {
        return Err("has port 0, which cannot be called".into());
    }
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("must be an http or https URL, not '{}:'", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password: deliveries are authenticated by their signature".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment (it is never sent)".into());
    }
    Ok(url)
}

/// The `Consentry-Signature` header of a delivery: `t=<unix seconds>,v1=<hex>`, where `<hex>`
/// is HMAC-SHA256 keyed with the webhook's secret (its UTF-8 bytes) over `"<t>.<body>"`.
/// Receivers recompute it over the raw body and refuse old `t` values to stop replays.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// When failed deliveries are tried again: exponential backoff with jitter, for `window` after
/// the first attempt was due, then dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure (before jitter); doubles after each failure.
    pub base: Duration,
    /// The longest wait between two attempts (before jitter).
    pub max_delay: Duration,
    /// How long a delivery is retried; the last attempt is made when it ends.
    pub window: Duration,
}

/// What to do with a delivery after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    /// The window is over: keep it as a dead letter (it can still be retried by hand).
    DeadLetter,
}

impl RetryPolicy {
    /// After `attempts` failed attempts (1 for the first) of a delivery whose schedule started
    /// at `started`, failing last at `now`. `jitter` is uniform in `[0, 1)`: the wait is
    /// between half and all of `min(base × 2^(attempts−1), max_delay)` ("equal jitter"), so
    /// receivers that fail together do not get their retries together. The last retry is made
    /// when the window ends, never after, so a delivery is tried for the whole window.
    pub fn after_failure(
        &self,
        attempts: u32,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> AfterFailure {
        let deadline = started + self.window;
        if now >= deadline {
            return AfterFailure::DeadLetter;
        }
        let max_ms = self.max_delay.num_milliseconds().max(1);
        let doublings = attempts.saturating_sub(1).min(62);
        let full_ms = self.base.num_milliseconds().max(1).saturating_mul(1_i64 << doublings.min(40)).min(max_ms);
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        let wait_ms = full_ms / 2 + ((full_ms - full_ms / 2) as f64 * jitter) as i64;
        AfterFailure::RetryAt((now + Duration::milliseconds(wait_ms.max(1))).min(deadline))
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt of the retry window failed; kept, and can be retried by hand.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead].into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Expected value computed independently: Python hmac.new(b"whsec_test",
        // b'1700000000.{"id":"1"}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, br#"{"id":"1"}"#),
            "t=1700000000,v1=11bf4466ea17c3df3fd743af0b435368e16b7a05eb8eced85e8c4670767bdec5"
        );
    }

    fn default_policy() -> RetryPolicy {
        RetryPolicy { base: Duration::seconds(30), max_delay: Duration::hours(1), window: Duration::hours(24) }
    }

    /// Issue #4: failed deliveries are retried with exponential backoff and jitter for at least
    /// 24 hours, then dead-lettered.
    #[test]
    fn retries_cover_the_whole_window_then_dead_letter() {
        let start = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z").unwrap().with_timezone(&Utc);
        for jitter in [0.0, 0.5, 0.999_999] {
            let policy = default_policy();
            let mut now = start;
            let mut attempts = 0;
            let mut waits = Vec::new();
            loop {
                attempts += 1;
                match policy.after_failure(attempts, start, now, jitter) {
                    AfterFailure::RetryAt(at) => {
                        assert!(at > now, "the next attempt is later than the failed one");
                        waits.push(at - now);
                        now = at;
                    }
                    AfterFailure::DeadLetter => break,
                }
            }
            assert_eq!(now, start + Duration::hours(24), "the last attempt is made when the 24 hours end");
            assert!((20..=70).contains(&attempts), "{attempts} attempts with jitter {jitter}");
            // Exponential: the first waits double (within the jitter band), then the cap holds.
            let first = waits[0].num_milliseconds();
            assert!((15_000..=30_000).contains(&first), "first wait {first} ms");
            let fifth = waits[4].num_milliseconds();
            assert!((240_000..=480_000).contains(&fifth), "fifth wait {fifth} ms = 30 s × 2^4, jittered");
            assert!(waits.iter().all(|w| *w <= Duration::hours(1)), "no wait beyond max_delay");
        }
    }

    #[test]
    fn jitter_spreads_retries_of_the_same_attempt() {
        let start = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z").unwrap().with_timezone(&Utc);
        let policy = default_policy();
        let at = |j| match policy.after_failure(3, start, start, j) {
            AfterFailure::RetryAt(t) => (t - start).num_milliseconds(),
            AfterFailure::DeadLetter => panic!("inside the window"),
        };
        assert_eq!(at(0.0), 60_000, "half of 30 s × 2²");
        assert_eq!(at(0.5), 90_000);
        assert!(at(0.999) > 119_000 && at(0.999) <= 120_000);
        assert_eq!(at(f64::NAN), 60_000, "a broken random source cannot make the wait unbounded");
    }

    #[test]
    fn after_the_window_a_failure_is_a_dead_letter() {
        let start = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z").unwrap().with_timezone(&Utc);
        let policy = default_policy();
        assert_eq!(policy.after_failure(40, start, start + Duration::hours(24), 0.3), AfterFailure::DeadLetter);
        // However many failures, the wait stays within max_delay: 30 min + 0.3 × 30 min.
        assert_eq!(
            policy.after_failure(u32::MAX, start, start, 0.3),
            AfterFailure::RetryAt(start + Duration::minutes(39))
        );
    }

    #[test]
    fn receiver_urls() {
        assert!(parse_receiver_url("https://hooks.example.com/consentry?x=1").is_ok());
        assert!(parse_receiver_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(parse_receiver_url("ftp://example.com/").unwrap_err().contains("http or https"));
        assert!(parse_receiver_url("/relative").unwrap_err().contains("absolute"));
        assert!(parse_receiver_url("https://user:pw@example.com/").unwrap_err().contains("password"));
        assert!(parse_receiver_url("https://example.com/#x").unwrap_err().contains("fragment"));
        assert!(parse_receiver_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        // Taken as written, not as a lenient parser would rewrite it.
        assert!(parse_receiver_url("https://x.example/h\r\nX-Injected: 1").unwrap_err().contains("control"));
        assert!(parse_receiver_url("http:///h").unwrap_err().contains("absolute"));
        assert!(parse_receiver_url("https:\\\\x.example\\h").is_err());
        assert!(parse_receiver_url("https://x.example:0/h").unwrap_err().contains("port 0"));
        assert!(parse_receiver_url("http://@h/").unwrap_err().contains("user name"));
        assert!(parse_receiver_url("https://h.example/a@b").is_ok(), "an @ in the path is fine");
        let long = format!("https://x.example/{}", "é".repeat(700));
        assert!(long.len() < MAX_URL_LEN);
        assert!(parse_receiver_url(&long).unwrap_err().contains("percent-encoded"));
    }

    #[test]
    fn event_types_round_trip() {
        for t in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(WebhookEventType::parse("consent.*"), None);
        let err = serde_json::from_str::<WebhookEventType>("5").unwrap_err().to_string();
        assert!(err.contains("5 is not an event type; use one of consent.changed"), "{err}");
        let err = serde_json::from_str::<WebhookEventType>("\"Consent.Changed\"").unwrap_err().to_string();
        assert!(err.contains("unknown event type 'Consent.Changed'"), "{err}");
    }

    #[test]
    fn internal_receivers_are_recognised_however_written() {
        for internal in [
            "http://localhost/h",
            "http://api.localhost./h",
            "http://127.0.0.1:5432/",
            "http://10.0.0.1/h",
            "http://172.16.5.4/h",
            "http://192.168.1.1/h",
            "https://169.254.169.254/latest",
            "http://100.64.0.1/h",
            "http://0.0.0.0/h",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "http://2130706433/h",
        ] {
            let url = url::Url::parse(internal).unwrap();
            assert!(internal_host(&url).is_some(), "{internal}");
        }
        for public in ["https://crm.example.com/h", "https://93.184.215.14/h", "https://[2606:4700::1111]/h"] {
            assert_eq!(internal_host(&url::Url::parse(public).unwrap()), None, "{public}");
        }
    }
}
