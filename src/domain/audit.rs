//! Tracker audit rules: the cookies and hosts a purpose declares, and how an observed item is
//! classified. Pure: no I/O.
//!
//! A purpose declares the cookies its vendors set (`_ga`, or the prefix pattern `_ga_*`) and
//! the hosts they load from (`www.google-analytics.com`, or every subdomain with
//! `*.doubleclick.net`). The SDK deletes a refused purpose's cookies, and the audit attributes
//! what sampled page views saw to the purpose that declares it; an item seen while that purpose
//! was not allowed is a violation.

use super::shown;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The most cookie patterns, or hosts, one purpose may declare.
pub const MAX_DECLARED: usize = 100;

/// A cookie name (RFC 6265 §4.1.1 `token`), or a prefix of one followed by `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CookiePattern(String);

/// The pattern of [`CookiePattern`] (ECMA-262 syntax): token characters, an optional final `*`.
pub const COOKIE_PATTERN: &str = r"^[!#$%&'+\-.0-9A-Z^_`a-z|~]{1,128}\*?$";

/// Whether `b` may appear in a cookie name (an RFC 6265 / RFC 2616 `token` character).
fn cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)
}

/// Whether `raw` is a cookie name as the audit takes them: 1 to 128 token characters.
pub fn is_cookie_name(raw: &str) -> bool {
    (1..=128).contains(&raw.len()) && raw.bytes().all(cookie_name_byte)
}

impl CookiePattern {
    /// Errors: a message for people, quoting (a shortened) `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.strip_suffix('*').unwrap_or(raw);
        if is_cookie_name(name) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a cookie name or prefix pattern: use 1 to 128 letters, digits or !#$%&'+-.^_`|~, optionally ending in * (e.g. _ga_*)",
                shown(raw)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether cookie `name` matches: equal, or starting with the prefix before `*`.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

super::string_schema!(CookiePattern, pattern: COOKIE_PATTERN, min: 1, max: 129,
    "A cookie name, or a prefix followed by `*` (`_ga_*` matches `_ga_ABC123`).", example: "_ga_*");

impl TryFrom<String> for CookiePattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<CookiePattern> for String {
    fn from(value: CookiePattern) -> Self {
        value.0
    }
}

impl fmt::Display for CookiePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name (lower case), or `*.` and a domain: that domain's subdomains, not itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct HostPattern(String);

/// The pattern of [`HostPattern`] (ECMA-262 syntax), before lower-casing.
pub const HOST_PATTERN: &str =
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$";

/// Whether `raw` is a host name as the audit takes them (lower case): DNS labels of letters,
/// digits and inner hyphens (RFC 1123 §2.1), dot-separated, at most 253 characters.
pub fn is_host(raw: &str) -> bool {
    raw.len() <= 253
        && raw.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl HostPattern {
    /// Lower-cases `raw`. Errors: a message for people, quoting (a shortened) `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.to_ascii_lowercase();
        if is_host(lower.strip_prefix("*.").unwrap_or(&lower)) {
            Ok(Self(lower))
        } else {
            Err(format!(
                "'{}' is not a host name or *.domain pattern (e.g. www.google-analytics.com, *.doubleclick.net): no scheme, port or path",
                shown(raw)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `host` (lower case) matches: equal, or a subdomain of the domain after `*.`.
    pub fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.0 == host,
        }
    }
}

super::string_schema!(HostPattern, pattern: HOST_PATTERN, min: 1, max: 255,
    "A host name, or `*.` and a domain for its subdomains; no scheme, port or path.", example: "*.doubleclick.net");

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<HostPattern> for String {
    fn from(value: HostPattern) -> Self {
        value.0
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an observation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A cookie name the page could read (`document.cookie`).
    Cookie,
    /// The host of a resource, script or iframe the page loaded.
    Host,
}

super::purpose::text_enum!(ItemKind { Cookie => "cookie", Host => "host" });

/// The purpose key recorded for an item no purpose declares.
pub const UNCLASSIFIED: &str = "unclassified";

/// The first purpose (in the order given) declaring `item`, if any.
pub fn classify<'a>(purposes: &'a [super::Purpose], kind: ItemKind, item: &str) -> Option<&'a super::Purpose> {
    purposes.iter().find(|p| match kind {
        ItemKind::Cookie => p.cookies.iter().any(|c| c.matches(item)),
        ItemKind::Host => p.hosts.iter().any(|h| h.matches(item)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_patterns_match_names_and_prefixes() {
        let ga = CookiePattern::parse("_ga").unwrap();
        let ga_star = CookiePattern::parse("_ga_*").unwrap();
        assert!(ga.matches("_ga"));
        assert!(!ga.matches("_ga_ABC"));
        assert!(ga_star.matches("_ga_ABC"));
        assert!(ga_star.matches("_ga_"));
        assert!(!ga_star.matches("_ga"));
        for bad in ["", "*", "a b", "a=b", "a;b", "_ga*x", "é", &"a".repeat(129)] {
            assert!(CookiePattern::parse(bad).is_err(), "{bad}");
        }
        let re = regex::Regex::new(COOKIE_PATTERN).unwrap();
        for ok in ["_ga", "_ga_*", "__Secure-x", "a.b"] {
            assert!(CookiePattern::parse(ok).is_ok() && re.is_match(ok), "{ok}");
        }
    }

    #[test]
    fn host_patterns_match_hosts_and_subdomains() {
        let exact = HostPattern::parse("WWW.Google-Analytics.com").unwrap();
        assert_eq!(exact.as_str(), "www.google-analytics.com");
        assert!(exact.matches("www.google-analytics.com"));
        assert!(!exact.matches("google-analytics.com"));
        let sub = HostPattern::parse("*.doubleclick.net").unwrap();
        assert!(sub.matches("stats.g.doubleclick.net"));
        assert!(!sub.matches("doubleclick.net"));
        assert!(!sub.matches("evildoubleclick.net"));
        for bad in ["", "https://x.com", "x.com/path", "x.com:443", "*.", "a..b", "-a.com", "*x.com", "*.*.x.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        let re = regex::Regex::new(HOST_PATTERN).unwrap();
        for ok in ["www.google-analytics.com", "*.doubleclick.net", "localhost", "127.0.0.1"] {
            assert!(HostPattern::parse(ok).is_ok() && re.is_match(ok), "{ok}");
        }
    }
}
