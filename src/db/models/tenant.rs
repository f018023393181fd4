use super::new_id;
use crate::db::schema::tenants;
use crate::db::AnyConnection;
use crate::domain::SubjectKey;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::RngCore;

/// A data controller. `subject_key` (hex, 32 bytes) keys the pseudonymisation of its
/// data subjects' email and phone identifiers.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub subject_key: String,
    pub created_at: NaiveDateTime,
}

impl Tenant {
    pub fn new(slug: &str, now: NaiveDateTime) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { id: new_id(), slug: slug.to_owned(), subject_key: hex::encode(key), created_at: now }
    }

    pub fn subject_key(&self) -> SubjectKey {
        SubjectKey::from_bytes(hex::decode(&self.subject_key).unwrap_or_else(|_| self.subject_key.clone().into_bytes()))
    }

    /// Tenant slugs: lower-case `[a-z0-9-]{1,63}`, starting with a letter or digit.
    pub fn validate_slug(slug: &str) -> Result<(), String> {
        let ok = !slug.is_empty()
            && slug.len() <= 63
            && !slug.starts_with('-')
            && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(format!("'{slug}' is not a tenant slug: use 1 to 63 of a-z, 0-9 and -"))
        }
    }
}

impl Tenant {
    pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Self>> {
        tenants::table.find(id).select(Self::as_select()).first(conn).optional()
    }

    pub fn find_by_slug(conn: &mut AnyConnection, slug: &str) -> QueryResult<Option<Self>> {
        tenants::table.filter(tenants::slug.eq(slug)).select(Self::as_select()).first(conn).optional()
    }

    /// Every tenant, by slug.
    pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<Self>> {
        tenants::table.order(tenants::slug.asc()).select(Self::as_select()).load(conn)
    }

    /// Every tenant's id.
    pub fn all_ids(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
        tenants::table.select(tenants::id).order(tenants::id.asc()).load(conn)
    }

    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(tenants::table).values(self).execute(conn).map(drop)
    }
}
