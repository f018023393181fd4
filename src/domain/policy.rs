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
    pub fn parse(raw: &str) -> Result<Self, String> {
        let well_formed = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
        match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            Ok(date) if well_formed && date.year() >= 1970 => Ok(Self(date)),
            Ok(_) if well_formed => Err(format!("'{}' is before 1970", shown(raw))),
            _ => Err(format!("'{}' is not a date in the form YYYY-MM-DD", shown(raw))),
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
        write!(f, "{}", self.0.format("%Y-%m-%d"))
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
        for bad in ["2021-2-1", "2021-02-30", "01.02.2021", "2021-02-01T00:00:00Z", "", "0000-01-01", "1969-12-31"] {
            assert!(RevisionDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn effective_at_defaults_to_midnight_utc() {
        let d = RevisionDate::parse("2021-02-01").unwrap();
        assert_eq!(d.start_of_day_utc().to_rfc3339(), "2021-02-01T00:00:00+00:00");
    }
}
