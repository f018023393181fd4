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
    /// The subject id of each stored identifier that is known, as (identifier, subject id).
    /// One query, whatever the number of identifiers (callers chunk very long lists).
    pub fn resolve_many(
        conn: &mut AnyConnection,
        tenant_id: &str,
        identifiers: &[&str],
    ) -> QueryResult<Vec<(String, String)>> {
        subject_identifiers::table
            .filter(subject_identifiers::tenant_id.eq(tenant_id))
            .filter(subject_identifiers::identifier.eq_any(identifiers))
            .select((subject_identifiers::identifier, subject_identifiers::subject_id))
            .load(conn)
    }

    pub fn resolve(conn: &mut AnyConnection, tenant_id: &str, identifier: &str) -> QueryResult<Option<String>> {
        subject_identifiers::table
            .find((tenant_id, identifier))
            .select(subject_identifiers::subject_id)
            .first(conn)
            .optional()
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

    /// One page of a tenant's subject ids, in id order, after `after`.
    pub fn page(conn: &mut AnyConnection, tenant_id: &str, after: &str, limit: i64) -> QueryResult<Vec<String>> {
        data_subjects::table
            .filter(data_subjects::tenant_id.eq(tenant_id))
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
