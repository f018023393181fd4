//! Reading the consent state of a data subject.

use crate::db::models::revision::RevisionRow;
use crate::db::models::state::StateRow;
use crate::db::AnyConnection;
use crate::domain::status::{evaluate, Evaluation};
use crate::domain::{
    ConsentModel, ConsentSource, Decision, Purpose, Reason, RegionCode, Revision, Status, StoredChoice,
};
use crate::service::directory::TenantConfig;
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::ToSchema;

/// A tenant's purposes and the policy revisions in force at `now`: what the status rules need.
/// Built from the cached [`TenantConfig`] (no query).
#[derive(Clone)]
pub struct TenantRules {
    pub tenant_id: String,
    pub purposes: Arc<Vec<Purpose>>,
    /// Revisions in force at `now`, oldest first.
    pub revision_rows: Vec<RevisionRow>,
    pub revisions: Vec<Revision>,
    pub now: DateTime<Utc>,
    /// The purposes a viewer presents (a site's list); `None`: all. Only [`TenantRules::view`]
    /// and [`TenantRules::presented_purposes`] look at it: recording and GPC see every purpose.
    pub presented: Option<Vec<String>>,
}

impl TenantRules {
    /// The rules of a cached configuration at `now`.
    pub fn from_config(config: &TenantConfig, now: DateTime<Utc>) -> QueryResult<Self> {
        let (mut revision_rows, mut revisions) = (Vec::new(), Vec::new());
        for (row, parsed) in config.revisions_in_force(now) {
            revisions.push(match parsed {
                Some(revision) => revision.clone(),
                None => row.to_domain()?,
            });
            revision_rows.push(row.clone());
        }
        Ok(Self {
            tenant_id: config.tenant.id.clone(),
            purposes: config.purposes.clone(),
            revision_rows,
            revisions,
            now,
            presented: None,
        })
    }

    /// The rules as the service held them at `then`: only revisions published by then
    /// (`created_at`) and in force then; one published later with an earlier date is left out.
    pub fn as_published_at(mut self, then: DateTime<Utc>) -> QueryResult<Self> {
        let cut = crate::db::models::naive(then);
        self.revision_rows.retain(|r| r.created_at <= cut);
        self.revisions = self.revision_rows.iter().map(RevisionRow::to_domain).collect::<QueryResult<_>>()?;
        Ok(self)
    }

    /// Reads the configuration from the database, bypassing the cache (tools and tests).
    pub fn load(conn: &mut AnyConnection, tenant_id: &str, now: DateTime<Utc>) -> QueryResult<Self> {
        let config = TenantConfig::load(conn, tenant_id)?.ok_or(diesel::result::Error::NotFound)?;
        Self::from_config(&config, now)
    }

    /// Limits what [`TenantRules::view`] shows to `keys` (a site's purposes).
    pub fn presenting(mut self, keys: Option<Vec<String>>) -> Self {
        self.presented = keys;
        self
    }

    /// The purposes the viewer presents, by key.
    pub fn presented_purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes
            .iter()
            .filter(|p| self.presented.as_ref().is_none_or(|keys| keys.iter().any(|k| k == p.key.as_str())))
    }

    pub fn purpose(&self, key: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.key.as_str() == key)
    }

    /// Evaluates every purpose for one subject's states.
    pub fn view(&self, states: &HashMap<String, StateRow>, region: Option<&RegionCode>) -> QueryResult<SubjectView> {
        let mut purposes = BTreeMap::new();
        let mut needs_consent = false;
        for purpose in self.presented_purposes() {
            let row = states.get(purpose.key.as_str());
            let choice = row.map(StateRow::to_choice).transpose()?;
            let state = self.evaluate(purpose, choice.as_ref(), region);
            if purpose.model_in(region) == ConsentModel::OptIn
                && matches!(state.status, Status::NotAsked | Status::Stale | Status::Expired)
            {
                needs_consent = true;
            }
            purposes.insert(purpose.key.to_string(), state);
        }
        Ok(SubjectView { needs_consent, purposes })
    }

    /// The status of `purpose` for a subject whose choice is `choice`, now (the status rules,
    /// `domain::status::evaluate`): what a check answers.
    pub fn status(&self, purpose: &Purpose, choice: Option<&StoredChoice>, region: Option<&RegionCode>) -> Evaluation {
        evaluate(&purpose.key, purpose.rule(region), choice, &self.revisions, self.now)
    }

    /// [`TenantRules::status`] with the choice it was evaluated from: what a subject's view shows.
    pub fn evaluate(
        &self,
        purpose: &Purpose,
        choice: Option<&StoredChoice>,
        region: Option<&RegionCode>,
    ) -> PurposeState {
        let e = self.status(purpose, choice, region);
        PurposeState {
            status: e.status,
            allowed: e.allowed,
            reason: e.reason,
            decision: choice.map(|c| c.decision),
            policy_revision: choice.and_then(|c| c.policy_revision.map(|r| r.to_string())),
            updated_at: choice.map(|c| c.occurred_at),
            expires_at: e.expires_at,
            source: choice.map(|c| c.source),
            reprompt_after: crate::domain::status::reprompt_after(purpose.gpc_applies, choice),
        }
    }
}

/// The consent state of one data subject: every purpose of the tenant.
#[derive(Default, Debug, Clone, Serialize, ToSchema)]
pub struct SubjectView {
    /// True when any `opt_in` purpose (in the request's region) is `not_asked`, `stale` or
    /// `expired`: the banner should be shown.
    pub needs_consent: bool,
    /// Per purpose key.
    pub purposes: BTreeMap<String, PurposeState>,
}

/// One purpose's state for one data subject.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurposeState {
    pub status: Status,
    /// Whether the purpose may be pursued for this person now.
    pub allowed: bool,
    /// Why `allowed` is what it is.
    pub reason: Reason,
    /// The decision in force, absent when never decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The policy revision date the person saw when deciding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    /// When the decision in force was made (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// When a grant lapses (`updated_at` + the purpose's `max_age_days`); null when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<ConsentSource>,
    /// After an opt-out of sale/sharing: do not ask the person to opt back in before this
    /// instant (Cal. Civ. Code §1798.135(c)(4), 12 months).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reprompt_after: Option<DateTime<Utc>>,
}

/// States by purpose key.
pub fn index(states: Vec<StateRow>) -> HashMap<String, StateRow> {
    states.into_iter().map(|s| (s.purpose_key.clone(), s)).collect()
}
