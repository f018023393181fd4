use crate::db::schema::api_tokens;
use crate::db::AnyConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A management token's record: its JWT `jti` is `id`. A token whose record is missing or
/// revoked is refused, whatever its signature says.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: String,
    pub tenant_id: String,
    /// Space-separated scopes.
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    /// What the token is for, as given when it was issued over the API.
    pub label: Option<String>,
}

impl ApiToken {
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(api_tokens::table).values(self).execute(conn).map(drop)
    }

    /// A tenant's tokens, newest first.
    pub fn list(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Self>> {
        api_tokens::table
            .filter(api_tokens::tenant_id.eq(tenant_id))
            .order((api_tokens::created_at.desc(), api_tokens::id.desc()))
            .select(Self::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut AnyConnection, tenant_id: &str, id: &str) -> QueryResult<Option<Self>> {
        api_tokens::table
            .filter(api_tokens::tenant_id.eq(tenant_id))
            .filter(api_tokens::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .optional()
    }

    /// Marks the token revoked; returns whether a live token was revoked.
    pub fn revoke(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<bool> {
        diesel::update(api_tokens::table.find(id).filter(api_tokens::revoked_at.is_null()))
            .set(api_tokens::revoked_at.eq(Some(now)))
            .execute(conn)
            .map(|n| n == 1)
    }
}
