use super::{corrupt, utc};
use crate::db::schema::consent_states;
use crate::db::AnyConnection;
use crate::domain::{ConsentSource, Decision, RevisionDate, StoredChoice};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// The decision in force for one (subject, purpose): the newest event by `occurred_at`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_states)]
pub struct StateRow {
    pub tenant_id: String,
    pub purpose_key: String,
    pub subject_id: String,
    pub decision: String,
    pub event_id: String,
    pub policy_revision: Option<String>,
    pub source: String,
    pub occurred_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
}

impl StateRow {
    pub fn to_choice(&self) -> QueryResult<StoredChoice> {
        choice(&self.decision, &self.source, self.policy_revision.as_deref(), self.occurred_at)
    }
}

/// The columns of a state that a check reads: what its [`StoredChoice`] is made of.
#[derive(Debug, Clone, Queryable)]
pub struct ChoiceRow {
    pub decision: String,
    pub source: String,
    pub policy_revision: Option<String>,
    pub occurred_at: NaiveDateTime,
}

impl ChoiceRow {
    pub fn to_choice(&self) -> QueryResult<StoredChoice> {
        choice(&self.decision, &self.source, self.policy_revision.as_deref(), self.occurred_at)
    }
}

impl From<StateRow> for ChoiceRow {
    fn from(row: StateRow) -> Self {
        Self {
            decision: row.decision,
            source: row.source,
            policy_revision: row.policy_revision,
            occurred_at: row.occurred_at,
        }
    }
}

/// A stored choice from its columns. Errors: a stored value that does not parse.
fn choice(
    decision: &str,
    source: &str,
    policy_revision: Option<&str>,
    occurred_at: NaiveDateTime,
) -> QueryResult<StoredChoice> {
    Ok(StoredChoice {
        decision: Decision::parse(decision).ok_or_else(|| corrupt("decision", decision))?,
        source: ConsentSource::parse(source).ok_or_else(|| corrupt("source", source))?,
        policy_revision: match policy_revision {
            Some(r) => Some(RevisionDate::parse(r).map_err(|_| corrupt("revision date", r))?),
            None => None,
        },
        occurred_at: utc(occurred_at),
    })
}

impl StateRow {
    /// Every purpose's state of one subject.
    pub fn for_subject(conn: &mut AnyConnection, tenant_id: &str, subject_id: &str) -> QueryResult<Vec<Self>> {
        consent_states::table
            .filter(consent_states::tenant_id.eq(tenant_id))
            .filter(consent_states::subject_id.eq(subject_id))
            .select(Self::as_select())
            .load(conn)
    }

    /// The states of the subject behind a stored identifier (every purpose's, or only
    /// `purpose`'s); empty for an unknown identifier. One query: the identifier is resolved by
    /// a scalar subquery, so every condition is an equality on an index's leading columns and
    /// the plan does not depend on statistics (a join of the two tables let PostgreSQL scan
    /// every state of the tenant while they had none).
    pub fn for_identifier(
        conn: &mut AnyConnection,
        tenant_id: &str,
        identifier: &str,
        purpose: Option<&str>,
    ) -> QueryResult<Vec<Self>> {
        use crate::db::schema::subject_identifiers as si;
        let subject = si::table
            .filter(si::tenant_id.eq(tenant_id))
            .filter(si::identifier.eq(identifier))
            .select(si::subject_id)
            .single_value();
        let query = consent_states::table
            .filter(consent_states::tenant_id.eq(tenant_id))
            .filter(consent_states::subject_id.nullable().eq(subject))
            .select(Self::as_select());
        match purpose {
            Some(purpose) => query.filter(consent_states::purpose_key.eq(purpose)).load(conn),
            None => query.load(conn),
        }
    }

    /// Removes a merged-away subject's states (they now live under the subject it joined).
    pub fn delete_for_subject(conn: &mut AnyConnection, tenant_id: &str, subject_id: &str) -> QueryResult<()> {
        diesel::delete(
            consent_states::table
                .filter(consent_states::tenant_id.eq(tenant_id))
                .filter(consent_states::subject_id.eq(subject_id)),
        )
        .execute(conn)
        .map(drop)
    }

    /// Writes the state; the caller holds the subject's lock (see `backend::lock_subject`).
    pub fn save(&self, conn: &mut AnyConnection, exists: bool) -> QueryResult<()> {
        if exists {
            diesel::update(consent_states::table.find((&self.tenant_id, &self.purpose_key, &self.subject_id)))
                .set((
                    consent_states::decision.eq(&self.decision),
                    consent_states::event_id.eq(&self.event_id),
                    consent_states::policy_revision.eq(&self.policy_revision),
                    consent_states::source.eq(&self.source),
                    consent_states::occurred_at.eq(self.occurred_at),
                    consent_states::recorded_at.eq(self.recorded_at),
                ))
                .execute(conn)
                .map(drop)
        } else {
            diesel::insert_into(consent_states::table).values(self).execute(conn).map(drop)
        }
    }
}

/// How many grants of `purposes` (all purposes when empty) given before `before` are in force
/// for a tenant, and for how many data subjects: (grants, subjects). An index range per
/// purpose on `consent_states`.
pub fn grants_before(
    conn: &mut AnyConnection,
    tenant_id: &str,
    purposes: &[String],
    before: NaiveDateTime,
) -> QueryResult<(i64, i64)> {
    let mut query = consent_states::table
        .filter(consent_states::tenant_id.eq(tenant_id))
        .filter(consent_states::decision.eq("granted"))
        .filter(consent_states::occurred_at.lt(before))
        .into_boxed();
    if !purposes.is_empty() {
        query = query.filter(consent_states::purpose_key.eq_any(purposes));
    }
    query
        .select((diesel::dsl::count_star(), diesel::dsl::count(consent_states::subject_id).aggregate_distinct()))
        .first(conn)
}
