//! Secrets at rest (issue 10, security 2): the installation's instance keys (the HS256 keys of
//! management tokens and unsubscribe links), sites' identity secrets and webhooks' signing
//! secrets are stored sealed with AES-256-GCM (the `aes-gcm` crate), never in clear beside the
//! data they protect.
//!
//! The key (32 bytes) comes from the setting `secrets.key` (`CONSENTRY__SECRETS__KEY`, base64url)
//! or from a key file (`secrets.key_file`; default `secrets.key` beside the SQLite database,
//! `data/secrets.key` with PostgreSQL), created with mode 0600 on first start like the receipt
//! key file. A missing file while the database holds sealed secrets, or a key that does not
//! open them, stops start-up with a message saying so: nothing is served with a wrong key.
//!
//! A sealed value is `enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`; the key id is the
//! first 8 bytes of the key's SHA-256, in hex (it names the key in messages, it does not reveal
//! it). The associated data is where the value lives (`instance_keys/<name>`,
//! `sites.identity_secret/<site id>`, `webhooks.secret/<webhook id>`), so a sealed value copied
//! to another row does not open there. Values stored in clear by earlier releases are still read
//! as they are, and sealed at start ([`seal_plaintext_rows`], run with the migrations).

use crate::db::schema::{instance_keys, sites, webhooks};
use crate::db::AnyConnection;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How every sealed value begins.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Why the secrets key could not be loaded, or does not fit the database.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets.key (CONSENTRY__SECRETS__KEY): {0}")]
    BadSetting(String),
    #[error("secrets key file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("secrets key file {0}: not a key file ({1}); it must hold 32 bytes, base64url")]
    Corrupt(PathBuf, String),
    #[error(
        "the secrets key file {path} does not exist, but the database holds secrets sealed with key {kid}: \
         restore that file (or set secrets.key / CONSENTRY__SECRETS__KEY to that key); refusing to start without it"
    )]
    Missing { path: PathBuf, kid: String },
    #[error(
        "the secrets key from {source_} (key id {given}) does not open the secrets stored in the database \
         ({what}, sealed with key {stored}): wrong key file or CONSENTRY__SECRETS__KEY; refusing to start with it"
    )]
    WrongKey { source_: String, given: String, stored: String, what: String },
    #[error("the stored {what} cannot be opened: {why}")]
    Unreadable { what: String, why: OpenError },
    #[error("a stored key is not usable: {0}")]
    BadKey(String),
    #[error("cannot read the stored secrets: {0}")]
    Db(#[from] diesel::result::Error),
}

/// Why one stored value did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("it was sealed with key {0}, not with the key in use")]
    OtherKey(String),
    #[error("it does not authenticate (tampered with, moved from another row, or a wrong key)")]
    Tampered,
    #[error("it is not a sealed value")]
    Malformed,
}

/// Seals and opens stored secrets with the installation's key. Cheap to share (`Arc`).
pub struct SecretBox {
    cipher: Aes256Gcm,
    kid: String,
    /// Where the key came from, for messages (never the key).
    source: String,
}

fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

fn parse_key(raw: &str) -> Result<[u8; 32], String> {
    let bytes = B64.decode(raw.trim().trim_end_matches('=')).map_err(|_| "not base64url".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{} bytes; the key is 32", bytes.len()))
}

/// The key file's path: the setting, else beside the SQLite database, else `data/`.
pub fn key_file_path(settings: &crate::config::Settings) -> PathBuf {
    if let Some(path) = &settings.secrets.key_file {
        return path.clone();
    }
    match crate::db::DatabaseUrl::parse(&settings.database_url) {
        Ok(crate::db::DatabaseUrl::Sqlite(db)) => {
            db.parent().map(Path::to_path_buf).unwrap_or_default().join("secrets.key")
        }
        _ => PathBuf::from("data").join("secrets.key"),
    }
}

impl SecretBox {
    /// A box for `key`; `source` says where it came from (for messages).
    pub fn from_key(key: [u8; 32], source: impl Into<String>) -> Self {
        Self { cipher: Aes256Gcm::new(&key.into()), kid: key_id(&key), source: source.into() }
    }

    /// The key id written in sealed values.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Loads the key (the setting, else the key file, creating it on first start when the
    /// database holds no sealed secret) and checks that it opens what the database holds.
    pub fn load(settings: &crate::config::Settings, conn: &mut AnyConnection) -> Result<Self, SecretsError> {
        let secrets = if let Some(given) = &settings.secrets.key {
            let key = parse_key(given.expose()).map_err(SecretsError::BadSetting)?;
            Self::from_key(key, "secrets.key")
        } else {
            let path = key_file_path(settings);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let key = parse_key(&text).map_err(|e| SecretsError::Corrupt(path.clone(), e))?;
                    warn_if_readable_by_others(&path);
                    Self::from_key(key, format!("the key file {}", path.display()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some((_, _, stored)) = first_sealed(conn)? {
                        return Err(SecretsError::Missing { path, kid: sealed_kid(&stored).unwrap_or("?").into() });
                    }
                    let mut key = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                    let mut text = B64.encode(key);
                    text.push('\n');
                    let io = |e| SecretsError::Io(path.clone(), e);
                    if !crate::receipts::create_private_file(&path, text.as_bytes()).map_err(io)? {
                        // Another instance starting at the same moment created it first: use it.
                        let text = std::fs::read_to_string(&path).map_err(io)?;
                        key = parse_key(&text).map_err(|e| SecretsError::Corrupt(path.clone(), e))?;
                    }
                    Self::from_key(key, format!("the key file {}", path.display()))
                }
                Err(e) => return Err(SecretsError::Io(path, e)),
            }
        };
        secrets.check(conn)?;
        Ok(secrets)
    }

    /// Opens one sealed value of the database, if any: a wrong key is found here, at start.
    fn check(&self, conn: &mut AnyConnection) -> Result<(), SecretsError> {
        if let Some((what, context, stored)) = first_sealed(conn)? {
            if self.open(&context, &stored).is_err() {
                return Err(SecretsError::WrongKey {
                    source_: self.source.clone(),
                    given: self.kid.clone(),
                    stored: sealed_kid(&stored).unwrap_or("?").into(),
                    what,
                });
            }
        }
        Ok(())
    }

    /// Seals `plaintext` for the place `context` (see the module's documentation).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .expect("AES-GCM seals any message shorter than 64 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", self.kid, B64.encode(bytes))
    }

    /// Opens a stored value of the place `context`; a value stored in clear (by an earlier
    /// release, not yet sealed) is returned as it is.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let (kid, data) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        if kid != self.kid {
            return Err(OpenError::OtherKey(kid.to_owned()));
        }
        let bytes = B64.decode(data).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: context.as_bytes() })
            .map_err(|_| OpenError::Tampered)?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }
}

/// The associated data of an instance key.
pub fn instance_key_context(name: &str) -> String {
    format!("instance_keys/{name}")
}

/// The associated data of a site's identity secret.
pub fn identity_secret_context(site_id: &str) -> String {
    format!("sites.identity_secret/{site_id}")
}

/// The associated data of a webhook's signing secret.
pub fn webhook_secret_context(webhook_id: &str) -> String {
    format!("webhooks.secret/{webhook_id}")
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

fn sealed_kid(stored: &str) -> Option<&str> {
    stored.strip_prefix(SEALED_PREFIX)?.split_once(':').map(|(kid, _)| kid)
}

fn sealed_like() -> String {
    format!("{SEALED_PREFIX}%")
}

/// One sealed value of the database, if any: (what it is, its context, the stored value).
fn first_sealed(conn: &mut AnyConnection) -> QueryResult<Option<(String, String, String)>> {
    if let Some((name, secret)) = instance_keys::table
        .filter(instance_keys::secret.like(sealed_like()))
        .order(instance_keys::name.asc())
        .select((instance_keys::name, instance_keys::secret))
        .first::<(String, String)>(conn)
        .optional()?
    {
        return Ok(Some((format!("instance key '{name}'"), instance_key_context(&name), secret)));
    }
    if let Some((id, Some(secret))) = sites::table
        .filter(sites::identity_secret.like(sealed_like()))
        .select((sites::id, sites::identity_secret))
        .first::<(String, Option<String>)>(conn)
        .optional()?
    {
        return Ok(Some((format!("the identity secret of site {id}"), identity_secret_context(&id), secret)));
    }
    if let Some((id, secret)) = webhooks::table
        .filter(webhooks::secret.like(sealed_like()))
        .select((webhooks::id, webhooks::secret))
        .first::<(String, String)>(conn)
        .optional()?
    {
        return Ok(Some((format!("the secret of webhook {id}"), webhook_secret_context(&id), secret)));
    }
    Ok(None)
}

/// Seals every secret still stored in clear (rows of earlier releases), in one write
/// transaction; returns how many were sealed. Each update applies only if the row still holds
/// the value read, so instances starting together do not seal a value twice.
pub fn seal_plaintext_rows(conn: &mut AnyConnection, secrets: &SecretBox) -> QueryResult<usize> {
    crate::db::backend::write_transaction(conn, |conn| {
        let mut sealed = 0;
        let keys: Vec<(String, String)> = instance_keys::table
            .filter(instance_keys::secret.not_like(sealed_like()))
            .select((instance_keys::name, instance_keys::secret))
            .load(conn)?;
        for (name, plain) in keys {
            let value = secrets.seal(&instance_key_context(&name), &plain);
            sealed += diesel::update(instance_keys::table.find(&name).filter(instance_keys::secret.eq(&plain)))
                .set(instance_keys::secret.eq(value))
                .execute(conn)?;
        }
        let identity: Vec<(String, Option<String>)> = sites::table
            .filter(sites::identity_secret.is_not_null().and(sites::identity_secret.not_like(sealed_like())))
            .select((sites::id, sites::identity_secret))
            .load(conn)?;
        for (id, plain) in identity {
            let Some(plain) = plain else { continue };
            let value = secrets.seal(&identity_secret_context(&id), &plain);
            sealed += diesel::update(sites::table.find(&id).filter(sites::identity_secret.eq(&plain)))
                .set(sites::identity_secret.eq(Some(value)))
                .execute(conn)?;
        }
        let hooks: Vec<(String, String)> = webhooks::table
            .filter(webhooks::secret.not_like(sealed_like()))
            .select((webhooks::id, webhooks::secret))
            .load(conn)?;
        for (id, plain) in hooks {
            let value = secrets.seal(&webhook_secret_context(&id), &plain);
            sealed += diesel::update(webhooks::table.find(&id).filter(webhooks::secret.eq(&plain)))
                .set(webhooks::secret.eq(value))
                .execute(conn)?;
        }
        Ok(sealed)
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the secrets key file is readable by others than its owner; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_place_and_with_its_key() {
        let a = SecretBox::from_key([1; 32], "test");
        let sealed = a.seal("webhooks.secret/w1", "whsec_abc");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", a.kid())));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(a.open("webhooks.secret/w1", &sealed).unwrap(), "whsec_abc");
        assert!(matches!(a.open("webhooks.secret/w2", &sealed), Err(OpenError::Tampered)));
        let b = SecretBox::from_key([2; 32], "test");
        assert!(matches!(b.open("webhooks.secret/w1", &sealed), Err(OpenError::OtherKey(_))));
        assert_ne!(a.seal("x", "same"), a.seal("x", "same"), "a fresh nonce each time");
        assert_eq!(a.open("x", "legacy clear text").unwrap(), "legacy clear text");
    }

    #[test]
    fn a_key_is_32_bytes_of_base64url() {
        assert!(parse_key(&B64.encode([7u8; 32])).is_ok());
        assert!(parse_key("AAAA").unwrap_err().contains("3 bytes"));
    }
}
