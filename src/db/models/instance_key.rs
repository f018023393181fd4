use crate::db::schema::instance_keys;
use crate::db::AnyConnection;
use crate::secrets::{instance_key_context, SecretBox, SecretsError};
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;

/// Secrets of this installation, created on first use and shared by every instance and CLI
/// command that opens the same database (e.g. the HS256 key that signs management tokens).
/// Stored sealed (see [`crate::secrets`]); these functions return them opened.
pub struct InstanceKey;

fn open(secrets: &SecretBox, name: &str, stored: &str) -> Result<String, SecretsError> {
    secrets
        .open(&instance_key_context(name), stored)
        .map_err(|why| SecretsError::Unreadable { what: format!("instance key '{name}'"), why })
}

impl InstanceKey {
    /// The secret named `name` (64 random bytes, hex), created if it does not exist yet.
    pub fn get_or_create(conn: &mut AnyConnection, name: &str, secrets: &SecretBox) -> Result<String, SecretsError> {
        let find = |conn: &mut AnyConnection| {
            instance_keys::table.find(name).select(instance_keys::secret).first::<String>(conn).optional()
        };
        if let Some(stored) = find(conn)? {
            return open(secrets, name, &stored);
        }
        match Self::insert_new(conn, name, secrets) {
            // Another instance created it first: use theirs.
            Ok(())
            | Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                let stored = find(conn)?.ok_or(diesel::result::Error::NotFound)?;
                open(secrets, name, &stored)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a new random secret named `name`, sealed.
    pub fn insert_new(conn: &mut AnyConnection, name: &str, secrets: &SecretBox) -> QueryResult<()> {
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        diesel::insert_into(instance_keys::table)
            .values((
                instance_keys::name.eq(name),
                instance_keys::secret.eq(secrets.seal(&instance_key_context(name), &hex::encode(bytes))),
                instance_keys::created_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn)
            .map(drop)
    }

    /// Every secret whose name is `name` or begins with `name:`, opened, as
    /// `(name, secret, created_at)`, oldest first.
    pub fn family(
        conn: &mut AnyConnection,
        name: &str,
        secrets: &SecretBox,
    ) -> Result<Vec<(String, String, NaiveDateTime)>, SecretsError> {
        let prefix = format!("{name}:");
        let rows: Vec<(String, String, NaiveDateTime)> = instance_keys::table
            .select((instance_keys::name, instance_keys::secret, instance_keys::created_at))
            .order((instance_keys::created_at.asc(), instance_keys::name.asc()))
            .load(conn)?;
        rows.into_iter()
            .filter(|(n, _, _)| n == name || n.starts_with(&prefix))
            .map(|(n, stored, at)| Ok((n.clone(), open(secrets, &n, &stored)?, at)))
            .collect()
    }
}
