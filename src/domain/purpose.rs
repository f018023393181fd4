//! Purposes and their consent models.

use super::region::RegionCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use utoipa::ToSchema;

/// A purpose key: lower-case `[a-z0-9_]{1,64}`, e.g. `marketing_email`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct PurposeKey(String);

impl PurposeKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("'{}' is not a purpose key: use 1 to 64 of a-z, 0-9 and _", shown(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a value the caller sent is quoted back in an error message (and so in logs): at most 80
/// characters, control characters as U+FFFD, and an email address, phone number or JSON Web
/// Token withheld, as error bodies and logs never carry one (an identifier sent in the wrong
/// field, a CSV row with its columns shifted, a token used as an `Idempotency-Key`).
pub(crate) fn shown(raw: &str) -> String {
    // E.164 (`+` and 7 or more digits) or a national number of 10 or more (a date has 8), also
    // behind a scheme (`phone:`, `tel:`, RFC 3966).
    let number = match raw.trim_start().split_once(':') {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => raw,
    };
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let phone_like = number.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && (digits >= 10 || (digits >= 7 && number.trim_start().starts_with('+')));
    if raw.contains('@') {
        return "[an email address, withheld]".into();
    }
    if phone_like {
        return "[a phone number, withheld]".into();
    }
    // A JWS or JWE in compact form (RFC 7515 §7.1, RFC 7516 §7.1): three or five base64url
    // parts, the header a JSON object (`{"` encodes as `eyJ`).
    if raw.trim_start().starts_with("eyJ") && matches!(raw.matches('.').count(), 2 | 4) {
        return "[a token, withheld]".into();
    }
    let kept: String = raw.chars().take(80).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if raw.chars().nth(80).is_some() {
        format!("{kept}…")
    } else {
        kept
    }
}

/// The pattern of purpose and policy keys (JSON Schema / ECMA-262 syntax).
pub const KEY_PATTERN: &str = "^[a-z0-9_]{1,64}$";

super::string_schema!(PurposeKey, pattern: KEY_PATTERN, min: 1, max: 64,
    "A purpose key: 1 to 64 of a-z, 0-9 and _.", example: "statistics");

impl From<PurposeKey> for String {
    fn from(value: PurposeKey) -> Self {
        value.0
    }
}

impl fmt::Display for PurposeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a purpose covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurposeKind {
    /// A category of cookies and similar storage on a website (ePrivacy Directive Art. 5(3)).
    CookieCategory,
    /// A processing activity (GDPR Art. 6).
    Processing,
    /// A communication channel or topic, such as marketing email.
    Communication,
}

/// How silence is read for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentModel {
    /// Not allowed until granted (GDPR Art. 6(1)(a), Art. 7).
    OptIn,
    /// Allowed until refused (e.g. CCPA sale/sharing, Cal. Civ. Code §1798.120).
    OptOut,
    /// Always on and cannot be refused: strictly necessary (ePrivacy Art. 5(3), second sentence).
    NoticeOnly,
}

/// The GDPR Art. 6(1) basis a purpose relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// Art. 6(1)(a).
    Consent,
    /// Art. 6(1)(b).
    Contract,
    /// Art. 6(1)(f).
    LegitimateInterest,
    /// Art. 6(1)(c).
    LegalObligation,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($s => Some(Self::$v),)+ _ => None }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(PurposeKind { CookieCategory => "cookie_category", Processing => "processing", Communication => "communication" });
text_enum!(ConsentModel { OptIn => "opt_in", OptOut => "opt_out", NoticeOnly => "notice_only" });
text_enum!(LegalBasis { Consent => "consent", Contract => "contract", LegitimateInterest => "legitimate_interest", LegalObligation => "legal_obligation" });

/// Per-region overrides of a purpose's default consent model.
///
/// The most specific code wins: for a visitor in `US-CA`, an entry for `US-CA` beats one for
/// `US`, which beats the purpose's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionalModels(BTreeMap<RegionCode, ConsentModel>);

impl RegionalModels {
    pub fn new(map: BTreeMap<RegionCode, ConsentModel>) -> Self {
        Self(map)
    }

    pub fn as_map(&self) -> &BTreeMap<RegionCode, ConsentModel> {
        &self.0
    }

    /// The consent model in force in `region`, falling back to `default`.
    pub fn effective(&self, default: ConsentModel, region: Option<&RegionCode>) -> ConsentModel {
        let Some(region) = region else { return default };
        if let Some(model) = self.0.get(region) {
            return *model;
        }
        if region.is_subdivision() {
            if let Ok(country) = RegionCode::parse(region.country()) {
                if let Some(model) = self.0.get(&country) {
                    return *model;
                }
            }
        }
        default
    }
}

/// A purpose as defined by a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub key: PurposeKey,
    pub title: String,
    pub description: String,
    pub kind: PurposeKind,
    /// The default consent model, where no entry of `regions` applies.
    pub consent_model: ConsentModel,
    pub legal_basis: LegalBasis,
    /// Whether a Global Privacy Control signal opts the person out (11 CCR §7025(b)).
    pub gpc_applies: bool,
    /// How long a grant stays valid, in days; `None`: until withdrawn.
    pub max_age_days: Option<u32>,
    pub regions: RegionalModels,
    /// Cookies its vendors set (names or `prefix*` patterns): deleted by the SDK when the
    /// purpose is refused, and attributed to it by the tracker audit.
    pub cookies: Vec<super::audit::CookiePattern>,
    /// Hosts its vendors load from (`host` or `*.domain`), attributed to it by the tracker audit.
    pub hosts: Vec<super::audit::HostPattern>,
    /// How long its events are kept, in days after they occurred; `None`: for ever. Pruning
    /// (`consentry retention run`) never removes the event a current state rests on.
    pub retention_days: Option<u32>,
}

impl Purpose {
    /// The consent model in force in `region` (most specific code wins).
    pub fn model_in(&self, region: Option<&RegionCode>) -> ConsentModel {
        self.regions.effective(self.consent_model, region)
    }

    /// Whether a denial of this purpose is an opt-out of sale or sharing (CCPA): its consent
    /// model is `opt_out` somewhere, or a GPC signal opts people out of it.
    pub fn records_opt_outs(&self) -> bool {
        self.gpc_applies
            || self.consent_model == ConsentModel::OptOut
            || self.regions.as_map().values().any(|m| *m == ConsentModel::OptOut)
    }

    pub fn rule(&self, region: Option<&RegionCode>) -> PurposeRule {
        PurposeRule { model: self.model_in(region), max_age_days: self.max_age_days }
    }
}

/// What status evaluation needs to know of a purpose, resolved for one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurposeRule {
    pub model: ConsentModel,
    /// How long a grant stays valid, in days from when it was given; `None`: no limit.
    pub max_age_days: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error bodies and logs never carry a raw email, phone number, token or control character; other
    /// values are quoted, shortened to 80 characters.
    #[test]
    fn values_quoted_in_errors_withhold_emails_phone_numbers_and_tokens() {
        assert_eq!(shown("ada.leak@example.com"), "[an email address, withheld]");
        assert_eq!(shown("+33 1 23 45 67 89"), "[a phone number, withheld]");
        assert_eq!(shown("(555) 123-4567"), "[a phone number, withheld]");
        assert_eq!(shown("2021-13-45"), "2021-13-45", "a date is not a phone number");
        assert_eq!(
            shown("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"),
            "[a token, withheld]"
        );
        assert_eq!(shown("release-2021.02.01"), "release-2021.02.01", "dots alone are not a token");
        assert_eq!(shown("phone:+14155552671"), "[a phone number, withheld]", "behind a scheme");
        assert_eq!(shown("tel:+1-415-555-2671"), "[a phone number, withheld]", "RFC 3966");
        assert_eq!(shown("eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn"), "[a token, withheld]", "a JWE");
        assert_eq!(shown("visitor:0b9c"), "visitor:0b9c", "a scheme before no number");
        assert_eq!(shown("a\u{0}b\nc"), "a\u{fffd}b\u{fffd}c");
        assert_eq!(shown(&"x".repeat(100)), format!("{}…", "x".repeat(80)));
        assert_eq!(
            RegionCode::parse("ada@example.com").unwrap_err(),
            "'[an email address, withheld]' is not an ISO 3166-1 alpha-2 or ISO 3166-2 region code (e.g. 'US' or 'US-CA')"
        );
    }

    fn region(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn purpose_keys_are_lowercase_word_characters() {
        assert!(PurposeKey::parse("marketing_email").is_ok());
        assert!(PurposeKey::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Marketing", "marketing-email", "é", &"a".repeat(65)] {
            assert!(PurposeKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn most_specific_region_wins() {
        let models = RegionalModels::new(BTreeMap::from([
            (region("US"), ConsentModel::OptOut),
            (region("US-CA"), ConsentModel::OptIn),
        ]));
        let default = ConsentModel::NoticeOnly;
        assert_eq!(models.effective(default, Some(&region("US-CA"))), ConsentModel::OptIn);
        assert_eq!(models.effective(default, Some(&region("US-NY"))), ConsentModel::OptOut);
        assert_eq!(models.effective(default, Some(&region("US"))), ConsentModel::OptOut);
        assert_eq!(models.effective(default, Some(&region("DE"))), default);
        assert_eq!(models.effective(default, None), default);
    }
}
