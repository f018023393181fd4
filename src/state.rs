//! What every handler shares: the pool and the keys. Passed in, never global.

use crate::db::{AnyConnection, Pool};
use crate::error::ApiError;
use actix_web::web;
use jsonwebtoken::{DecodingKey, EncodingKey};
use std::sync::Arc;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub keys: Arc<TokenKeys>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The HS256 key of one-click unsubscribe links.
    pub unsubscribe_keys: Arc<TokenKeys>,
    /// Business days for request deadlines.
    pub calendar: Arc<crate::domain::deadline::BusinessCalendar>,
    /// Wakes this instance's webhook dispatcher after a write that may have queued deliveries.
    pub webhook_wake: Arc<tokio::sync::Notify>,
}

/// The HS256 key of management tokens, from `instance_keys` (shared by all instances).
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

    /// Runs blocking diesel work on the blocking thread pool with a pooled connection.
    pub async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }
}
