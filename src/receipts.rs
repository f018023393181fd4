//! The keys that sign consent receipts (Ed25519, JWS `EdDSA`, RFC 8037), their JSON Web Key Set
//! (RFC 7517) and the check of a receipt against it.
//!
//! Keys live outside the database, never in clear next to the data: in a JSON file created with
//! mode 0600 on first start (`receipts.key_file`; default `receipt-keys.json` beside the SQLite
//! database, `data/receipt-keys.json` with PostgreSQL), or given by the setting
//! `receipts.signing_key`. Each key's `kid` is its RFC 7638 thumbprint. `consentry receipts
//! rotate-key` retires the signing key and adds a new one; a retired key's public half stays in
//! the JWKS (and receipts it signed stay valid) until its `publish_until` date, or for ever
//! without one.

use crate::domain::receipt::ReceiptClaims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use utoipa::ToSchema;

/// Why the keys could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("receipt keys at {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("receipt keys at {0}: not a key file ({1})")]
    Corrupt(PathBuf, String),
    #[error("receipts: {0}")]
    BadSetting(String),
    #[error(
        "the receipt key file {0} does not exist, but the database holds {1} signed with receipt keys: \
         restore that file (or set receipts.key_file / CONSENTRY__RECEIPTS__KEY_FILE to it); refusing to start \
         with a new key, whose signatures the published keys would not check"
    )]
    Missing(PathBuf, &'static str),
}

/// One key as the key file stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// The 32-byte Ed25519 seed, base64url without padding.
    seed: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    retired_at: Option<DateTime<Utc>>,
    /// A retired key leaves the JWKS after this day (UTC); absent: never.
    #[serde(default)]
    publish_until: Option<NaiveDate>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// A public key of the set: an Ed25519 JWK (RFC 8037 §2).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// RFC 7638 thumbprint of the key.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`. Optional in a JWKS read (RFC 7517 §4.2); always written.
    #[serde(rename = "use", default = "sig")]
    pub use_: String,
}

/// `GET /.well-known/jwks.json`: the keys whose receipts verify.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Clone)]
struct PublicKey {
    jwk: Jwk,
    publish_until: Option<NaiveDate>,
    decoding: jsonwebtoken::DecodingKey,
}

/// The signing key and every published public key of this installation.
pub struct ReceiptKeys {
    kid: String,
    /// The signing key, held expanded: a signature costs one scalar multiplication (building
    /// the key from its seed or PKCS #8 form costs another, so it is done once).
    signing: SigningKey,
    /// The base64url JWS protected header, `{"alg":"EdDSA","typ":"JWT","kid":…}`, encoded once.
    header: String,
    /// The public keys: the signing key's and the file's (retired ones until their date).
    public: std::sync::RwLock<Arc<Vec<PublicKey>>>,
    /// The key file, read again for keys other instances added (see [`ReceiptKeys::refresh`]).
    path: PathBuf,
    /// When the key file was last read again (`None`: not since start, so a key not known
    /// here may be looked for at once).
    read_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// `iss` of the receipts signed here.
    pub issuer: String,
}

/// How often the key file is read again at most: a rolling restart after
/// `consentry receipts rotate-key` has new instances signing with the new key while old ones
/// still run; those read the file again when asked about a key they do not know (or for the
/// JWKS, once this old), so every instance verifies and publishes every instance's receipts.
const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How old the key list may be when the JWKS is served.
const JWKS_REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The result of checking a receipt: its claims, or why it does not verify.
#[derive(Debug)]
pub enum Verification {
    Valid { kid: String, claims: Box<ReceiptClaims> },
    Invalid { kid: Option<String>, reason: String },
}

/// The RFC 7638 thumbprint of an Ed25519 public key `x` (base64url): the `kid` of our keys.
pub fn thumbprint(x: &str) -> String {
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

fn seed_of(raw: &str) -> Result<[u8; 32], String> {
    let bytes = B64.decode(raw.trim().trim_end_matches('=')).map_err(|_| "not base64url".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{} bytes; an Ed25519 seed is 32", bytes.len()))
}

fn new_stored_key(now: DateTime<Utc>) -> StoredKey {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed);
    let x = B64.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    StoredKey {
        kid: thumbprint(&x),
        alg: "EdDSA".into(),
        seed: B64.encode(seed),
        created_at: now,
        retired_at: None,
        publish_until: None,
    }
}

fn public_key(seed: &[u8; 32], publish_until: Option<NaiveDate>) -> PublicKey {
    let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let x = B64.encode(public);
    PublicKey {
        jwk: Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: thumbprint(&x),
            x,
            alg: "EdDSA".into(),
            use_: "sig".into(),
        },
        publish_until,
        decoding: jsonwebtoken::DecodingKey::from_ed_der(&public),
    }
}

/// A key's `use` when a JWKS leaves it out.
fn sig() -> String {
    "sig".into()
}

/// The current key's seed (`given`, else the file's key not retired) and the public keys of
/// the file (and of `given`), each once.
fn keys_of(file: &KeyFile, given: Option<[u8; 32]>, path: &Path) -> Result<([u8; 32], Vec<PublicKey>), KeyError> {
    let mut public = Vec::new();
    let mut current: Option<[u8; 32]> = given;
    for key in &file.keys {
        let seed = seed_of(&key.seed).map_err(|e| KeyError::Corrupt(path.into(), format!("key {}: {e}", key.kid)))?;
        if key.retired_at.is_none() && given.is_none() {
            current = Some(seed);
        }
        public.push(public_key(&seed, key.publish_until.filter(|_| key.retired_at.is_some())));
    }
    let seed = current.ok_or_else(|| KeyError::Corrupt(path.into(), "no key is current".into()))?;
    if given.is_some() {
        public.push(public_key(&seed, None));
    }
    public.dedup_by(|a, b| a.jwk.kid == b.jwk.kid);
    Ok((seed, public))
}

/// The key file's path: the setting, else beside the SQLite database, else `data/`.
pub fn key_file_path(settings: &crate::config::Settings) -> PathBuf {
    if let Some(path) = &settings.receipts.key_file {
        return path.clone();
    }
    match crate::db::DatabaseUrl::parse(&settings.database_url) {
        Ok(crate::db::DatabaseUrl::Sqlite(db)) => {
            db.parent().map(Path::to_path_buf).unwrap_or_default().join("receipt-keys.json")
        }
        _ => PathBuf::from("data").join("receipt-keys.json"),
    }
}

fn read_file(path: &Path) -> Result<Option<KeyFile>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| KeyError::Corrupt(path.into(), e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::Io(path.into(), e)),
    }
}

/// Writes the key file readable by its owner only (see [`write_private_file`]).
fn write_file(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    let json = serde_json::to_vec_pretty(file).map_err(|e| KeyError::Corrupt(path.into(), e.to_string()))?;
    write_private_file(path, &json).map_err(|e| KeyError::Io(path.into(), e))
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600), through a temporary file
/// and a rename, so a crash leaves the old file or the new one. Creates the directory. Shared
/// by the receipt key file and the secrets key file ([`crate::secrets`]).
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_private_tmp(path, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Like [`write_private_file`], but only if `path` does not exist yet: returns false (and
/// leaves it as it is) when it does, e.g. written meanwhile by another process starting at the
/// same moment. The file appears complete or not at all (a hard link of a finished file).
pub(crate) fn create_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = write_private_tmp(path, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a new temporary file beside `path` (mode 0600, synced); returns its path.
fn write_private_tmp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    Ok(tmp)
}

/// What the database holds that receipt keys signed (receipts, retention checkpoints), if
/// anything: a key file missing then is a lost or misplaced one (a command run from another
/// directory with PostgreSQL, whose default key file is relative), not a first start.
pub fn signed_records(conn: &mut crate::db::AnyConnection) -> diesel::QueryResult<Option<&'static str>> {
    use crate::db::schema::{consent_receipts, ledger_checkpoints};
    use diesel::prelude::*;
    if consent_receipts::table.select(consent_receipts::id).first::<String>(conn).optional()?.is_some() {
        return Ok(Some("consent receipts"));
    }
    let checkpoint =
        ledger_checkpoints::table.select(ledger_checkpoints::subject_id).first::<String>(conn).optional()?;
    Ok(checkpoint.map(|_| "retention checkpoints"))
}

impl ReceiptKeys {
    /// Loads the keys: the setting's key if given (retired keys of the file stay published),
    /// else the file's current key, creating the file with a new key on first start.
    pub fn load(settings: &crate::config::Settings) -> Result<Self, KeyError> {
        let path = key_file_path(settings);
        let given = settings.receipts.signing_key.as_ref().map(|s| seed_of(s.expose())).transpose();
        let given = given.map_err(KeyError::BadSetting)?;
        let file = match (read_file(&path)?, given) {
            (Some(file), _) => file,
            (None, Some(_)) => KeyFile::default(),
            (None, None) => {
                let file = KeyFile { keys: vec![new_stored_key(Utc::now())] };
                write_file(&path, &file)?;
                file
            }
        };
        let (seed, public) = keys_of(&file, given, &path)?;
        let kid = public_key(&seed, None).jwk.kid;
        let issuer =
            settings.public_url.clone().map_or_else(|| "consentry".to_owned(), |u| u.trim_end_matches('/').to_owned());
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let header = B64.encode(header.to_string());
        Ok(Self {
            kid,
            signing: SigningKey::from_bytes(&seed),
            header,
            public: std::sync::RwLock::new(Arc::new(public)),
            path,
            read_at: std::sync::Mutex::new(None),
            issuer,
        })
    }

    /// The public keys now.
    fn public(&self) -> Arc<Vec<PublicKey>> {
        self.public.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the key file again if it was last read more than `after` ago, for keys another
    /// instance added (a rotation during a rolling restart). The signing key stays; a file that
    /// cannot be read now leaves the keys as they were. Returns whether it was read.
    fn refresh(&self, after: std::time::Duration) -> bool {
        {
            let mut read_at = self.read_at.lock().unwrap_or_else(|e| e.into_inner());
            if read_at.is_some_and(|at| at.elapsed() < after) {
                return false;
            }
            *read_at = Some(std::time::Instant::now());
        }
        let Ok(Some(file)) = read_file(&self.path) else { return false };
        let Ok((_, mut keys)) = keys_of(&file, None, &self.path) else { return false };
        let current = self.public();
        for key in current.iter() {
            if !keys.iter().any(|k| k.jwk.kid == key.jwk.kid) {
                keys.push(key.clone());
            }
        }
        *self.public.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        true
    }

    /// The published key named `kid`, reading the key file again (at most once a second) when
    /// it is not known here.
    fn published_key(&self, kid: &str, today: NaiveDate) -> Option<jsonwebtoken::DecodingKey> {
        let find = |keys: &[PublicKey]| {
            keys.iter()
                .filter(|k| k.publish_until.is_none_or(|until| today <= until))
                .find(|k| k.jwk.kid == kid)
                .map(|k| k.decoding.clone())
        };
        find(&self.public()).or_else(|| if self.refresh(REREAD_AFTER) { find(&self.public()) } else { None })
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as a compact JWS (`{"alg":"EdDSA","typ":"JWT","kid":…}`).
    pub fn sign(&self, claims: &ReceiptClaims) -> Result<String, serde_json::Error> {
        self.sign_claims(claims)
    }

    /// Every public key this installation knows (its key file's, and the configured one),
    /// published or not: a retired key leaves [`ReceiptKeys::jwks`] after its `publish_until`
    /// date, but what it signed (checkpoints, receipts in proof bundles) must still verify.
    pub fn history(&self) -> Jwks {
        Jwks { keys: self.public().iter().map(|k| k.jwk.clone()).collect() }
    }

    /// The public key of the signing key.
    pub fn signing_jwk(&self) -> Jwk {
        self.public().iter().find(|k| k.jwk.kid == self.kid).map(|k| k.jwk.clone()).unwrap_or_else(|| {
            let public = self.signing.verifying_key().to_bytes();
            let x = B64.encode(public);
            Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                kid: thumbprint(&x),
                x,
                alg: "EdDSA".into(),
                use_: "sig".into(),
            }
        })
    }

    /// The public keys published on `today` (UTC).
    /// (The key file is read again first when the list is older than a minute: keys added by
    /// another instance's rotation are published here too.)
    pub fn jwks(&self, today: NaiveDate) -> Jwks {
        self.refresh(JWKS_REREAD_AFTER);
        let keys = self.public();
        Jwks {
            keys: keys
                .iter()
                .filter(|k| k.publish_until.is_none_or(|until| today <= until))
                .map(|k| k.jwk.clone())
                .collect(),
        }
    }

    /// Checks a compact JWS against the keys published on `today`: its `kid` must name one,
    /// its `alg` be `EdDSA`, its signature hold and its claims be a receipt's.
    pub fn verify(&self, jws: &str, today: NaiveDate) -> Verification {
        verify_jws(jws, |kid| self.published_key(kid, today))
    }

    /// Checks any compact JWS signed with a key published on `today` (a presentation token)
    /// and decodes its claims as `T`. Errors: why it does not verify, one sentence.
    pub fn verify_claims<T: serde::de::DeserializeOwned>(&self, jws: &str, today: NaiveDate) -> Result<T, String> {
        verify_as::<T>(jws, |kid| self.published_key(kid, today))
            .map(|(_, claims)| claims)
            .map_err(|(_, reason)| reason)
    }

    /// Signs any claims with the receipt key (receipts; the attestation of a proof bundle; presentation tokens): a
    /// compact JWS (RFC 7515 §7.1), `header.payload.signature` in base64url without padding, the
    /// signature Ed25519 over `header.payload` (RFC 8037 §3.1).
    ///
    /// Errors: claims that do not serialise to JSON.
    pub fn sign_claims<T: Serialize>(&self, claims: &T) -> Result<String, serde_json::Error> {
        Ok(compact_jws(&self.header, &serde_json::to_vec(claims)?, &self.signing))
    }
}

/// A compact JWS of `payload` under the base64url protected `header`, signed with `key`.
fn compact_jws(header: &str, payload: &[u8], key: &SigningKey) -> String {
    let mut jws = String::with_capacity(header.len() + payload.len().div_ceil(3) * 4 + 90);
    jws.push_str(header);
    jws.push('.');
    B64.encode_string(payload, &mut jws);
    let signature = key.sign(jws.as_bytes());
    jws.push('.');
    B64.encode_string(signature.to_bytes(), &mut jws);
    jws
}

/// Checks a compact EdDSA JWS against a key set alone (offline: a proof bundle carries its
/// JWKS) and decodes its claims as `T`.
pub fn verify_with_jwks<T: serde::de::DeserializeOwned>(jws: &str, jwks: &Jwks) -> Result<(String, T), String> {
    verify_as::<T>(jws, |kid| {
        jwks.keys
            .iter()
            .find(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519")
            .and_then(|k| jsonwebtoken::DecodingKey::from_ed_components(&k.x).ok())
    })
    .map_err(|(_, reason)| reason)
}

fn verify_jws(jws: &str, key: impl Fn(&str) -> Option<jsonwebtoken::DecodingKey>) -> Verification {
    match verify_as::<ReceiptClaims>(jws, key) {
        Ok((kid, claims)) => Verification::Valid { kid, claims: Box::new(claims) },
        Err((kid, reason)) => Verification::Invalid { kid, reason },
    }
}

fn verify_as<T: serde::de::DeserializeOwned>(
    jws: &str,
    key: impl Fn(&str) -> Option<jsonwebtoken::DecodingKey>,
) -> Result<(String, T), (Option<String>, String)> {
    let header = jsonwebtoken::decode_header(jws.trim()).map_err(|_| (None, "not a compact JWS".to_owned()))?;
    let kid = header.kid.clone();
    let invalid = |reason: String| (kid.clone(), reason);
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err(invalid(format!("alg {:?} is not EdDSA", header.alg)));
    }
    let Some((name, decoding)) = kid.as_deref().and_then(|k| key(k).map(|d| (k.to_owned(), d))) else {
        return Err(invalid("the header's kid names no published key".into()));
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<T>(jws.trim(), &decoding, &validation) {
        Ok(data) => Ok((name, data.claims)),
        Err(e) => Err(invalid(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the signature does not match the content".into(),
            jsonwebtoken::errors::ErrorKind::Json(_) => "the claims are not of the expected shape".into(),
            _ => "malformed JWS".into(),
        })),
    }
}

/// `consentry receipts rotate-key`: retires the current key of the file (kept in the JWKS until
/// `publish_until`, or for ever) and adds a new signing key. Returns the new `kid`. Running
/// instances sign with the new key after a restart.
pub fn rotate(path: &Path, publish_until: Option<NaiveDate>) -> Result<String, KeyError> {
    let now = Utc::now();
    // Receipts signed with the retiring key must keep verifying for a while: a date that has
    // passed (or is today) would unpublish it at once.
    if let Some(until) = publish_until.filter(|d| *d <= now.date_naive()) {
        return Err(KeyError::BadSetting(format!(
            "--publish-until {until} is not after today: receipts signed with the retired key would stop verifying at once"
        )));
    }
    let mut file = read_file(path)?.unwrap_or_default();
    for key in file.keys.iter_mut().filter(|k| k.retired_at.is_none()) {
        key.retired_at = Some(now);
        key.publish_until = publish_until;
    }
    let key = new_stored_key(now);
    let kid = key.kid.clone();
    file.keys.push(key);
    write_file(path, &file)?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8037_thumbprint_example() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc_8037_signature_example() {
        // RFC 8037 Appendix A.4: the example key signs the example payload into this JWS.
        let seed = seed_of("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let jws = compact_jws(
            &B64.encode(r#"{"alg":"EdDSA"}"#),
            b"Example of Ed25519 signing",
            &SigningKey::from_bytes(&seed),
        );
        assert_eq!(
            jws,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn a_seed_is_32_bytes_of_base64url() {
        assert!(seed_of(&B64.encode([7u8; 32])).is_ok());
        assert!(seed_of("AAAA").unwrap_err().contains("3 bytes"));
        assert!(seed_of("not base64!").is_err());
    }
}
