//! Abuse limits: GCRA rate limits ([`governor`]) per site and client address on the public
//! endpoints, per token on the management endpoints.
//!
//! A refusal is a 429 problem body with `Retry-After` (RFC 9110 §10.2.3) and the `RateLimit` /
//! `RateLimit-Policy` fields of draft-ietf-httpapi-ratelimit-headers-10 (e.g.
//! `RateLimit-Policy: "public";q=1200;w=60`, `RateLimit: "public";r=0;t=1`).
//!
//! A check costs a hash of the key and one lock of one shard of a [`dashmap`] (no global lock,
//! no allocation for a key already known). Keys are `(u64, u128)`: a hash of the site or token
//! id, and the client address (IPv6 by its /64, which one subscriber usually holds whole). Keys
//! idle for a window are dropped every minute ([`Limits::prune`]), so memory follows the
//! clients of the last minute.

use crate::config::LimitSettings;
use crate::error::ApiError;
use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// What a limiter counts: a hash of the site or token id, and a client address (0: none).
type Key = (u64, u128);

/// One named quota (`public`, `observations`, `token`) and the keys it counts.
pub struct Policy {
    name: &'static str,
    per_minute: NonZeroU32,
    limiter: DefaultKeyedRateLimiter<Key>,
    what: &'static str,
}

/// Why a request was refused: what [`ApiError::TooManyRequests`] renders.
#[derive(Debug)]
pub struct Throttled {
    /// The policy's name, as in `RateLimit-Policy`.
    pub policy: &'static str,
    /// Requests a window (`q`).
    pub quota: u32,
    /// The window, in seconds (`w`).
    pub window_secs: u64,
    /// Whole seconds until a request is taken again (`Retry-After`, `t`), at least 1.
    pub retry_after_secs: u64,
    /// What is counted, for the problem's `detail`.
    pub what: &'static str,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at most {} requests a minute {}; retry after {} s", self.quota, self.what, self.retry_after_secs)
    }
}

impl Throttled {
    /// The `RateLimit-Policy` field value.
    pub fn policy_field(&self) -> String {
        format!("\"{}\";q={};w={}", self.policy, self.quota, self.window_secs)
    }

    /// The `RateLimit` field value: nothing remains until `t` seconds have passed.
    pub fn limit_field(&self) -> String {
        format!("\"{}\";r=0;t={}", self.policy, self.retry_after_secs)
    }
}

impl Policy {
    fn new(name: &'static str, per_minute: u32, what: &'static str) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(Self { name, per_minute, limiter: governor::RateLimiter::dashmap(Quota::per_minute(per_minute)), what })
    }

    fn check(&self, key: &Key) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            crate::metrics::rate_limited(self.name);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::TooManyRequests(Box::new(Throttled {
                policy: self.name,
                quota: self.per_minute.get(),
                window_secs: 60,
                retry_after_secs: retry_after_secs.max(1),
                what: self.what,
            }))
        })
    }
}

/// The limits of one process, from [`LimitSettings`] (`[limits]`). A quota of 0, or
/// `enabled = false`, lifts that limit.
pub struct Limits {
    public: Option<Policy>,
    observations: Option<Policy>,
    token: Option<Policy>,
    trusted_proxy_hops: usize,
}

/// The namespace of public requests that name no site (the one-click unsubscribe link, the
/// receipt check): counted per client address alone.
const NO_SITE: u64 = 0;

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        let on = |name, n, what| if settings.enabled { Policy::new(name, n, what) } else { None };
        Self {
            public: on("public", settings.public_per_minute, "to one site from one client address"),
            observations: on(
                "observations",
                settings.observations_per_minute,
                "of tracker-audit reports to one site from one client address",
            ),
            token: on("token", settings.token_per_minute, "with one management token"),
            trusted_proxy_hops: settings.trusted_proxy_hops,
        }
    }

    /// Counts a public request of the site `site_id` (or [`NO_SITE`]) from the request's client.
    /// Errors: [`ApiError::TooManyRequests`].
    pub fn public(&self, req: &HttpRequest, site_id: Option<&str>) -> Result<(), ApiError> {
        let Some(policy) = &self.public else { return Ok(()) };
        policy.check(&(site_id.map_or(NO_SITE, hash), self.client_key(req)))
    }

    /// Counts a tracker-audit report (on top of [`Limits::public`]).
    pub fn observations(&self, req: &HttpRequest, site_id: &str) -> Result<(), ApiError> {
        let Some(policy) = &self.observations else { return Ok(()) };
        policy.check(&(hash(site_id), self.client_key(req)))
    }

    /// Counts a request made with the management token `token_id`.
    pub fn token(&self, token_id: &str) -> Result<(), ApiError> {
        let Some(policy) = &self.token else { return Ok(()) };
        policy.check(&(hash(token_id), 0))
    }

    /// Forgets the keys that are back to a full quota (run every minute).
    pub fn prune(&self) {
        for policy in [&self.public, &self.observations, &self.token].into_iter().flatten() {
            policy.limiter.retain_recent();
            policy.limiter.shrink_to_fit();
        }
    }

    fn client_key(&self, req: &HttpRequest) -> u128 {
        let peer = req.peer_addr().map(|a| a.ip());
        match client_address(peer, req.headers(), self.trusted_proxy_hops) {
            Some(IpAddr::V4(a)) => u128::from(a.to_ipv6_mapped()),
            // one subscriber usually holds a whole /64
            Some(IpAddr::V6(a)) => u128::from(a) & !((1u128 << 64) - 1),
            None => 0,
        }
    }
}

fn hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The client's address: the peer's, or, behind `trusted_hops` proxies, the address the
/// outermost trusted proxy saw: the `trusted_hops`-th entry from the right of the
/// `X-Forwarded-For` fields (each proxy appends the address it received the request from, so
/// entries further left were written by the client and are not believed). Fewer entries than
/// hops: the leftmost. An entry that is not an address: the peer's.
pub fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted_hops: usize) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return peer;
    }
    let entries = || {
        headers
            .get_all("x-forwarded-for")
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
    };
    let count = entries().count();
    if count == 0 {
        return peer;
    }
    let entry = entries().nth(count.saturating_sub(trusted_hops))?;
    parse_forwarded_address(entry).or(peer)
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    entry.rsplit_once(':').and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn the_client_address_is_taken_only_through_trusted_hops() {
        let peer = Some("10.0.0.2".parse().unwrap());
        let forged = headers(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(client_address(peer, &forged, 0), peer, "no trusted proxy: the header is ignored");
        assert_eq!(client_address(peer, &forged, 1), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(client_address(peer, &forged, 2), Some("1.1.1.1".parse().unwrap()));
        assert_eq!(client_address(peer, &forged, 5), Some("1.1.1.1".parse().unwrap()), "fewer entries: the leftmost");
        let split = headers(&["1.1.1.1", "198.51.100.1:4711, [2001:db8::1]:80"]);
        assert_eq!(client_address(peer, &split, 1), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(client_address(peer, &split, 2), Some("198.51.100.1".parse().unwrap()));
        assert_eq!(client_address(peer, &headers(&["unknown"]), 1), peer);
        assert_eq!(client_address(peer, &headers(&[]), 1), peer);
    }

    #[test]
    fn a_quota_refuses_with_the_seconds_to_wait() {
        let policy = Policy::new("public", 2, "to one site from one client address").unwrap();
        let key = (hash("site"), 7);
        assert!(policy.check(&key).is_ok() && policy.check(&key).is_ok());
        let Err(ApiError::TooManyRequests(t)) = policy.check(&key) else { panic!("a third request is refused") };
        assert_eq!((t.quota, t.window_secs), (2, 60));
        assert!((1..=30).contains(&t.retry_after_secs), "{}", t.retry_after_secs);
        assert_eq!(t.policy_field(), "\"public\";q=2;w=60");
        assert!(policy.check(&(hash("site"), 8)).is_ok(), "another client has its own quota");
        assert!(Policy::new("off", 0, "").is_none(), "0 lifts the limit");
    }
}
