//! Business-day deadlines of CCPA requests.

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc, Weekday};
use std::collections::BTreeSet;

/// Business days a business has to comply with a request to opt out of sale/sharing:
/// "no later than 15 business days from the date the business receives the request"
/// (11 CCR §7026(f)).
pub const OPT_OUT_BUSINESS_DAYS: u32 = 15;

/// A calendar of business days: Monday to Friday, less the configured holidays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusinessCalendar {
    holidays: BTreeSet<NaiveDate>,
}

impl BusinessCalendar {
    pub fn new(holidays: impl IntoIterator<Item = NaiveDate>) -> Self {
        Self { holidays: holidays.into_iter().collect() }
    }

    pub fn is_business_day(&self, day: NaiveDate) -> bool {
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&day)
    }

    /// The instant `days` business days after `received` (UTC): the day of receipt does not
    /// count, each following business day does; the deadline keeps the time of day of receipt.
    pub fn add_business_days(&self, received: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        let mut day = received.date_naive();
        let mut left = days;
        while left > 0 {
            day = day.checked_add_days(Days::new(1)).unwrap_or(day);
            if self.is_business_day(day) {
                left -= 1;
            }
        }
        day.and_time(received.time()).and_utc()
    }

    /// Business days from `received` to `completed` (UTC), counted like
    /// [`BusinessCalendar::add_business_days`]: the day of receipt does not count, each
    /// following business day up to and including the day of completion does (0 when completed
    /// on the day of receipt or before the next business day).
    pub fn business_days_between(&self, received: DateTime<Utc>, completed: DateTime<Utc>) -> i64 {
        let (mut day, last) = (received.date_naive(), completed.date_naive());
        let mut n = 0;
        while day < last {
            day = match day.checked_add_days(Days::new(1)) {
                Some(d) => d,
                None => break,
            };
            if self.is_business_day(day) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
    }

    /// 11 CCR §7026(f): 15 business days from receipt.
    #[test]
    fn fifteen_business_days_skip_weekends_11_ccr_7026_f() {
        let cal = BusinessCalendar::default();
        // Monday 2026-11-02 → three weeks later, Monday 2026-11-23.
        assert_eq!(cal.add_business_days(at(2026, 11, 2), OPT_OUT_BUSINESS_DAYS), at(2026, 11, 23));
        // Received on a Saturday: the count starts on Monday; 15th business day is Friday 2026-11-27.
        assert_eq!(cal.add_business_days(at(2026, 11, 7), OPT_OUT_BUSINESS_DAYS), at(2026, 11, 27));
    }

    #[test]
    fn business_days_between_counts_like_the_deadline_11_ccr_7026_f() {
        let cal = BusinessCalendar::default();
        // Monday to the Monday three weeks later: 15 business days, the deadline itself.
        assert_eq!(cal.business_days_between(at(2026, 11, 2), at(2026, 11, 23)), 15);
        // Friday to Monday: 1; the same day: 0; Saturday to Sunday: 0.
        assert_eq!(cal.business_days_between(at(2026, 11, 6), at(2026, 11, 9)), 1);
        assert_eq!(cal.business_days_between(at(2026, 11, 6), at(2026, 11, 6)), 0);
        assert_eq!(cal.business_days_between(at(2026, 11, 7), at(2026, 11, 8)), 0);
    }

    #[test]
    fn configured_holidays_are_skipped() {
        let thanksgiving = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let day_after = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let cal = BusinessCalendar::new([thanksgiving, day_after]);
        assert!(!cal.is_business_day(thanksgiving));
        // From Saturday 2026-11-07: without holidays Friday the 27th; both holidays push it to Tuesday 2026-12-01.
        assert_eq!(cal.add_business_days(at(2026, 11, 7), OPT_OUT_BUSINESS_DAYS), at(2026, 12, 1));
    }
}
