//! Policy documents and their revisions.

use super::purpose::{shown, PurposeKey};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::fmt;

/// A policy key such as `privacy` or `cookies`: lower-case `[a-z0-9_]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey(String);

impl PolicyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        PurposeKey::parse(raw)
            .map(|k| Self(k.as_str().to_owned()))
            .map_err(|_| format!("'{}' is not a policy key: use 1 to 64 of a-z, 0-9 and _", shown(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A revision's identity: the calendar date it carries, `YYYY-MM-DD` (ISO 8601 calendar date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevisionDate(NaiveDate);

impl RevisionDate {
    /// Errors: anything but ten characters `YYYY-MM-DD` naming a calendar date from 1970 on.
    /// Read by hand, digit by digit: every stored state names its revision, and a bulk check
    /// reads thousands (chrono's format parser was 2.5% of its server time).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let b = raw.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            b[range].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
        };
        let date = if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
            match (digits(0..4), digits(5..7), digits(8..10)) {
                (Some(y), Some(m), Some(d)) => i32::try_from(y).ok().and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
                _ => None,
            }
        } else {
            None
        };
        match date {
            Some(date) if date.year() >= 1970 => Ok(Self(date)),
            Some(_) => Err(format!("'{}' is before 1970", shown(raw))),
            None => Err(format!("'{}' is not a date in the form YYYY-MM-DD", shown(raw))),
        }
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// 00:00 UTC on the revision date: when a revision takes effect unless told otherwise.
    pub fn start_of_day_utc(self) -> DateTime<Utc> {
        self.0.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    }
}

super::string_schema!(RevisionDate,
    pattern: "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", min: 10, max: 10,
    "A revision date, YYYY-MM-DD: a valid calendar date from 1970 on.", example: "2021-02-01");

super::string_schema!(PolicyKey, pattern: super::purpose::KEY_PATTERN, min: 1, max: 64,
    "A policy key such as privacy or cookies: 1 to 64 of a-z, 0-9 and _.", example: "privacy");

impl fmt::Display for RevisionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand: chrono's `format` interprets its pattern on every call. Years are 1970 on
        // (`parse`), so four digits.
        write!(f, "{:04}-{:02}-{:02}", self.0.year(), self.0.month(), self.0.day())
    }
}

/// A published revision of a policy, as the status rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub policy_key: PolicyKey,
    pub revision_date: RevisionDate,
    /// When the revision is in force from (UTC). A revision is stored as soon as it is
    /// published but changes nothing before this instant.
    pub effective_at: DateTime<Utc>,
    /// Whether grants given before this revision must be asked again (`stale`).
    pub requires_reconsent: bool,
    /// The purposes the revision changes; `None`: every purpose.
    pub purposes: Option<Vec<PurposeKey>>,
}

impl Revision {
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.effective_at <= now
    }

    pub fn covers(&self, purpose: &PurposeKey) -> bool {
        self.purposes.as_ref().is_none_or(|keys| keys.contains(purpose))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_dates_are_strict_iso_dates() {
        assert_eq!(RevisionDate::parse("2021-02-01").unwrap().to_string(), "2021-02-01");
        assert_eq!(RevisionDate::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert_eq!(RevisionDate::parse("1970-01-01").unwrap().to_string(), "1970-01-01");
        for bad in [
            "2021-2-1",
            "2021-02-30",
            "2023-02-29",
            "2021-13-01",
            "2021-00-10",
            "01.02.2021",
            "2021-02-01T00:00:00Z",
            "",
            "+021-02-01",
            "2021-0a-01",
            "２０２１-02-01",
            "2021 02 01",
        ] {
            // A value that looks like a phone number is withheld from the message (`shown`).
            assert_eq!(
                RevisionDate::parse(bad),
                Err(format!("'{}' is not a date in the form YYYY-MM-DD", shown(bad))),
                "{bad}"
            );
        }
        for early in ["0000-01-01", "1969-12-31"] {
            assert_eq!(RevisionDate::parse(early), Err(format!("'{early}' is before 1970")), "{early}");
        }
    }

    #[test]
    fn effective_at_defaults_to_midnight_utc() {
        let d = RevisionDate::parse("2021-02-01").unwrap();
        assert_eq!(d.start_of_day_utc().to_rfc3339(), "2021-02-01T00:00:00+00:00");
    }
}
