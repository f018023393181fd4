//! Data-subject identifiers and their pseudonymised stored form.
//!
//! A data subject is referenced as `visitor:<uuid>`, `user:<id>`, `email:<address>` or
//! `phone:<E.164>`. Email addresses and phone numbers are personal data that a consent
//! ledger does not need in the clear, so they are normalised and stored only as a keyed hash
//! (HMAC-SHA256 with a per-tenant secret, GDPR Art. 4(5) pseudonymisation, Art. 25(1)).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

use super::purpose::shown;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentifierError(String);

/// A parsed, normalised data-subject identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectIdentifier {
    /// A browser's random id, set by the SDK: `visitor:<uuid>` (canonical lower-case form).
    Visitor(Uuid),
    /// The tenant's own account id: `user:<id>`, 1–128 printable characters, no whitespace.
    User(String),
    /// An email address, trimmed and lower-cased.
    Email(String),
    /// A phone number in E.164 form (`+` and 8–15 digits; ITU-T E.164 §6).
    Phone(String),
}

/// The per-tenant secret used to pseudonymise email and phone identifiers.
#[derive(Clone)]
pub struct SubjectKey(Vec<u8>);

impl SubjectKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

/// The pattern of subject identifiers (JSON Schema / ECMA-262 syntax), exactly what
/// [`SubjectIdentifier::parse`] accepts; the whole identifier is at most 260 characters.
pub const SUBJECT_PATTERN: &str = concat!(
    "^\\s*(visitor:\\s*[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    "|user:\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f\\uFFFD]{1,128}",
    "|email:\\s*[^@\\s\\x00-\\x1f\\x7f-\\x9f\\uFFFD]{1,64}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+",
    "|phone:\\s*\\+[1-9][0-9]{7,14})\\s*$"
);

/// The longest identifier accepted, in characters (`email:` and a 254-octet address,
/// RFC 5321 §4.5.3.1.3).
pub const MAX_SUBJECT_CHARS: usize = 260;

super::string_schema!(SubjectIdentifier, pattern: SUBJECT_PATTERN, min: 6, max: MAX_SUBJECT_CHARS,
    "A data subject: visitor:<uuid>, user:<id>, email:<address> (lower-cased before use) or phone:<E.164>.",
    example: "email:ada@example.com");

impl SubjectIdentifier {
    /// Parses `kind:value`, exactly the language of [`SUBJECT_PATTERN`] up to
    /// [`MAX_SUBJECT_CHARS`]. Errors say what is wrong; they never repeat the value, which may
    /// be an email address or a phone number in the wrong place (`visitor:ada@example.com`, an
    /// import's wrong column): they go back in problem bodies, and into whatever logs those.
    /// Only a kind made of letters, digits, `_` and `-` is repeated, at most 80 characters.
    ///
    /// Whitespace around the identifier and around its value (`email: ada@example.com `) is
    /// trimmed, as exports from CRMs carry it (issue 11, item 9); whitespace inside stays an error.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let err = |m: String| Err(IdentifierError(m));
        let raw = raw.trim();
        let Some((kind, value)) = raw.split_once(':') else {
            return err(
                "is not a subject (kind:value): use visitor:<uuid>, user:<id>, email:<address> or phone:<E.164>".into(),
            );
        };
        if raw.chars().count() > MAX_SUBJECT_CHARS {
            return err(format!("a subject is at most {MAX_SUBJECT_CHARS} characters"));
        }
        let value = value.trim();
        match kind {
            "visitor" => parse_hyphenated_uuid(value).map(Self::Visitor).ok_or_else(|| {
                IdentifierError(format!(
                    "the visitor id is not a UUID: visitor ids are hyphenated UUIDs, 36 characters (this one has {})",
                    value.chars().count()
                ))
            }),
            "user" => {
                let ok = !value.is_empty() && value.chars().count() <= 128 && value.chars().all(is_visible);
                if ok {
                    Ok(Self::User(value.to_owned()))
                } else {
                    err("user ids are 1 to 128 characters without whitespace, control or invisible format characters"
                        .into())
                }
            }
            "email" => normalise_email(value).map(Self::Email).map_err(IdentifierError),
            "phone" => normalise_phone(value).map(Self::Phone).map_err(IdentifierError),
            other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                err(format!("'{}' is not a subject kind: use visitor, user, email or phone", shown(other)))
            }
            _ => err("is not a subject kind: use visitor, user, email or phone".into()),
        }
    }

    /// The clear form (`Display`) when it is personal data stored only as a keyed hash: an
    /// email address or phone number.
    pub fn shown_personal(&self) -> Option<String> {
        matches!(self, Self::Email(_) | Self::Phone(_)).then(|| self.to_string())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Visitor(_) => "visitor",
            Self::User(_) => "user",
            Self::Email(_) => "email",
            Self::Phone(_) => "phone",
        }
    }

    /// The form kept in the database: visitor and user ids as they are, email and phone as
    /// `email:h:<64 hex>` / `phone:h:<64 hex>`, the HMAC-SHA256 of the normalised value.
    pub fn stored_form(&self, key: &SubjectKey) -> String {
        match self {
            Self::Visitor(id) => format!("visitor:{id}"),
            Self::User(id) => format!("user:{id}"),
            Self::Email(v) | Self::Phone(v) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
                mac.update(self.kind().as_bytes());
                mac.update(b":");
                mac.update(v.as_bytes());
                format!("{}:h:{}", self.kind(), hex::encode(mac.finalize().into_bytes()))
            }
        }
    }
}

impl fmt::Display for SubjectIdentifier {
    /// The normalised clear form, e.g. `email:ada@example.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Visitor(id) => write!(f, "visitor:{id}"),
            Self::User(v) | Self::Email(v) | Self::Phone(v) => write!(f, "{}:{v}", self.kind()),
        }
    }
}

/// Not whitespace (every space separator, Zs, is), not a control character, not an invisible
/// character ([`is_invisible`]), and not U+FFFD, which stands in for bytes that were not UTF-8
/// (a percent-encoded path with invalid UTF-8 decodes to it).
fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !is_invisible(c) && c != char::REPLACEMENT_CHARACTER
}

/// Characters that print as nothing: the format characters (General Category Cf) and the
/// default-ignorable code points (`Default_Ignorable_Code_Point`, Unicode 16 DerivedCoreProperties,
/// UAX #44 §5.3: joiners, variation selectors, fillers, tags), and U+2800, which renders blank.
/// With them two ids that print alike would name two people (`user:42` and `user:4\u{200B}2`),
/// and the bidi controls (U+202A–U+202E, U+2066–U+2069) make one id print as another.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A UUID in its hyphenated 8-4-4-4-12 form (RFC 9562 §4), any case.
pub fn parse_hyphenated_uuid(raw: &str) -> Option<Uuid> {
    let b = raw.as_bytes();
    let shaped = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    if shaped {
        Uuid::try_parse(raw).ok()
    } else {
        None
    }
}

/// Lower-cases an address after checking its shape: a local part of 1–64 characters without
/// `@`, whitespace or control characters, and an ASCII domain of two or more labels of
/// letters, digits and hyphens (internationalised domains in their `xn--` form). Lower-casing
/// the local part is a deliberate normalisation: providers treat it case-insensitively, and
/// one person must not become two subjects.
fn normalise_email(raw: &str) -> Result<String, String> {
    let (local, domain) = raw.split_once('@').ok_or("is not an email address: it has no @")?;
    let local_ok = (1..=64).contains(&local.chars().count()) && local.chars().all(|c| c != '@' && is_visible(c));
    if !local_ok {
        return Err("is not an email address: the part before @ must be 1 to 64 visible characters".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !domain_ok {
        return Err("is not an email address: the domain must be two or more labels of ASCII letters, digits \
                    and hyphens (an internationalised domain in its xn-- form)"
            .into());
    }
    Ok(raw.to_lowercase())
}

/// E.164 (ITU-T E.164 §6): `+`, a first digit 1–9, and 8 to 15 digits in all, nothing else.
fn normalise_phone(raw: &str) -> Result<String, String> {
    let digits = raw.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("is not an E.164 phone number (+ and country code, 8 to 15 digits, no spaces)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SubjectKey {
        SubjectKey::from_bytes(b"tenant-secret".to_vec())
    }

    #[test]
    fn emails_are_normalised_before_hashing() {
        let a = SubjectIdentifier::parse("email:Ada@Example.COM").unwrap();
        let b = SubjectIdentifier::parse("email:ada@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "email:ada@example.com");
        let stored = a.stored_form(&key());
        assert!(stored.starts_with("email:h:") && stored.len() == "email:h:".len() + 64);
        assert!(!stored.contains("ada"), "the address must not be stored in the clear");
    }

    #[test]
    fn the_keyed_hash_depends_on_the_tenant_secret() {
        let id = SubjectIdentifier::parse("phone:+49301234567").unwrap();
        assert_eq!(id.to_string(), "phone:+49301234567");
        let other = SubjectKey::from_bytes(b"another tenant".to_vec());
        assert_ne!(id.stored_form(&key()), id.stored_form(&other));
    }

    /// Issue 11, item 9: identifiers as people write them (CRM exports carry spaces).
    #[test]
    fn surrounding_whitespace_is_trimmed_inner_whitespace_is_not() {
        let a = SubjectIdentifier::parse("  email: Ada@Example.com\t").unwrap();
        assert_eq!(a, SubjectIdentifier::parse("email:ada@example.com").unwrap());
        assert_eq!(SubjectIdentifier::parse(" user:42 ").unwrap().to_string(), "user:42");
        assert_eq!(SubjectIdentifier::parse("phone: +4930123456 ").unwrap().to_string(), "phone:+4930123456");
        assert!(SubjectIdentifier::parse("user:4 2").is_err());
        assert!(SubjectIdentifier::parse("email:a da@example.com").is_err());
    }

    #[test]
    fn visitor_and_user_ids_are_kept_as_given() {
        let v = SubjectIdentifier::parse("visitor:6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(v.stored_form(&key()), "visitor:6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert_eq!(SubjectIdentifier::parse("user:42").unwrap().stored_form(&key()), "user:42");
    }

    /// The parser and the OpenAPI pattern describe one language.
    #[test]
    fn the_parser_accepts_exactly_the_documented_pattern() {
        let pattern = regex::Regex::new(SUBJECT_PATTERN).unwrap();
        let long_user = format!("user:{}", "x".repeat(128));
        let long_email = format!("email:{}@{}.com", "a".repeat(64), "b".repeat(185));
        let samples = [
            "visitor:6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "visitor:6f9619ff8b86d011b42d00c04fc964ff",
            "visitor:",
            "user:42",
            "user:a b",
            "user:",
            long_user.as_str(),
            "user:\u{85}x",
            "user:é",
            "email:ada@example.com",
            "email:Ada.Lovelace+tag@mail.example.co.uk",
            "email:a@b",
            "email:a@@b.c",
            "email:a@b..c",
            "email:@b.c",
            "email:a@-.-",
            "email:a b@c.d",
            "email:ü@xn--bcher-kva.example",
            "email:a@bücher.de",
            long_email.as_str(),
            "phone:+4930123456",
            "phone:+012345678",
            "phone:+1234567",
            "phone:+1234567890123456",
            "phone:4930123456",
            "fax:+4930123456",
            "",
            "visitor",
            "email:a@b.c\n",
            " email: Ada@Example.com \t",
            "\tvisitor: 6f9619ff-8b86-d011-b42d-00c04fc964ff ",
            "user: 42 ",
            "phone: +4930123456\r\n",
            "phone:+49 30123456",
            "email :a@b.c",
        ];
        for raw in samples {
            let by_pattern = pattern.is_match(raw) && raw.chars().count() <= MAX_SUBJECT_CHARS;
            assert_eq!(SubjectIdentifier::parse(raw).is_ok(), by_pattern, "{raw:?}");
        }
    }

    #[test]
    fn malformed_identifiers_say_why() {
        let cases = [
            ("ada@example.com", "not a subject"),
            ("visitor:123", "not a UUID"),
            ("email:ada", "not an email address"),
            ("email:a b@example.com", "not an email address"),
            ("phone:0301234567", "E.164"),
            ("phone:+49 30 1234567", "no spaces"),
            ("email:ada@example..com", "not an email address"),
            ("visitor:6f9619ff8b86d011b42d00c04fc964ff", "hyphenated"),
            ("phone:+1234", "E.164"),
            ("fax:+4930123456", "not a subject kind"),
            ("user:", "1 to 128"),
            ("user:a b", "without whitespace"),
            // Invisible and bidi format characters (Cf) and a space separator (Zs).
            ("user:4\u{200B}2", "without whitespace"),
            ("user:\u{FEFF}42", "without whitespace"),
            ("user:42\u{202E}", "without whitespace"),
            ("user:4\u{2060}2", "without whitespace"),
            ("user:4\u{3000}2", "without whitespace"),
            ("email:ada\u{200D}@example.com", "not an email address"),
            // Default-ignorable and blank-looking characters that are not Cf.
            ("user:ada\u{034F}x", "without whitespace"),
            ("user:ada\u{FE0F}x", "without whitespace"),
            ("user:ada\u{3164}x", "without whitespace"),
            ("user:ada\u{2800}x", "without whitespace"),
        ];
        for (input, expected) in cases {
            let err = SubjectIdentifier::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
