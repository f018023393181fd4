//! Region codes: ISO 3166-1 alpha-2 countries (`US`) and ISO 3166-2 subdivisions (`US-CA`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An upper-case ISO 3166-1 alpha-2 (`DE`) or ISO 3166-2 (`US-CA`) code.
///
/// Parsing accepts any case and normalises to upper case. A subdivision code is the country
/// code, a hyphen and 1–3 letters or digits (ISO 3166-2 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(String);

impl RegionCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let upper = raw.to_ascii_uppercase();
        let (country, subdivision) = match upper.split_once('-') {
            Some((c, s)) => (c, Some(s)),
            None => (upper.as_str(), None),
        };
        let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
        let sub_ok = subdivision.is_none_or(|s| {
            (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        });
        if country_ok && sub_ok {
            Ok(Self(upper))
        } else {
            Err(format!(
                "'{}' is not an ISO 3166-1 alpha-2 or ISO 3166-2 region code (e.g. 'US' or 'US-CA')",
                super::shown(raw)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country part: `US` for `US-CA`, itself for a country.
    pub fn country(&self) -> &str {
        &self.0[..2]
    }

    pub fn is_subdivision(&self) -> bool {
        self.0.len() > 2
    }
}

/// The pattern of region codes, in any case (JSON Schema / ECMA-262 syntax).
pub const PATTERN: &str = "^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$";

super::string_schema!(RegionCode, pattern: PATTERN, min: 2, max: 6,
    "ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision code, any case.", example: "US-CA");

impl TryFrom<String> for RegionCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RegionCode> for String {
    fn from(value: RegionCode) -> Self {
        value.0
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_countries_and_subdivisions_in_any_case() {
        assert_eq!(RegionCode::parse("us-ca").unwrap().as_str(), "US-CA");
        assert_eq!(RegionCode::parse("DE").unwrap().country(), "DE");
        assert!(RegionCode::parse("GB-ENG").unwrap().is_subdivision());
    }

    #[test]
    fn rejects_what_is_not_iso_3166() {
        for bad in ["", "USA", "U", "US-", "US-CALI", "1S", "US_CA", "US-C A", " US", "ÜS"] {
            assert!(RegionCode::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
