//! Consent status and the `allowed` rule (DESIGN.md, "Rules that the tests must pin down").

use super::policy::{Revision, RevisionDate};
use super::purpose::{text_enum, ConsentModel, PurposeKey, PurposeRule};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A person's explicit decision for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Granted,
    Denied,
}

impl Decision {
    pub fn from_bool(granted: bool) -> Self {
        if granted {
            Self::Granted
        } else {
            Self::Denied
        }
    }
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// The first-layer cookie banner.
    Banner,
    /// The preference centre (second layer).
    PreferenceCentre,
    /// A placeholder of blocked content (e.g. a video) that grants in place.
    Placeholder,
    /// A server-to-server call of the tenant's systems.
    Api,
    /// A bulk import of decisions collected elsewhere.
    Import,
    /// The Global Privacy Control signal (`Sec-GPC: 1`), 11 CCR §7025.
    Gpc,
    /// A CCPA "Do Not Sell or Share" request, Cal. Civ. Code §1798.120, 11 CCR §7026.
    OptOutRequest,
    /// A one-click unsubscribe (RFC 8058).
    OneClickUnsubscribe,
}

text_enum!(Decision { Granted => "granted", Denied => "denied" });
text_enum!(ConsentSource {
    Banner => "banner", PreferenceCentre => "preference_centre", Placeholder => "placeholder",
    Api => "api", Import => "import", Gpc => "gpc", OptOutRequest => "opt_out_request",
    OneClickUnsubscribe => "one_click_unsubscribe",
});

impl ConsentSource {
    /// Sources that are opt-outs by nature: they can only carry a denial.
    pub fn is_opt_out_signal(self) -> bool {
        matches!(self, Self::Gpc | Self::OptOutRequest | Self::OneClickUnsubscribe)
    }

    /// Sources of a person's explicit choice, recorded even when it repeats the choice in force:
    /// a re-confirmation is evidence (GDPR Art. 7(1)) and restarts the purpose's max age.
    /// Signals and requests that only ever deny (recorded once while the denial stands) and
    /// imports (history, recorded once) do not re-confirm.
    pub fn reconfirms(self) -> bool {
        matches!(self, Self::Banner | Self::PreferenceCentre | Self::Placeholder | Self::Api)
    }
}

/// The status of a purpose for a data subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A valid grant is in force.
    Granted,
    /// The last decision was a refusal (explicit, GPC, opt-out request, unsubscribe).
    Denied,
    /// No decision was ever recorded.
    NotAsked,
    /// Granted before a revision in force that requires reconsent for this purpose.
    Stale,
    /// Granted longer ago than the purpose's `max_age_days`.
    Expired,
}

/// Why `allowed` is what it is (the `reason` of a consent check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Granted,
    Refused,
    Gpc,
    OptOutRequest,
    NotAsked,
    PolicyChanged,
    Expired,
    NoticeOnly,
    DefaultOptOut,
}

text_enum!(Status { Granted => "granted", Denied => "denied", NotAsked => "not_asked", Stale => "stale", Expired => "expired" });

/// The decision in force for one (subject, purpose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChoice {
    pub decision: Decision,
    pub source: ConsentSource,
    /// The revision date the person saw when deciding, if known.
    pub policy_revision: Option<RevisionDate>,
    /// When the person decided (UTC); expiry counts from here.
    pub occurred_at: DateTime<Utc>,
}

/// The outcome of the status rules for one (subject, purpose) at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub status: Status,
    pub allowed: bool,
    pub reason: Reason,
    /// When a grant stops being valid (`occurred_at + max_age_days`), if it ever does.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Is `choice` (a grant) older than a revision in force that requires reconsent for `purpose`?
///
/// A grant is stale when it was given before the revision took effect, or when the person
/// saw an older revision date than the one that requires reconsent.
fn is_stale(choice: &StoredChoice, purpose: &PurposeKey, revisions: &[Revision], now: DateTime<Utc>) -> bool {
    revisions.iter().any(|r| {
        r.requires_reconsent
            && r.in_force(now)
            && r.covers(purpose)
            && (choice.occurred_at < r.effective_at
                || choice.policy_revision.is_some_and(|seen| seen < r.revision_date))
    })
}

/// Applies the status rules.
///
/// - status: no choice → `not_asked`; a denial → `denied` (denials never lapse); a grant →
///   `expired` past `max_age_days`, else `stale` when a reconsent revision in force names the
///   purpose and the grant predates it, else `granted`.
/// - allowed: `notice_only` → always; `opt_in` → only when `granted`; `opt_out` → unless `denied`.
pub fn evaluate(
    purpose: &PurposeKey,
    rule: PurposeRule,
    choice: Option<&StoredChoice>,
    revisions: &[Revision],
    now: DateTime<Utc>,
) -> Evaluation {
    let expires_at = choice
        .filter(|c| c.decision == Decision::Granted)
        .and_then(|c| rule.max_age_days.map(|days| c.occurred_at + Duration::days(i64::from(days))));
    let (status, choice_reason) = match choice {
        None => (Status::NotAsked, Reason::NotAsked),
        Some(c) if c.decision == Decision::Denied => (
            Status::Denied,
            match c.source {
                ConsentSource::Gpc => Reason::Gpc,
                ConsentSource::OptOutRequest => Reason::OptOutRequest,
                _ => Reason::Refused,
            },
        ),
        Some(_) if expires_at.is_some_and(|at| at <= now) => (Status::Expired, Reason::Expired),
        Some(c) if is_stale(c, purpose, revisions, now) => (Status::Stale, Reason::PolicyChanged),
        Some(_) => (Status::Granted, Reason::Granted),
    };
    let (allowed, reason) = match rule.model {
        ConsentModel::NoticeOnly => (true, Reason::NoticeOnly),
        ConsentModel::OptIn => (status == Status::Granted, choice_reason),
        ConsentModel::OptOut => match status {
            Status::Denied => (false, choice_reason),
            Status::Granted => (true, Reason::Granted),
            _ => (true, Reason::DefaultOptOut),
        },
    };
    Evaluation { status, allowed, reason, expires_at }
}

/// Which of two decisions for one purpose survives when two histories of one person merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivor {
    First,
    Second,
}

/// The newest decision wins; an opt-out that came from GPC or an opt-out request is never
/// overridden by a grant that is not newer (a tie goes to the opt-out). So an opt-out recorded
/// on a device applies to the person it is linked to (11 CCR §7025(c)(1)).
pub fn merge_survivor(first: &StoredChoice, second: &StoredChoice) -> Survivor {
    let sticky = |c: &StoredChoice| {
        c.decision == Decision::Denied && matches!(c.source, ConsentSource::Gpc | ConsentSource::OptOutRequest)
    };
    if first.occurred_at == second.occurred_at {
        return if sticky(second) && !sticky(first) { Survivor::Second } else { Survivor::First };
    }
    if second.occurred_at > first.occurred_at {
        Survivor::Second
    } else {
        Survivor::First
    }
}

/// How long a business must wait after a consumer opted out of sale/sharing before asking them
/// to opt back in: "at least 12 months" (Cal. Civ. Code §1798.135(c)(4)).
pub const REPROMPT_WAIT_MONTHS: u32 = 12;

/// When the person may be asked again to allow a sale/sharing purpose (`gpc_applies`) they
/// refused; `None` when nothing holds the question back.
pub fn reprompt_after(sale_or_sharing: bool, choice: Option<&StoredChoice>) -> Option<DateTime<Utc>> {
    let refusal = choice.filter(|c| sale_or_sharing && c.decision == Decision::Denied)?;
    refusal.occurred_at.checked_add_months(chrono::Months::new(REPROMPT_WAIT_MONTHS))
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned));
        f.write_str(s.as_deref().unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::PolicyKey;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }
    fn key(k: &str) -> PurposeKey {
        PurposeKey::parse(k).unwrap()
    }
    fn rule(model: ConsentModel) -> PurposeRule {
        PurposeRule { model, max_age_days: Some(365) }
    }
    fn choice(decision: Decision, source: ConsentSource, when: DateTime<Utc>) -> StoredChoice {
        StoredChoice { decision, source, policy_revision: RevisionDate::parse("2021-02-01").ok(), occurred_at: when }
    }
    fn revision(date: &str, reconsent: bool, purposes: Option<Vec<&str>>) -> Revision {
        let revision_date = RevisionDate::parse(date).unwrap();
        Revision {
            policy_key: PolicyKey::parse("privacy").unwrap(),
            revision_date,
            effective_at: revision_date.start_of_day_utc(),
            requires_reconsent: reconsent,
            purposes: purposes.map(|p| p.into_iter().map(key).collect()),
        }
    }

    #[test]
    fn allowed_follows_the_consent_model() {
        let now = at(2021, 6, 1);
        let granted = choice(Decision::Granted, ConsentSource::Banner, at(2021, 3, 1));
        let denied = choice(Decision::Denied, ConsentSource::Banner, at(2021, 3, 1));
        let p = key("analytics");
        let table = [
            (ConsentModel::OptIn, None, false, Status::NotAsked, Reason::NotAsked),
            (ConsentModel::OptIn, Some(&granted), true, Status::Granted, Reason::Granted),
            (ConsentModel::OptIn, Some(&denied), false, Status::Denied, Reason::Refused),
            (ConsentModel::OptOut, None, true, Status::NotAsked, Reason::DefaultOptOut),
            (ConsentModel::OptOut, Some(&granted), true, Status::Granted, Reason::Granted),
            (ConsentModel::OptOut, Some(&denied), false, Status::Denied, Reason::Refused),
            (ConsentModel::NoticeOnly, None, true, Status::NotAsked, Reason::NoticeOnly),
            (ConsentModel::NoticeOnly, Some(&denied), true, Status::Denied, Reason::NoticeOnly),
        ];
        for (model, c, allowed, status, reason) in table {
            let e = evaluate(&p, rule(model), c, &[], now);
            assert_eq!((e.allowed, e.status, e.reason), (allowed, status, reason), "{model:?} {c:?}");
        }
    }

    #[test]
    fn opt_out_signals_give_their_reason() {
        let now = at(2021, 6, 1);
        let p = key("sale_sharing");
        let gpc = choice(Decision::Denied, ConsentSource::Gpc, at(2021, 3, 1));
        let request = choice(Decision::Denied, ConsentSource::OptOutRequest, at(2021, 3, 1));
        assert_eq!(evaluate(&p, rule(ConsentModel::OptOut), Some(&gpc), &[], now).reason, Reason::Gpc);
        assert_eq!(evaluate(&p, rule(ConsentModel::OptOut), Some(&request), &[], now).reason, Reason::OptOutRequest);
    }

    #[test]
    fn grants_expire_after_max_age_days_counted_from_occurred_at() {
        let p = key("analytics");
        let given = at(2021, 3, 1);
        let c = choice(Decision::Granted, ConsentSource::Banner, given);
        let just_before = given + Duration::days(365) - Duration::seconds(1);
        let e = evaluate(&p, rule(ConsentModel::OptIn), Some(&c), &[], just_before);
        assert_eq!((e.status, e.allowed), (Status::Granted, true));
        assert_eq!(e.expires_at, Some(given + Duration::days(365)));
        let e = evaluate(&p, rule(ConsentModel::OptIn), Some(&c), &[], given + Duration::days(365));
        assert_eq!((e.status, e.allowed, e.reason), (Status::Expired, false, Reason::Expired));
        let no_limit = PurposeRule { model: ConsentModel::OptIn, max_age_days: None };
        let e = evaluate(&p, no_limit, Some(&c), &[], at(2030, 1, 1));
        assert_eq!((e.status, e.expires_at), (Status::Granted, None));
    }

    /// Cal. Civ. Code §1798.135(c)(4): 12 months before asking to opt back in.
    #[test]
    fn an_opt_out_of_sale_or_sharing_holds_the_question_back_12_months_civ_code_1798_135_c_4() {
        let refusal = choice(Decision::Denied, ConsentSource::OptOutRequest, at(2021, 3, 1));
        assert_eq!(reprompt_after(true, Some(&refusal)), Some(at(2022, 3, 1)));
        assert_eq!(reprompt_after(false, Some(&refusal)), None, "only sale/sharing purposes");
        let grant = choice(Decision::Granted, ConsentSource::Banner, at(2021, 3, 1));
        assert_eq!(reprompt_after(true, Some(&grant)), None);
    }

    /// 11 CCR §7025(c)(1): an opt-out on a device applies to the linked person.
    #[test]
    fn merging_histories_keeps_the_newest_and_never_lets_an_older_grant_undo_an_opt_out_11_ccr_7025_c_1() {
        let gpc = choice(Decision::Denied, ConsentSource::Gpc, at(2021, 3, 1));
        let older_grant = choice(Decision::Granted, ConsentSource::Banner, at(2021, 2, 1));
        let tied_grant = choice(Decision::Granted, ConsentSource::Api, at(2021, 3, 1));
        let newer_grant = choice(Decision::Granted, ConsentSource::Banner, at(2021, 4, 1));
        assert_eq!(merge_survivor(&older_grant, &gpc), Survivor::Second);
        assert_eq!(merge_survivor(&gpc, &older_grant), Survivor::First);
        assert_eq!(merge_survivor(&tied_grant, &gpc), Survivor::Second, "a tie goes to the opt-out");
        assert_eq!(merge_survivor(&gpc, &newer_grant), Survivor::Second, "a newer grant is a new decision");
        let refusal = choice(Decision::Denied, ConsentSource::Banner, at(2021, 1, 1));
        assert_eq!(merge_survivor(&refusal, &older_grant), Survivor::Second, "otherwise the newest wins");
    }

    #[test]
    fn denials_do_not_expire() {
        let c = choice(Decision::Denied, ConsentSource::Banner, at(2010, 1, 1));
        let e = evaluate(&key("analytics"), rule(ConsentModel::OptIn), Some(&c), &[], at(2021, 6, 1));
        assert_eq!((e.status, e.expires_at), (Status::Denied, None));
    }

    #[test]
    fn a_reconsent_revision_makes_older_grants_of_named_purposes_stale() {
        let granted = choice(Decision::Granted, ConsentSource::Banner, at(2021, 3, 1));
        let now = at(2021, 6, 1);
        let reconsent = [revision("2021-05-01", true, Some(vec!["analytics"]))];
        let e = evaluate(&key("analytics"), rule(ConsentModel::OptIn), Some(&granted), &reconsent, now);
        assert_eq!((e.status, e.allowed, e.reason), (Status::Stale, false, Reason::PolicyChanged));
        // Not named by the revision: unchanged.
        let e = evaluate(&key("marketing"), rule(ConsentModel::OptIn), Some(&granted), &reconsent, now);
        assert_eq!(e.status, Status::Granted);
        // Opt-out purposes stay allowed when stale.
        let e = evaluate(&key("analytics"), rule(ConsentModel::OptOut), Some(&granted), &reconsent, now);
        assert_eq!((e.status, e.allowed), (Status::Stale, true));
    }

    #[test]
    fn a_revision_without_reconsent_or_not_yet_in_force_changes_nothing() {
        let granted = choice(Decision::Granted, ConsentSource::Banner, at(2021, 3, 1));
        let p = key("analytics");
        let plain = [revision("2021-05-01", false, None)];
        assert_eq!(
            evaluate(&p, rule(ConsentModel::OptIn), Some(&granted), &plain, at(2021, 6, 1)).status,
            Status::Granted
        );
        let future = [revision("2021-09-01", true, None)];
        assert_eq!(
            evaluate(&p, rule(ConsentModel::OptIn), Some(&granted), &future, at(2021, 6, 1)).status,
            Status::Granted
        );
        assert_eq!(
            evaluate(&p, rule(ConsentModel::OptIn), Some(&granted), &future, at(2021, 9, 2)).status,
            Status::Stale
        );
    }

    #[test]
    fn a_grant_under_the_new_revision_is_not_stale() {
        let p = key("analytics");
        let reconsent = [revision("2021-05-01", true, None)];
        let mut renewed = choice(Decision::Granted, ConsentSource::Banner, at(2021, 5, 2));
        renewed.policy_revision = RevisionDate::parse("2021-05-01").ok();
        assert_eq!(
            evaluate(&p, rule(ConsentModel::OptIn), Some(&renewed), &reconsent, at(2021, 6, 1)).status,
            Status::Granted
        );
        // Given after the revision took effect, but on a page that still showed the old text.
        let old_page = choice(Decision::Granted, ConsentSource::Banner, at(2021, 5, 2));
        assert_eq!(
            evaluate(&p, rule(ConsentModel::OptIn), Some(&old_page), &reconsent, at(2021, 6, 1)).status,
            Status::Stale
        );
    }
}
