use super::corrupt;
use crate::db::schema::purposes;
use crate::db::AnyConnection;
use crate::domain::{ConsentModel, LegalBasis, Purpose, PurposeKey, PurposeKind, RegionalModels};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored purpose; `regions` is a JSON object of region code → consent model.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = purposes)]
pub struct PurposeRow {
    pub tenant_id: String,
    pub key: String,
    pub title: String,
    pub description: String,
    pub kind: String,
    pub consent_model: String,
    pub legal_basis: String,
    pub gpc_applies: bool,
    pub max_age_days: Option<i32>,
    pub regions: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// JSON array of cookie patterns.
    pub cookies: String,
    /// JSON array of host patterns.
    pub hosts: String,
    /// Days its events are kept; `None`: for ever.
    pub retention_days: Option<i32>,
}

impl PurposeRow {
    pub fn from_domain(tenant_id: &str, p: &Purpose, now: NaiveDateTime) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            key: p.key.as_str().to_owned(),
            title: p.title.clone(),
            description: p.description.clone(),
            kind: p.kind.as_str().to_owned(),
            consent_model: p.consent_model.as_str().to_owned(),
            legal_basis: p.legal_basis.as_str().to_owned(),
            gpc_applies: p.gpc_applies,
            max_age_days: p.max_age_days.map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
            regions: serde_json::to_string(&p.regions).unwrap_or_else(|_| "{}".into()),
            created_at: now,
            updated_at: now,
            cookies: serde_json::to_string(&p.cookies).unwrap_or_else(|_| "[]".into()),
            hosts: serde_json::to_string(&p.hosts).unwrap_or_else(|_| "[]".into()),
            retention_days: p.retention_days.map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        }
    }

    pub fn to_domain(&self) -> QueryResult<Purpose> {
        Ok(Purpose {
            key: PurposeKey::parse(&self.key).map_err(|_| corrupt("purpose key", &self.key))?,
            title: self.title.clone(),
            description: self.description.clone(),
            kind: PurposeKind::parse(&self.kind).ok_or_else(|| corrupt("purpose kind", &self.kind))?,
            consent_model: ConsentModel::parse(&self.consent_model)
                .ok_or_else(|| corrupt("consent model", &self.consent_model))?,
            legal_basis: LegalBasis::parse(&self.legal_basis)
                .ok_or_else(|| corrupt("legal basis", &self.legal_basis))?,
            gpc_applies: self.gpc_applies,
            max_age_days: self.max_age_days.and_then(|d| u32::try_from(d).ok()),
            regions: serde_json::from_str::<RegionalModels>(&self.regions)
                .map_err(|_| corrupt("purpose regions", &self.regions))?,
            cookies: serde_json::from_str(&self.cookies).map_err(|_| corrupt("purpose cookies", &self.cookies))?,
            hosts: serde_json::from_str(&self.hosts).map_err(|_| corrupt("purpose hosts", &self.hosts))?,
            retention_days: self.retention_days.and_then(|d| u32::try_from(d).ok()),
        })
    }
}

impl PurposeRow {
    /// All purpose rows of a tenant (with their timestamps), by key.
    pub fn list_rows(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Self>> {
        purposes::table
            .filter(purposes::tenant_id.eq(tenant_id))
            .order(purposes::key.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// All purposes of a tenant, by key.
    pub fn list(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Purpose>> {
        Self::list_rows(conn, tenant_id)?.iter().map(Self::to_domain).collect()
    }

    pub fn find(
        conn: &mut AnyConnection,
        tenant_id: &str,
        key: &str,
    ) -> QueryResult<Option<(Purpose, NaiveDateTime, NaiveDateTime)>> {
        purposes::table
            .find((tenant_id, key))
            .select(Self::as_select())
            .first(conn)
            .optional()?
            .map(|row| Ok((row.to_domain()?, row.created_at, row.updated_at)))
            .transpose()
    }

    /// Inserts or replaces the purpose; returns `true` when it was created. Call inside a
    /// write transaction (the read and the write must not interleave with another writer).
    pub fn upsert(&self, conn: &mut AnyConnection) -> QueryResult<bool> {
        let updated = diesel::update(purposes::table.find((&self.tenant_id, &self.key)))
            .set((
                purposes::title.eq(&self.title),
                purposes::description.eq(&self.description),
                purposes::kind.eq(&self.kind),
                purposes::consent_model.eq(&self.consent_model),
                purposes::legal_basis.eq(&self.legal_basis),
                purposes::gpc_applies.eq(self.gpc_applies),
                purposes::max_age_days.eq(self.max_age_days),
                purposes::regions.eq(&self.regions),
                purposes::cookies.eq(&self.cookies),
                purposes::hosts.eq(&self.hosts),
                purposes::retention_days.eq(self.retention_days),
                purposes::updated_at.eq(self.updated_at),
            ))
            .execute(conn)?;
        if updated == 1 {
            return Ok(false);
        }
        diesel::insert_into(purposes::table).values(self).execute(conn)?;
        Ok(true)
    }
}
