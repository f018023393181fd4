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

use super::purpose::truncate;

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

impl SubjectIdentifier {
    /// Parses `kind:value`. Errors say what is wrong, quoting at most 80 characters.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let err = |m: String| Err(IdentifierError(m));
        let Some((kind, value)) = raw.split_once(':') else {
            return err(format!(
                "'{}' is not a subject: use visitor:<uuid>, user:<id>, email:<address> or phone:<E.164>",
                truncate(raw)
            ));
        };
        match kind {
            "visitor" => match Uuid::try_parse(value) {
                Ok(id) => Ok(Self::Visitor(id)),
                Err(_) => err(format!(
                    "'{}' is not a UUID (visitor ids are UUIDs)",
                    truncate(value)
                )),
            },
            "user" => {
                let ok = !value.is_empty()
                    && value.chars().count() <= 128
                    && value.chars().all(|c| !c.is_whitespace() && !c.is_control());
                if ok {
                    Ok(Self::User(value.to_owned()))
                } else {
                    err(
                        "user ids are 1 to 128 characters without whitespace or control characters"
                            .into(),
                    )
                }
            }
            "email" => normalise_email(value)
                .map(Self::Email)
                .map_err(IdentifierError),
            "phone" => normalise_phone(value)
                .map(Self::Phone)
                .map_err(IdentifierError),
            other => err(format!(
                "'{}' is not a subject kind: use visitor, user, email or phone",
                truncate(other)
            )),
        }
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
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
                mac.update(self.kind().as_bytes());
                mac.update(b":");
                mac.update(v.as_bytes());
                format!(
                    "{}:h:{}",
                    self.kind(),
                    hex::encode(mac.finalize().into_bytes())
                )
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

/// Trims and lower-cases an address and checks its shape (`local@domain.tld`, at most 254
/// octets, RFC 5321 §4.5.3.1.3). Lower-casing the local part is a deliberate normalisation:
/// providers treat it case-insensitively, and one person must not become two subjects.
fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let bad = || format!("'{}' is not an email address", truncate(raw));
    if email.is_empty() || email.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err(bad())
    }
}

/// Strips spaces, dots, hyphens and parentheses; what is left must be `+` followed by 8 to 15
/// digits, the first not 0 (E.164 allows at most 15 digits).
fn normalise_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(compact)
    } else {
        Err(format!(
            "'{}' is not an E.164 phone number (+ and country code, 8 to 15 digits)",
            truncate(raw)
        ))
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
        let a = SubjectIdentifier::parse("email: Ada@Example.COM ").unwrap();
        let b = SubjectIdentifier::parse("email:ada@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "email:ada@example.com");
        let stored = a.stored_form(&key());
        assert!(stored.starts_with("email:h:") && stored.len() == "email:h:".len() + 64);
        assert!(
            !stored.contains("ada"),
            "the address must not be stored in the clear"
        );
    }

    #[test]
    fn the_keyed_hash_depends_on_the_tenant_secret() {
        let id = SubjectIdentifier::parse("phone:+49 30 1234567").unwrap();
        assert_eq!(id.to_string(), "phone:+49301234567");
        let other = SubjectKey::from_bytes(b"another tenant".to_vec());
        assert_ne!(id.stored_form(&key()), id.stored_form(&other));
    }

    #[test]
    fn visitor_and_user_ids_are_kept_as_given() {
        let v = SubjectIdentifier::parse("visitor:6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(
            v.stored_form(&key()),
            "visitor:6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        assert_eq!(
            SubjectIdentifier::parse("user:42")
                .unwrap()
                .stored_form(&key()),
            "user:42"
        );
    }

    #[test]
    fn malformed_identifiers_say_why() {
        let cases = [
            ("ada@example.com", "not a subject"),
            ("visitor:123", "not a UUID"),
            ("email:ada", "not an email address"),
            ("email:a b@example.com", "not an email address"),
            ("phone:0301234567", "E.164"),
            ("phone:+1234", "E.164"),
            ("fax:+4930123456", "not a subject kind"),
            ("user:", "1 to 128"),
            ("user:a b", "without whitespace"),
        ];
        for (input, expected) in cases {
            let err = SubjectIdentifier::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
