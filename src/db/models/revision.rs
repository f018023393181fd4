use super::{corrupt, utc};
use crate::db::schema::policy_revisions;
use crate::db::AnyConnection;
use crate::domain::{PolicyKey, PurposeKey, Revision, RevisionDate};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

/// A stored policy revision. Revisions are immutable once published: what a person agreed to
/// must stay provable. `purposes` is a JSON array of purpose keys, NULL for all purposes.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = policy_revisions)]
pub struct RevisionRow {
    pub id: String,
    pub tenant_id: String,
    pub policy_key: String,
    pub revision_date: String,
    pub effective_at: NaiveDateTime,
    pub url: String,
    pub sha256: Option<String>,
    pub requires_reconsent: bool,
    pub purposes: Option<String>,
    pub created_at: NaiveDateTime,
}

impl RevisionRow {
    pub fn to_domain(&self) -> QueryResult<Revision> {
        let purposes = match &self.purposes {
            None => None,
            Some(json) => {
                let keys: Vec<String> = serde_json::from_str(json).map_err(|_| corrupt("revision purposes", json))?;
                Some(
                    keys.iter()
                        .map(|k| PurposeKey::parse(k).map_err(|_| corrupt("purpose key", k)))
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        Ok(Revision {
            policy_key: PolicyKey::parse(&self.policy_key).map_err(|_| corrupt("policy key", &self.policy_key))?,
            revision_date: RevisionDate::parse(&self.revision_date)
                .map_err(|_| corrupt("revision date", &self.revision_date))?,
            effective_at: utc(self.effective_at),
            requires_reconsent: self.requires_reconsent,
            purposes,
        })
    }

    pub fn effective_at_utc(&self) -> DateTime<Utc> {
        utc(self.effective_at)
    }
}

impl RevisionRow {
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(policy_revisions::table).values(self).execute(conn).map(drop)
    }

    /// Revisions of one policy, oldest first.
    pub fn list_for_policy(conn: &mut AnyConnection, tenant_id: &str, policy_key: &str) -> QueryResult<Vec<Self>> {
        policy_revisions::table
            .filter(policy_revisions::tenant_id.eq(tenant_id))
            .filter(policy_revisions::policy_key.eq(policy_key))
            .order(policy_revisions::revision_date.asc())
            .select(Self::as_select())
            .load(conn)
    }

    /// Every revision of the tenant, including those not yet in force, oldest first.
    pub fn all(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Vec<Self>> {
        policy_revisions::table
            .filter(policy_revisions::tenant_id.eq(tenant_id))
            .order((policy_revisions::revision_date.asc(), policy_revisions::policy_key.asc()))
            .select(Self::as_select())
            .load(conn)
    }

    /// The latest revision in force per policy key, by policy key.
    pub fn current(rows: &[Self]) -> Vec<&Self> {
        let mut latest: std::collections::BTreeMap<&str, &Self> = Default::default();
        for row in rows {
            let slot = latest.entry(row.policy_key.as_str()).or_insert(row);
            if row.revision_date > slot.revision_date {
                *slot = row;
            }
        }
        latest.into_values().collect()
    }
}
