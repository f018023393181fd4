//! The tenant directory: each tenant's configuration (tenant row, sites, purposes, every policy
//! revision including future ones, tokens) held in memory, so that a
//! request reads none of it from the database.
//!
//! Invalidation: triggers bump `config_versions.version` of a tenant in the transaction of every
//! change to its configuration (migration `000005_service_core`), whoever makes it (this
//! instance, another one, the CLI). [`Directory::spawn_poller`] compares those versions with the
//! cached ones every [`POLL_INTERVAL`] and drops what changed; the instance that made a change
//! drops it at once ([`Directory::invalidate`]). A load that raced with an invalidation is not
//! kept (see `generation`).

use crate::db::models::purpose::PurposeRow;
use crate::db::models::revision::RevisionRow;
use crate::db::models::site::Site;
use crate::db::models::tenant::Tenant;
use crate::db::models::token::ApiToken;
use crate::db::schema::{api_tokens, config_versions};
use crate::db::{AnyConnection, Pool};
use crate::domain::{Purpose, Revision, SubjectKey};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How often each instance looks for configuration changed elsewhere: a change made on another
/// instance is seen within this, plus one query.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A site as requests need it, with its origins and presented purposes parsed once.
#[derive(Debug, Clone)]
pub struct SiteEntry {
    pub site: Site,
    /// Origins as stored (`https://www.example.com`), compared case-insensitively.
    pub origins: Vec<String>,
    /// The purpose keys the site presents; `None`: all of the tenant's.
    pub purposes: Option<Vec<String>>,
}

impl SiteEntry {
    fn new(site: Site) -> Self {
        Self { origins: site.origins(), purposes: site.purposes(), site }
    }

    /// Whether `origin` (as sent in the `Origin` header) is one of the site's origins
    /// (scheme and host compare case-insensitively, RFC 6454 §4).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// One tenant's configuration, as of `version`.
#[derive(Debug)]
pub struct TenantConfig {
    /// `config_versions.version` read before the rest: never newer than what was read.
    pub version: i64,
    pub tenant: Tenant,
    pub subject_key: SubjectKey,
    /// Every purpose, by key.
    pub purposes: Arc<Vec<Purpose>>,
    /// Every revision, including those not yet in force, by revision date then policy key.
    pub revisions: Vec<RevisionRow>,
    /// Each of `revisions` parsed once, when the configuration is read (`None`: a corrupt row,
    /// whose error `TenantRules::from_config` reports). Parsing them on every request was 4% of
    /// a check's CPU on the HTTP threads.
    pub parsed_revisions: Vec<Option<Revision>>,
    pub sites: Vec<Arc<SiteEntry>>,
    /// Management tokens by id (`jti`), revoked ones included.
    pub tokens: HashMap<String, ApiToken>,
}

impl TenantConfig {
    /// The revisions in force at `now`, oldest first, each with its parsed form (see
    /// `parsed_revisions`): a revision whose `effective_at` passes comes into force without any
    /// write.
    pub fn revisions_in_force(
        &self,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (&RevisionRow, Option<&Revision>)> + '_ {
        let now = crate::db::models::naive(now);
        self.revisions
            .iter()
            .zip(self.parsed_revisions.iter().map(Option::as_ref))
            .filter(move |(r, _)| r.effective_at <= now)
    }

    /// Reads one tenant's configuration (six small queries).
    pub fn load(conn: &mut AnyConnection, tenant_id: &str) -> QueryResult<Option<Self>> {
        let version = config_versions::table
            .find(tenant_id)
            .select(config_versions::version)
            .first::<i64>(conn)
            .optional()?
            .unwrap_or(0);
        let Some(tenant) = Tenant::find(conn, tenant_id)? else { return Ok(None) };
        let purposes = PurposeRow::list(conn, tenant_id)?;
        let revisions = RevisionRow::all(conn, tenant_id)?;
        let sites = Site::list(conn, tenant_id)?.into_iter().map(|s| Arc::new(SiteEntry::new(s))).collect();
        let tokens = api_tokens::table
            .filter(api_tokens::tenant_id.eq(tenant_id))
            .select(ApiToken::as_select())
            .load::<ApiToken>(conn)?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        Ok(Some(Self {
            version,
            subject_key: tenant.subject_key(),
            tenant,
            purposes: Arc::new(purposes),
            parsed_revisions: revisions.iter().map(|r| r.to_domain().ok()).collect(),
            revisions,
            sites,
            tokens,
        }))
    }
}

/// The per-instance cache of tenant configurations. Cheap to share (`Arc`).
pub struct Directory {
    pool: Pool,
    tenants: RwLock<HashMap<String, Arc<TenantConfig>>>,
    /// Site key → tenant id, for the tenants cached.
    site_keys: RwLock<HashMap<String, String>>,
    /// Bumped by every invalidation: a load that started before one is not stored.
    generation: AtomicU64,
}

impl Directory {
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Self { pool, tenants: RwLock::default(), site_keys: RwLock::default(), generation: AtomicU64::new(0) })
    }

    /// The cached configuration of `tenant_id`, if cached (never blocks on the database).
    pub fn cached(&self, tenant_id: &str) -> Option<Arc<TenantConfig>> {
        self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant_id).cloned()
    }

    /// The tenant id that owns `site_key`, if its tenant is cached.
    pub fn cached_site_tenant(&self, site_key: &str) -> Option<String> {
        self.site_keys.read().unwrap_or_else(|e| e.into_inner()).get(site_key).cloned()
    }

    /// The configuration of `tenant_id`, loading it on a miss (blocking: call from a blocking
    /// thread). `None`: no such tenant.
    pub fn tenant(&self, tenant_id: &str) -> Result<Option<Arc<TenantConfig>>, crate::db::DbError> {
        if let Some(hit) = self.cached(tenant_id) {
            return Ok(Some(hit));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(config) =
            self.pool.run(|conn| TenantConfig::load(conn, tenant_id).map_err(crate::db::DbError::from))?
        else {
            return Ok(None);
        };
        let config = Arc::new(config);
        self.store(generation, &config);
        Ok(Some(config))
    }

    /// The site with `site_key` and its tenant's configuration, loading on a miss (blocking).
    pub fn site(&self, site_key: &str) -> Result<Option<SiteAndConfig>, crate::db::DbError> {
        let tenant_id = match self.cached_site_tenant(site_key) {
            Some(id) => id,
            None => {
                let Some(site) =
                    self.pool.run(|conn| Site::find_by_key(conn, site_key).map_err(crate::db::DbError::from))?
                else {
                    return Ok(None);
                };
                site.tenant_id
            }
        };
        let Some(mut config) = self.tenant(&tenant_id)? else { return Ok(None) };
        if !config.sites.iter().any(|s| s.site.site_key == site_key) {
            // A site created elsewhere since the tenant was cached: read the tenant again.
            self.invalidate(&tenant_id);
            let Some(fresh) = self.tenant(&tenant_id)? else { return Ok(None) };
            config = fresh;
        }
        Ok(config.sites.iter().find(|s| s.site.site_key == site_key).map(|s| (s.clone(), config.clone())))
    }

    /// The configuration of `tenant_id` read again from the database (after a token or site the
    /// cache does not know turned up: it may be newer than the last poll).
    pub fn reload(&self, tenant_id: &str) -> Result<Option<Arc<TenantConfig>>, crate::db::DbError> {
        self.invalidate(tenant_id);
        self.tenant(tenant_id)
    }

    fn store(&self, generation: u64, config: &Arc<TenantConfig>) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let mut keys = self.site_keys.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that invalidate takes: an invalidation that ran since the load
        // began means the load may be stale.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let id = config.tenant.id.clone();
        for site in &config.sites {
            keys.insert(site.site.site_key.clone(), id.clone());
        }
        tenants.insert(id, config.clone());
    }

    /// Drops the cached configuration of `tenant_id` (after this instance changed it, or when
    /// the poller saw another one do so).
    pub fn invalidate(&self, tenant_id: &str) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let mut keys = self.site_keys.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = tenants.remove(tenant_id) {
            for site in &old.sites {
                keys.remove(&site.site.site_key);
            }
        }
    }

    /// Compares the stored versions with the cached ones once; drops each tenant whose version
    /// differs. Returns how many were dropped.
    pub fn poll_once(&self) -> Result<usize, crate::db::DbError> {
        let cached: Vec<(String, i64)> = {
            let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
            if tenants.is_empty() {
                return Ok(0);
            }
            tenants.values().map(|c| (c.tenant.id.clone(), c.version)).collect()
        };
        let ids: Vec<&str> = cached.iter().map(|(id, _)| id.as_str()).collect();
        let stored: HashMap<String, i64> = self
            .pool
            .run(|conn| {
                config_versions::table
                    .filter(config_versions::tenant_id.eq_any(&ids))
                    .select((config_versions::tenant_id, config_versions::version))
                    .load::<(String, i64)>(conn)
                    .map_err(crate::db::DbError::from)
            })?
            .into_iter()
            .collect();
        let mut dropped = 0;
        for (id, version) in cached {
            if stored.get(&id) != Some(&version) {
                self.invalidate(&id);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Starts the thread that runs [`Directory::poll_once`] every [`POLL_INTERVAL`]; it ends
    /// when the directory is dropped. A failed poll (database away) drops everything, so that
    /// nothing older than the outage is served once it is back.
    pub fn spawn_poller(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("consentry-directory".into())
            .spawn(move || loop {
                std::thread::sleep(POLL_INTERVAL);
                let Some(directory) = weak.upgrade() else { return };
                if let Err(e) = directory.poll_once() {
                    tracing::warn!(error = %e, "cannot check the configuration versions; dropping the cache");
                    directory.clear();
                }
            })
            .expect("a thread can be spawned at start-up");
    }

    fn clear(&self) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let mut keys = self.site_keys.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        tenants.clear();
        keys.clear();
    }
}

/// A site and its tenant's configuration.
pub type SiteAndConfig = (Arc<SiteEntry>, Arc<TenantConfig>);
