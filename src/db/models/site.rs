use super::new_id;
use crate::db::schema::sites;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::distr::{Alphanumeric, SampleString};

/// A website of a tenant. `site_key` is public (it appears in pages); `origins` is a JSON
/// array of the origins (`scheme://host[:port]`) allowed to call the public endpoints;
/// `purposes` a JSON array of the purpose keys its banner and preference centre present
/// (NULL: every purpose of the tenant).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sites)]
pub struct Site {
    pub id: String,
    pub tenant_id: String,
    pub site_key: String,
    pub name: String,
    pub origins: String,
    pub purposes: Option<String>,
    pub created_at: NaiveDateTime,
    /// The HS256 secret (hex) that signs identity tokens for this site's public endpoints.
    pub identity_secret: Option<String>,
    /// The share of page views (0 to 1) on which the SDK runs the tracker audit.
    pub audit_sample_rate: f64,
}

impl Site {
    pub fn new(
        tenant_id: &str,
        name: &str,
        origins: &[String],
        purposes: Option<&[String]>,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            id: new_id(),
            tenant_id: tenant_id.to_owned(),
            site_key: format!("pk_{}", Alphanumeric.sample_string(&mut rand::rng(), 24)),
            name: name.to_owned(),
            origins: serde_json::to_string(origins).unwrap_or_else(|_| "[]".into()),
            purposes: purposes.map(|p| serde_json::to_string(p).unwrap_or_else(|_| "[]".into())),
            created_at: now,
            identity_secret: Some(Self::new_identity_secret()),
            audit_sample_rate: 0.0,
        }
    }

    pub fn origins(&self) -> Vec<String> {
        serde_json::from_str(&self.origins).unwrap_or_default()
    }

    /// 32 random bytes, hex.
    pub fn new_identity_secret() -> String {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        hex::encode(bytes)
    }

    /// The purpose keys the site presents; `None`: all of the tenant's.
    pub fn purposes(&self) -> Option<Vec<String>> {
        self.purposes.as_deref().map(|p| serde_json::from_str(p).unwrap_or_default())
    }
}

impl Site {
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(sites::table).values(self).execute(conn).map(drop)
    }

    pub fn find_by_key(conn: &mut AnyConnection, site_key: &str) -> QueryResult<Option<Self>> {
        sites::table.filter(sites::site_key.eq(site_key)).select(Self::as_select()).first(conn).optional()
    }

    pub fn set_identity_secret(conn: &mut AnyConnection, tenant_id: &str, id: &str, secret: &str) -> QueryResult<bool> {
        diesel::update(sites::table.filter(sites::tenant_id.eq(tenant_id)).filter(sites::id.eq(id)))
            .set(sites::identity_secret.eq(Some(secret)))
            .execute(conn)
            .map(|n| n == 1)
    }

    pub fn set_origins(conn: &mut AnyConnection, id: &str, origins: &[String]) -> QueryResult<()> {
        let json = serde_json::to_string(origins).unwrap_or_else(|_| "[]".into());
        diesel::update(sites::table.find(id)).set(sites::origins.eq(json)).execute(conn).map(drop)
    }

    pub fn set_audit_sample_rate(conn: &mut AnyConnection, id: &str, rate: f64) -> QueryResult<()> {
        diesel::update(sites::table.find(id)).set(sites::audit_sample_rate.eq(rate)).execute(conn).map(drop)
    }

    pub fn list(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Self>> {
        sites::table
            .filter(sites::tenant_id.eq(tenant_id))
            .order(sites::created_at.asc())
            .select(Self::as_select())
            .load(conn)
    }
}
