//! Consent analytics, the pure part: how consent events become per-day rollup counts, how the
//! events of one submission are told apart and classified (accept all, reject all, partial),
//! and how days fall into the buckets of a report.
//!
//! A *submission* is one request that recorded decisions: its events share the data subject and
//! `recorded_at` (each submission is written with its own time, strictly increasing per
//! process; see `ledger::record::next_time`). Only decisions that changed something are events,
//! so an outcome is read from the decisions the submission recorded.

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// The width of a report's buckets. Days are UTC calendar days; weeks are ISO 8601 weeks
/// (Monday to Sunday); months are calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    /// The first day of the bucket that holds `day`.
    pub fn bucket_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day,
            Self::Week => day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Self::Month => day.with_day(1).unwrap_or(day),
        }
    }

    /// The first day of the bucket after the one that starts on `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => start.checked_add_days(Days::new(1)),
            Self::Week => start.checked_add_days(Days::new(7)),
            Self::Month => start.checked_add_months(Months::new(1)),
        }
        .unwrap_or(NaiveDate::MAX)
    }

    /// The starts of the buckets that cover `from..=to`, in order.
    pub fn buckets(self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut start = self.bucket_start(from);
        while start <= to {
            out.push(start);
            start = self.next(start);
        }
        out
    }
}

/// What a submission's recorded decisions amount to (GPC denials aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every decision recorded was a grant.
    AcceptAll,
    /// Every decision recorded was a refusal ("reject all" is an explicit denial).
    RejectAll,
    /// Grants and refusals.
    Partial,
    /// Only GPC denials were recorded (the visitor's own choices changed nothing).
    GpcOnly,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AcceptAll => "accept_all",
            Self::RejectAll => "reject_all",
            Self::Partial => "partial",
            Self::GpcOnly => "gpc_only",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::AcceptAll, Self::RejectAll, Self::Partial, Self::GpcOnly].into_iter().find(|o| o.as_str() == raw)
    }
}

/// The source string of GPC denials (`ConsentSource::Gpc`).
pub const GPC_SOURCE: &str = "gpc";

/// One consent event, as far as analytics cares.
#[derive(Debug, Clone, Copy)]
pub struct EventFact<'a> {
    pub subject_id: &'a str,
    pub recorded_at: NaiveDateTime,
    pub occurred_at: NaiveDateTime,
    pub site_id: Option<&'a str>,
    pub region: Option<&'a str>,
    pub purpose: &'a str,
    pub source: &'a str,
    pub decision: &'a str,
}

/// The key of a rollup row of decisions: (day, site, region, purpose, source, decision).
/// `site` and `region` are `""` when the event has none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecisionKey {
    pub day: NaiveDate,
    pub site: String,
    pub region: String,
    pub purpose: String,
    pub source: String,
    pub decision: String,
}

/// The key of a rollup row of submissions: (day, site, region, source, outcome, gpc).
/// `source` is the source of the submission's own decisions, or `gpc` when it recorded only
/// GPC denials; `gpc` tells whether it recorded GPC denials.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubmissionKey {
    pub day: NaiveDate,
    pub site: String,
    pub region: String,
    pub source: String,
    pub outcome: Outcome,
    pub gpc: bool,
}

/// Counts to add to the rollups: decisions and submissions per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    pub decisions: BTreeMap<DecisionKey, i64>,
    pub submissions: BTreeMap<SubmissionKey, i64>,
}

impl Rollup {
    /// Adds `events` (whole submissions: every event of each submission it holds). An event
    /// counts on the UTC day it occurred (`occurred_at`: when the person decided).
    pub fn add<'a>(&mut self, events: impl IntoIterator<Item = EventFact<'a>>) {
        // (subject, recorded_at) → (first event, grants, refusals, gpc)
        let mut submissions: HashMap<(&str, NaiveDateTime), (EventFact<'a>, u32, u32, bool)> = HashMap::new();
        for e in events {
            let day = e.occurred_at.date();
            let key = DecisionKey {
                day,
                site: e.site_id.unwrap_or_default().to_owned(),
                region: e.region.unwrap_or_default().to_owned(),
                purpose: e.purpose.to_owned(),
                source: e.source.to_owned(),
                decision: e.decision.to_owned(),
            };
            *self.decisions.entry(key).or_default() += 1;
            let entry = submissions.entry((e.subject_id, e.recorded_at)).or_insert((e, 0, 0, false));
            if e.source == GPC_SOURCE {
                entry.3 = true;
                continue;
            }
            if entry.0.source == GPC_SOURCE {
                // The submission's own decisions name its source, site and region.
                entry.0 = e;
            }
            if e.decision == "granted" {
                entry.1 += 1;
            } else {
                entry.2 += 1;
            }
        }
        for (first, grants, refusals, gpc) in submissions.into_values() {
            let outcome = match (grants, refusals) {
                (0, 0) => Outcome::GpcOnly,
                (_, 0) => Outcome::AcceptAll,
                (0, _) => Outcome::RejectAll,
                _ => Outcome::Partial,
            };
            let key = SubmissionKey {
                day: first.occurred_at.date(),
                site: first.site_id.unwrap_or_default().to_owned(),
                region: first.region.unwrap_or_default().to_owned(),
                source: first.source.to_owned(),
                outcome,
                gpc,
            };
            *self.submissions.entry(key).or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty() && self.submissions.is_empty()
    }
}

/// The nearest-rank percentile (`p` in 0..=100) of sorted values: the smallest value with at
/// least `p` % of the values at or below it. `None` for no values.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn buckets_are_iso_weeks_and_calendar_months() {
        // 2026-12-02 is a Wednesday: its ISO week starts on Monday 2026-11-30.
        assert_eq!(Interval::Week.bucket_start(day("2026-12-02")), day("2026-11-30"));
        assert_eq!(Interval::Month.bucket_start(day("2026-12-31")), day("2026-12-01"));
        assert_eq!(
            Interval::Month.buckets(day("2026-01-31"), day("2026-03-01")),
            vec![day("2026-01-01"), day("2026-02-01"), day("2026-03-01")]
        );
        assert_eq!(Interval::Day.buckets(day("2026-01-01"), day("2026-01-03")).len(), 3);
        assert_eq!(Interval::Week.buckets(day("2026-11-30"), day("2026-12-13")).len(), 2);
    }

    #[test]
    fn submissions_are_classified_by_their_own_decisions_gpc_apart() {
        let fact = |subject, t, purpose, source, decision| EventFact {
            subject_id: subject,
            recorded_at: at(t),
            occurred_at: at(t),
            site_id: Some("s1"),
            region: Some("US-CA"),
            purpose,
            source,
            decision,
        };
        let mut r = Rollup::default();
        r.add([
            fact("a", "2026-01-01T10:00:00", "x", "banner", "granted"),
            fact("a", "2026-01-01T10:00:00", "y", "banner", "granted"),
            fact("b", "2026-01-01T10:00:00", "x", "banner", "denied"),
            fact("b", "2026-01-01T10:00:01", "x", "banner", "granted"),
            fact("c", "2026-01-02T10:00:00", "s", "gpc", "denied"),
            fact("c", "2026-01-02T10:00:00", "x", "banner", "granted"),
            fact("c", "2026-01-02T10:00:00", "y", "banner", "denied"),
            fact("d", "2026-01-02T10:00:00", "s", "gpc", "denied"),
        ]);
        let count = |d: &str, outcome, gpc| {
            r.submissions
                .iter()
                .filter(|(k, _)| k.day == day(d) && k.outcome == outcome && k.gpc == gpc)
                .map(|(_, n)| *n)
                .sum::<i64>()
        };
        assert_eq!(count("2026-01-01", Outcome::AcceptAll, false), 2);
        assert_eq!(count("2026-01-01", Outcome::RejectAll, false), 1);
        assert_eq!(count("2026-01-02", Outcome::Partial, true), 1);
        assert_eq!(count("2026-01-02", Outcome::GpcOnly, true), 1);
        let gpc_only = r.submissions.keys().find(|k| k.outcome == Outcome::GpcOnly).unwrap();
        assert_eq!(gpc_only.source, "gpc");
        let partial = r.submissions.keys().find(|k| k.outcome == Outcome::Partial).unwrap();
        assert_eq!(partial.source, "banner");
        assert_eq!(r.decisions.values().sum::<i64>(), 8);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[3], 95), Some(3));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&(1..=20).collect::<Vec<_>>(), 95), Some(19));
        assert_eq!(nearest_rank(&(1..=20).collect::<Vec<_>>(), 100), Some(20));
    }
}
