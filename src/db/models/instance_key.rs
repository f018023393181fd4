use crate::db::schema::instance_keys;
use crate::db::AnyConnection;
use chrono::Utc;
use diesel::prelude::*;
use rand::RngCore;

/// Secrets of this installation, created on first use and shared by every instance and CLI
/// command that opens the same database (e.g. the HS256 key that signs management tokens).
pub struct InstanceKey;

impl InstanceKey {
    /// The secret named `name` (64 random bytes, hex), created if it does not exist yet.
    pub fn get_or_create(conn: &mut AnyConnection, name: &str) -> QueryResult<String> {
        let find = |conn: &mut AnyConnection| {
            instance_keys::table.find(name).select(instance_keys::secret).first::<String>(conn).optional()
        };
        if let Some(secret) = find(conn)? {
            return Ok(secret);
        }
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        let inserted = diesel::insert_into(instance_keys::table)
            .values((
                instance_keys::name.eq(name),
                instance_keys::secret.eq(hex::encode(bytes)),
                instance_keys::created_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn);
        match inserted {
            // Another instance created it first: use theirs.
            Ok(_)
            | Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                find(conn)?.ok_or(diesel::result::Error::NotFound)
            }
            Err(e) => Err(e),
        }
    }
}
