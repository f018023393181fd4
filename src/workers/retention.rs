//! The retention worker: runs the pruning of `service::retention` every
//! `retention.interval` (default 1 h), the first time one interval after start. Several
//! instances may run it on one database: each group of subjects is pruned in one transaction
//! under their locks, and a subject pruned by another instance has nothing left to prune.

use crate::db::Pool;
use crate::receipts::ReceiptKeys;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The running worker; [`Running::stop`] ends it.
pub struct Running {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops the worker after the run under way (whose transactions commit or roll back whole)
    /// and waits for it.
    pub fn stop(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn signal(&self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal();
    }
}

/// Starts the worker on its own thread.
pub fn spawn(
    pool: Pool,
    keys: Arc<ReceiptKeys>,
    interval: Duration,
    opt_out_requests_days: Option<u32>,
) -> std::io::Result<Running> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let shared = stop.clone();
    let thread = std::thread::Builder::new().name("consentry-retention".into()).spawn(move || {
        let (flag, wake) = &*shared;
        loop {
            let stopped = flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (stopped, _) = wake
                .wait_timeout_while(stopped, interval, |stopped| !*stopped)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *stopped {
                return;
            }
            drop(stopped);
            let retention = crate::service::retention::Retention { keys: &keys, opt_out_requests_days };
            let run = pool.run(|conn| {
                crate::service::retention::run(conn, &retention, crate::service::now())
                    .map_err(crate::db::DbError::from)
            });
            match run {
                Ok(s) if s.events_pruned > 0 || s.opt_out_requests_pruned > 0 || !s.broken_chains.is_empty() => {
                    tracing::info!(
                        events_pruned = s.events_pruned,
                        checkpoints = s.checkpoints,
                        opt_out_requests_pruned = s.opt_out_requests_pruned,
                        broken_chains = s.broken_chains.len(),
                        "retention: pruned"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention: cannot prune; trying again next interval"),
            }
        }
    })?;
    Ok(Running { stop, thread: Some(thread) })
}
