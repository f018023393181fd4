//! Identity linking: several identifiers of one person become one data subject.

use super::view::{index, TenantRules};
use super::LedgerError;
use crate::db::backend::{lock_subject, lock_tenant_links, write_transaction_retrying};
use crate::db::models::naive;
use crate::db::models::state::StateRow;
use crate::db::models::subject::DataSubject;
use crate::db::AnyConnection;
use crate::domain::status::{merge_survivor, Survivor};

/// What linking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// The identifiers already named one subject.
    Already,
    /// The second identifier was new and now names the first's subject.
    Added,
    /// Both had histories; they are now one subject (the first's), states merged.
    Merged,
}

/// Links the stored identifier `other` to the person behind `primary` (created if new).
///
/// When both have histories, they merge per purpose: the newest decision wins, and an opt-out
/// from GPC or an opt-out request is never undone by a grant that is not newer (11 CCR
/// §7025(c)(1)). Events are never rewritten: the merged subject's events stay in its own hash
/// chain and are listed with the person's.
pub fn link_identifiers(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    primary: &str,
    other: &str,
) -> Result<Linked, LedgerError> {
    write_transaction_retrying(conn, |conn| link(conn, rules, primary, other))
}

/// A visitor (browser) presents an identity token for `user`. When the browser's history is
/// already another user's (a shared computer), the browser now belongs to `user` and the other
/// person's history stays theirs: the visitor identifier moves, nothing merges. Otherwise the
/// browser's anonymous history joins the user ([`link_identifiers`]).
pub fn link_visitor_to_user(
    conn: &mut AnyConnection,
    rules: &TenantRules,
    user: &str,
    visitor: &str,
) -> Result<Linked, LedgerError> {
    let tenant = &rules.tenant_id;
    let now = naive(rules.now);
    // Retried: the user may be created by a concurrent request at this moment (their first write
    // elsewhere), and this transaction's insert of the user's identifier then fails as a duplicate.
    let moved = write_transaction_retrying(conn, |conn| {
        lock_tenant_links(conn, tenant)?;
        let Some(current) = DataSubject::resolve(conn, tenant, visitor)? else { return Ok::<_, LedgerError>(false) };
        let identifiers = DataSubject::identifiers_of(conn, tenant, &[current.as_str()])?;
        let other_user = identifiers.iter().any(|(_, id)| id.starts_with("user:") && id != user);
        if !other_user {
            return Ok(false);
        }
        let target = DataSubject::resolve_or_create(conn, tenant, user, now)?;
        DataSubject::move_identifier(conn, tenant, visitor, &target)?;
        Ok(true)
    })?;
    if moved {
        Ok(Linked::Added)
    } else {
        link_identifiers(conn, rules, user, visitor)
    }
}

fn link(conn: &mut AnyConnection, rules: &TenantRules, primary: &str, other: &str) -> Result<Linked, LedgerError> {
    let tenant = &rules.tenant_id;
    let now = naive(rules.now);
    // Links are rare: one at a time per tenant, each seeing every earlier one committed.
    lock_tenant_links(conn, tenant)?;
    let a = DataSubject::resolve_or_create(conn, tenant, primary, now)?;
    let Some(b) = DataSubject::resolve(conn, tenant, other)? else {
        DataSubject::add_identifier(conn, tenant, other, &a, now)?;
        return Ok(Linked::Added);
    };
    if a == b {
        return Ok(Linked::Already);
    }
    // Both subjects' writers wait for us; lock in id order so two merges cannot deadlock.
    let (first, second) = if a < b { (&a, &b) } else { (&b, &a) };
    lock_subject(conn, first)?;
    lock_subject(conn, second)?;
    let mine = index(StateRow::for_subject(conn, tenant, &a)?);
    for theirs in StateRow::for_subject(conn, tenant, &b)? {
        let keep_theirs = match mine.get(&theirs.purpose_key) {
            None => true,
            Some(own) => merge_survivor(&own.to_choice()?, &theirs.to_choice()?) == Survivor::Second,
        };
        if keep_theirs {
            let exists = mine.contains_key(&theirs.purpose_key);
            StateRow { subject_id: a.clone(), ..theirs }.save(conn, exists)?;
        }
    }
    StateRow::delete_for_subject(conn, tenant, &b)?;
    DataSubject::merge(conn, tenant, &b, &a)?;
    Ok(Linked::Merged)
}
