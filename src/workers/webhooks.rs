//! The webhook dispatcher: claims due deliveries from the outbox, sends them signed, and
//! records each outcome (delivered, retry later with backoff, or dead letter).
//!
//! Any number of instances may run it on one database. A claim is a lease: in one short
//! transaction the dispatcher picks due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), stamps
//! them with a fresh lease id and pushes `next_attempt_at` past the attempt's timeout, then
//! commits before any HTTP request. Only the lease holder's outcome is stored. A dispatcher
//! that dies mid-attempt leaves the row to be claimed again when the lease ends, so a delivery
//! is sent at least once and never by two instances at the same time.

use crate::config::WebhookSettings;
use crate::db::backend::{lock_due_deliveries, write_transaction};
use crate::db::models::webhook::{AttemptOutcome, Delivery, Webhook};
use crate::db::models::{naive, new_id, utc};
use crate::db::{AnyConnection, DbError, Pool};
use crate::domain::ledger::to_micros;
use crate::domain::webhook::{signature_header, AfterFailure, DeliveryStatus, RetryPolicy};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// How long failing deliveries are retried at least, as documented to integrators.
pub const MIN_PROMISED_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Longest `last_error` kept, in bytes.
const MAX_ERROR_LEN: usize = 500;

/// A delivery claimed under a lease, with where and how to send it.
struct Claimed {
    delivery: Delivery,
    lease: String,
    url: String,
    secret: String,
}

/// A running dispatcher; [`Running::stop`] ends it after the attempts in flight.
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the dispatcher on the current Tokio runtime. `wake` lets this instance's writes
/// have their deliveries sent at once instead of at the next poll.
/// `private_receivers`: whether receivers at internal addresses are called (see
/// `WebhookSettings::private_receivers`); when not, names are resolved by [`PublicOnly`] and
/// a URL written with an internal address is not called at all.
pub fn spawn(
    pool: Pool,
    settings: &WebhookSettings,
    private_receivers: bool,
    wake: Arc<Notify>,
    secrets: Arc<crate::secrets::SecretBox>,
) -> Result<Running, reqwest::Error> {
    let mut client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Consentry-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !private_receivers {
        client = client.dns_resolver(Arc::new(PublicOnly));
    }
    let client = client.build()?;
    let policy = RetryPolicy {
        base: chrono::Duration::from_std(settings.retry_base).unwrap_or(chrono::Duration::seconds(30)),
        max_delay: chrono::Duration::from_std(settings.retry_max_delay).unwrap_or(chrono::Duration::hours(1)),
        window: chrono::Duration::from_std(settings.retry_window).unwrap_or(chrono::Duration::hours(72)),
    };
    let dispatcher = Arc::new(Dispatcher {
        pool,
        secrets,
        client,
        private_receivers,
        policy,
        // A claim outlives the slowest attempt by a margin, so it is never taken over while
        // its holder may still be sending.
        lease: settings.timeout * 2 + Duration::from_secs(5),
        poll_interval: settings.poll_interval,
        concurrency: settings.concurrency.max(1),
        per_webhook: (settings.concurrency / 4).max(1),
    });
    if settings.retry_window < MIN_PROMISED_WINDOW {
        tracing::warn!(
            retry_window = ?settings.retry_window,
            "webhooks.retry_window is shorter than the 24 hours receivers are promised"
        );
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(dispatcher.run(stopped, wake));
    Ok(Running { stop, task })
}

struct Dispatcher {
    pool: Pool,
    /// Opens the webhooks' signing secrets (stored sealed, see [`crate::secrets`]).
    secrets: Arc<crate::secrets::SecretBox>,
    client: reqwest::Client,
    private_receivers: bool,
    policy: RetryPolicy,
    lease: Duration,
    poll_interval: Duration,
    /// Attempts in flight at most, in all.
    concurrency: usize,
    /// Attempts in flight at most per webhook.
    per_webhook: usize,
}

impl Dispatcher {
    /// Claims what it can send at once and sends each claim as its own task, claiming again as
    /// soon as a slot frees up. A receiver takes at most `per_webhook` of the `concurrency`
    /// slots, so one that hangs until the timeout cannot hold up the others.
    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>, wake: Arc<Notify>) {
        let mut tasks: JoinSet<String> = JoinSet::new();
        let mut in_flight: HashMap<String, usize> = HashMap::new();
        let finished = |in_flight: &mut HashMap<String, usize>, webhook: Result<String, tokio::task::JoinError>| {
            if let Ok(webhook) = webhook {
                if let Some(n) = in_flight.get_mut(&webhook) {
                    *n -= 1;
                    if *n == 0 {
                        in_flight.remove(&webhook);
                    }
                }
            }
        };
        loop {
            while let Some(done) = tasks.try_join_next() {
                finished(&mut in_flight, done);
            }
            if *stopped.borrow() {
                while tasks.join_next().await.is_some() {}
                return;
            }
            let free = self.concurrency.saturating_sub(tasks.len());
            let mut again = false;
            if free > 0 {
                let busy = in_flight.clone();
                match self.blocking(move |d, conn| d.claim(conn, free, &busy)).await {
                    Ok((claimed, more)) => {
                        again = more;
                        for c in claimed {
                            *in_flight.entry(c.delivery.webhook_id.clone()).or_default() += 1;
                            let me = Arc::clone(&self);
                            tasks.spawn(async move {
                                let webhook = c.delivery.webhook_id.clone();
                                me.attempt(c).await;
                                webhook
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook dispatcher cannot claim deliveries"),
                }
            }
            if again && tasks.len() < self.concurrency {
                continue;
            }
            tokio::select! {
                _ = stopped.changed() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => finished(&mut in_flight, done),
            }
        }
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self, &mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.pool.run(|conn| f(&me, conn)))
            .await
            .unwrap_or_else(|e| Err(DbError::Task(e.to_string())))
    }

    /// Claims at most `free` due deliveries, at most `per_webhook` in flight per webhook
    /// counting `busy` (this instance's attempts in flight). Returns them, and whether more are
    /// due for other webhooks than those that hit their limit (worth claiming again at once).
    fn claim(
        &self,
        conn: &mut AnyConnection,
        free: usize,
        busy: &HashMap<String, usize>,
    ) -> Result<(Vec<Claimed>, bool), DbError> {
        let now = Utc::now();
        // Idle instances only read: no write lock (on SQLite, the database's) while nothing is due.
        if !Delivery::any_due(conn, naive(now))? {
            return Ok((Vec::new(), false));
        }
        let lease_until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(1));
        let saturated: Vec<String> =
            busy.iter().filter(|(_, n)| **n >= self.per_webhook).map(|(w, _)| w.clone()).collect();
        let scan = i64::try_from(free.saturating_mul(4).min(256)).unwrap_or(256);
        Ok(write_transaction(conn, |conn| {
            let due = lock_due_deliveries(conn, naive(now), scan, &saturated)?;
            let mut taken: HashMap<&str, usize> = HashMap::new();
            let mut ids = Vec::new();
            let mut capped = false;
            for (id, webhook) in &due {
                if ids.len() == free {
                    break;
                }
                let n = taken.entry(webhook.as_str()).or_insert_with(|| busy.get(webhook).copied().unwrap_or(0));
                if *n >= self.per_webhook {
                    capped = true;
                    continue;
                }
                *n += 1;
                ids.push(id.clone());
            }
            if ids.is_empty() {
                return Ok::<_, diesel::result::Error>((Vec::new(), capped));
            }
            let lease = new_id();
            let rows = Delivery::lease(conn, &ids, &lease, naive(lease_until))?;
            let mut hook_ids: Vec<&str> = rows.iter().map(|d| d.webhook_id.as_str()).collect();
            hook_ids.sort_unstable();
            hook_ids.dedup();
            let hooks = Webhook::secrets(conn, &hook_ids)?;
            let more = capped && ids.len() < free;
            let claimed = rows
                .into_iter()
                .filter_map(|delivery| {
                    let (id, url, stored) = hooks.iter().find(|(id, _, _)| *id == delivery.webhook_id)?;
                    let context = crate::secrets::webhook_secret_context(id);
                    let secret = match self.secrets.open(&context, stored) {
                        Ok(secret) => secret,
                        Err(why) => {
                            // Left leased: retried when the lease ends, not sent unsigned.
                            tracing::error!(webhook = %id, %why, "cannot open the webhook's signing secret");
                            return None;
                        }
                    };
                    Some(Claimed { url: url.clone(), secret, lease: lease.clone(), delivery })
                })
                .collect();
            Ok((claimed, more))
        })?)
    }

    /// Sends one delivery and stores the outcome.
    async fn attempt(self: &Arc<Self>, mut c: Claimed) {
        let attempt = c.delivery.attempts.saturating_add(1);
        let timestamp = Utc::now().timestamp();
        let body = std::mem::take(&mut c.delivery.payload).into_bytes();
        // Checked at every attempt, not only when the webhook was created: settings change.
        let internal = if self.private_receivers {
            None
        } else {
            url::Url::parse(&c.url).ok().as_ref().and_then(crate::domain::webhook::internal_host)
        };
        let (response_status, error) = if let Some(why) = internal {
            (None, Some(format!("not sent: {why}, and internal receivers are refused")))
        } else {
            let sent = self
                .client
                .post(&c.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Consentry-Signature", signature_header(&c.secret, timestamp, &body))
                .header("Consentry-Event-Id", &c.delivery.event_id)
                .header("Consentry-Event-Type", &c.delivery.event_type)
                .header("Consentry-Delivery-Id", &c.delivery.id)
                .header("Consentry-Delivery-Attempt", attempt.to_string())
                .body(body)
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() => (Some(i32::from(res.status().as_u16())), None),
                Ok(res) => {
                    (Some(i32::from(res.status().as_u16())), Some(format!("the receiver answered {}", res.status())))
                }
                Err(e) => (None, Some(describe(&e, &c.url))),
            }
        };
        let now = to_micros(Utc::now());
        let (status, next_attempt_at) = match &error {
            None => (DeliveryStatus::Delivered, now),
            Some(_) => {
                let started = utc(c.delivery.retry_started_at);
                match self.policy.after_failure(attempt.unsigned_abs(), started, now, rand::random::<f64>()) {
                    AfterFailure::RetryAt(at) => (DeliveryStatus::Pending, at),
                    AfterFailure::DeadLetter => (DeliveryStatus::Dead, now),
                }
            }
        };
        match (&error, status) {
            (Some(e), DeliveryStatus::Dead) => {
                tracing::warn!(delivery = %c.delivery.id, webhook = %c.delivery.webhook_id, attempt, error = %e,
                    "webhook delivery dead-lettered: the retry window is over");
            }
            (Some(e), _) => {
                tracing::info!(delivery = %c.delivery.id, webhook = %c.delivery.webhook_id, attempt, error = %e,
                    next_attempt_at = %next_attempt_at, "webhook delivery failed; will retry");
            }
            (None, _) => {}
        }
        let outcome = AttemptOutcome {
            status: status.as_str(),
            attempted_at: naive(now),
            next_attempt_at: naive(next_attempt_at),
            response_status,
            error,
        };
        let (id, lease) = (c.delivery.id.clone(), c.lease.clone());
        let stored = self.blocking(move |_, conn| Ok(Delivery::finish_attempt(conn, &id, &lease, &outcome)?)).await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(delivery = %c.delivery.id, "webhook delivery changed during its attempt; outcome not stored")
            }
            // The lease runs out and the delivery is attempted again: at least once.
            Err(e) => tracing::warn!(delivery = %c.delivery.id, error = %e, "cannot store a webhook attempt"),
        }
    }
}

/// A transport error with its causes (e.g. "connection refused"), cut to [`MAX_ERROR_LEN`].
fn describe(e: &reqwest::Error, url: &str) -> String {
    let mut text = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // The receiver's origin only: a path or query may hold a secret (`?api_key=…`), and this
    // text is logged.
    let text = match url::Url::parse(url) {
        Ok(parsed) => {
            let origin = parsed.origin().ascii_serialization();
            text.replace(parsed.as_str(), &origin).replace(url, &origin)
        }
        Err(_) => text.replace(url, "the receiver"),
    };
    text.chars().take(MAX_ERROR_LEN).collect()
}

/// Resolves receiver names, keeping only addresses that are not internal
/// ([`crate::domain::webhook::is_internal`]): checked when each connection is made, so a name
/// that is changed to point inside after the webhook was created is refused too.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> =
                found.iter().copied().filter(|a| !crate::domain::webhook::is_internal(a.ip())).collect();
            if public.is_empty() && !found.is_empty() {
                return Err(
                    format!("{host} resolves to internal addresses only, and internal receivers are refused").into()
                );
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod resolver_tests {
    use reqwest::dns::Resolve;
    use std::str::FromStr;

    #[tokio::test]
    async fn names_that_resolve_inside_only_are_refused() {
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let err = super::PublicOnly.resolve(name).await.err().expect("localhost resolves to loopback only");
        assert!(err.to_string().contains("internal addresses only"), "{err}");
    }
}
