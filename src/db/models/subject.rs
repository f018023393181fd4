use super::new_id;
use crate::db::schema::{data_subjects, subject_identifiers};
use crate::db::AnyConnection;
use crate::domain::ledger::GENESIS_HASH;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A data subject: a pseudonymous id that the person's identifiers point to. It carries the
/// head of the subject's event hash chain (`last_event_hash`).
pub struct DataSubject;

impl DataSubject {
    /// The subject behind a stored identifier of a tenant, if any. Run on the backend's own
    /// connection: through `AnyConnection` diesel writes out the statement's SQL on every call to
    /// find it in its statement cache (2% of a bulk check on SQLite, which resolves 10,000).
    pub fn resolve(conn: &mut AnyConnection, tenant_id: &str, identifier: &str) -> QueryResult<Option<String>> {
        let query = subject_identifiers::table.find((tenant_id, identifier)).select(subject_identifiers::subject_id);
        match conn {
            AnyConnection::Postgresql(c) => query.first(c).optional(),
            AnyConnection::Sqlite(c) => query.first(c).optional(),
        }
    }

    /// The subject id for `identifier`, creating the subject on first sight. A concurrent
    /// creation of the same identifier surfaces as a unique violation: run the transaction again.
    pub fn resolve_or_create(
        conn: &mut AnyConnection,
        tenant_id: &str,
        identifier: &str,
        now: NaiveDateTime,
    ) -> QueryResult<String> {
        if let Some(id) = Self::resolve(conn, tenant_id, identifier)? {
            return Ok(id);
        }
        let id = new_id();
        diesel::insert_into(data_subjects::table)
            .values((
                data_subjects::id.eq(&id),
                data_subjects::tenant_id.eq(tenant_id),
                data_subjects::last_event_hash.eq(GENESIS_HASH),
                data_subjects::created_at.eq(now),
            ))
            .execute(conn)?;
        diesel::insert_into(subject_identifiers::table)
            .values((
                subject_identifiers::tenant_id.eq(tenant_id),
                subject_identifiers::identifier.eq(identifier),
                subject_identifiers::subject_id.eq(&id),
                subject_identifiers::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(id)
    }

    /// The stored identifiers of each subject, as (subject id, identifier), by identifier.
    pub fn identifiers_of(
        conn: &mut AnyConnection,
        tenant_id: &str,
        subject_ids: &[&str],
    ) -> QueryResult<Vec<(String, String)>> {
        subject_identifiers::table
            .filter(subject_identifiers::tenant_id.eq(tenant_id))
            .filter(subject_identifiers::subject_id.eq_any(subject_ids))
            .order(subject_identifiers::identifier.asc())
            .select((subject_identifiers::subject_id, subject_identifiers::identifier))
            .load(conn)
    }

    /// Points `identifier` at `subject_id` (a new identifier of a known person).
    pub fn add_identifier(
        conn: &mut AnyConnection,
        tenant_id: &str,
        identifier: &str,
        subject_id: &str,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::insert_into(subject_identifiers::table)
            .values((
                subject_identifiers::tenant_id.eq(tenant_id),
                subject_identifiers::identifier.eq(identifier),
                subject_identifiers::subject_id.eq(subject_id),
                subject_identifiers::created_at.eq(now),
            ))
            .execute(conn)
            .map(drop)
    }

    /// Points an existing identifier at another subject.
    pub fn move_identifier(
        conn: &mut AnyConnection,
        tenant_id: &str,
        identifier: &str,
        subject_id: &str,
    ) -> QueryResult<()> {
        diesel::update(subject_identifiers::table.find((tenant_id, identifier)))
            .set(subject_identifiers::subject_id.eq(subject_id))
            .execute(conn)
            .map(drop)
    }

    /// Folds subject `from` into `into`: its identifiers now name `into`, and it (and whatever
    /// was merged into it before) is marked `merged_into`. Its events stay where they are.
    pub fn merge(conn: &mut AnyConnection, tenant_id: &str, from: &str, into: &str) -> QueryResult<()> {
        diesel::update(
            subject_identifiers::table
                .filter(subject_identifiers::tenant_id.eq(tenant_id))
                .filter(subject_identifiers::subject_id.eq(from)),
        )
        .set(subject_identifiers::subject_id.eq(into))
        .execute(conn)?;
        diesel::update(
            data_subjects::table
                .filter(data_subjects::tenant_id.eq(tenant_id))
                .filter(data_subjects::id.eq(from).or(data_subjects::merged_into.eq(from))),
        )
        .set(data_subjects::merged_into.eq(Some(into)))
        .execute(conn)
        .map(drop)
    }

    /// `subject_id` and every subject merged into it: whose events are this person's.
    pub fn with_merged(conn: &mut AnyConnection, tenant_id: &str, subject_id: &str) -> QueryResult<Vec<String>> {
        let mut ids: Vec<String> = data_subjects::table
            .filter(data_subjects::tenant_id.eq(tenant_id))
            .filter(data_subjects::merged_into.eq(subject_id))
            .select(data_subjects::id)
            .load(conn)?;
        ids.push(subject_id.to_owned());
        Ok(ids)
    }

    /// The subject each of `ids` is now part of: `merged_into`, or itself.
    pub fn canonical(conn: &mut AnyConnection, tenant_id: &str, ids: &[&str]) -> QueryResult<Vec<(String, String)>> {
        let rows: Vec<(String, Option<String>)> = data_subjects::table
            .filter(data_subjects::tenant_id.eq(tenant_id))
            .filter(data_subjects::id.eq_any(ids))
            .select((data_subjects::id, data_subjects::merged_into))
            .load(conn)?;
        Ok(rows.into_iter().map(|(id, into)| (id.clone(), into.unwrap_or(id))).collect())
    }

    /// One page of a tenant's subject ids (not merged away), in id order, after `after`.
    pub fn page(conn: &mut AnyConnection, tenant_id: &str, after: &str, limit: i64) -> QueryResult<Vec<String>> {
        data_subjects::table
            .filter(data_subjects::tenant_id.eq(tenant_id))
            .filter(data_subjects::merged_into.is_null())
            .filter(data_subjects::id.gt(after))
            .order(data_subjects::id.asc())
            .limit(limit)
            .select(data_subjects::id)
            .load(conn)
    }

    pub fn set_chain_head(conn: &mut AnyConnection, subject_id: &str, hash: &str) -> QueryResult<()> {
        diesel::update(data_subjects::table.find(subject_id))
            .set(data_subjects::last_event_hash.eq(hash))
            .execute(conn)
            .map(drop)
    }
}
