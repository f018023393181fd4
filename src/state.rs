//! What every handler shares: the pool and the keys. Passed in, never global.

use crate::db::{AnyConnection, Pool};
use crate::error::ApiError;
use crate::ledger::TenantRules;
use crate::service::directory::{Directory, SiteEntry, TenantConfig};
use crate::service::reader::Reader;
use crate::service::writer::Writer;
use actix_web::web;
use jsonwebtoken::{DecodingKey, EncodingKey};
use std::sync::Arc;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// The HS256 keys of management tokens (see [`crate::auth::ManagementKeys`]).
    pub keys: Arc<crate::auth::ManagementKeys>,
    /// Seals and opens the secrets stored in the database (see [`crate::secrets`]).
    pub secrets: Arc<crate::secrets::SecretBox>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The largest body of `POST /v1/imports`, in bytes.
    pub max_import_bytes: usize,
    /// The HS256 key of one-click unsubscribe links.
    pub unsubscribe_keys: Arc<TokenKeys>,
    /// Business days for request deadlines.
    pub calendar: Arc<crate::domain::deadline::BusinessCalendar>,
    /// Wakes this instance's webhook dispatcher after a write that may have queued deliveries.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Tenants' configurations, cached (see [`crate::service::directory`]).
    pub directory: Arc<Directory>,
    /// Writes consent submissions in batches (see [`crate::service::writer`]).
    pub writer: Arc<Writer>,
    /// Reads single subjects' states in batches (see [`crate::service::reader`]).
    pub reader: Arc<Reader>,
    /// The read replica, when `database_replica_url` is set (see [`crate::db::replica`]).
    pub replica: Option<Arc<crate::db::replica::Replica>>,
    /// Reads single subjects' states in batches on the replica (with `replica`).
    pub replica_reader: Option<Arc<Reader>>,
    /// Whether webhook receivers may be at internal addresses (`webhooks.private_receivers`,
    /// resolved for the database in use).
    pub private_receivers: bool,
    /// Rate limits per site and client address, and per token (see [`crate::limits`]).
    pub limits: Arc<crate::limits::Limits>,
    /// The bearer token that may read `/metrics` (none: `/metrics` is off).
    pub metrics_token: Option<crate::config::Secret>,
    /// `public_url` without a trailing `/`, checked at start-up.
    pub public_url: Option<String>,
    /// Set when a stop signal arrived: the instance is draining (`/readyz` answers 503).
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The keys that sign consent receipts (see [`crate::receipts`]).
    pub receipts: Arc<crate::receipts::ReceiptKeys>,
    /// Presentation tokens' settings and the presentations known stored (see
    /// [`crate::service::presentation`]).
    pub presentations: Arc<crate::service::presentation::Presentations>,
}

/// An HS256 key from `instance_keys` (shared by all instances), e.g. of unsubscribe links.
pub struct TokenKeys {
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl TokenKeys {
    pub fn from_secret(secret: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes())?,
            decoding: DecodingKey::from_secret(secret.as_bytes())?,
        })
    }
}

impl AppState {
    /// Tells the webhook dispatcher that deliveries may be due now (after a commit).
    pub fn wake_webhooks(&self) {
        self.webhook_wake.notify_one();
    }

    /// The configuration of `tenant_id`: from the cache, or loaded on a blocking thread.
    /// `None`: no such tenant.
    pub async fn tenant_config(&self, tenant_id: &str) -> Result<Option<Arc<TenantConfig>>, ApiError> {
        if let Some(hit) = self.directory.cached(tenant_id) {
            return Ok(Some(hit));
        }
        let (directory, id) = (self.directory.clone(), tenant_id.to_owned());
        Ok(web::block(move || directory.tenant(&id)).await??)
    }

    /// The site with `site_key` and its tenant's configuration (cached like
    /// [`AppState::tenant_config`]).
    pub async fn site(&self, site_key: &str) -> Result<Option<(Arc<SiteEntry>, Arc<TenantConfig>)>, ApiError> {
        if let Some(config) = self.directory.cached_site_tenant(site_key).and_then(|id| self.directory.cached(&id)) {
            if let Some(site) = config.sites.iter().find(|s| s.site.site_key == site_key) {
                return Ok(Some((site.clone(), config)));
            }
        }
        let (directory, key) = (self.directory.clone(), site_key.to_owned());
        Ok(web::block(move || directory.site(&key)).await??)
    }

    /// The status rules of a tenant now, presenting `presented` (a site's purposes; `None`: all).
    pub fn rules(config: &TenantConfig, presented: Option<Vec<String>>) -> Result<TenantRules, ApiError> {
        Ok(TenantRules::from_config(config, chrono::Utc::now())?.presenting(presented))
    }

    /// Runs blocking diesel work on the blocking thread pool with a pooled connection.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || pool.run(f)).await?
    }
}
