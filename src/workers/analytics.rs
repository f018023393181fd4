//! The analytics worker: keeps the consent rollups up to date by following every tenant's
//! change feed (see `service::analytics`), every [`POLL_INTERVAL`]. Any number of instances may
//! run it on one database: each page is committed by one of them, exactly once.

use crate::db::Pool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the worker looks for new events: a report's rollups trail the feed by about this
/// (reports count the events not yet rolled up from the events themselves).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Pages of events (5,000 each) rolled up before the worker looks at the clock again.
const PAGES_PER_ROUND: usize = 20;

/// The running worker; [`Running::stop`] ends it.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops the worker after the page under way (committed or rolled back whole) and waits.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the worker on its own thread.
pub fn spawn(pool: Pool) -> std::io::Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("consentry-analytics".into()).spawn(move || {
        let mut failing = false;
        while !flag.load(Ordering::Acquire) {
            let round = pool.run(|conn| {
                crate::service::analytics::roll_up_all(conn, PAGES_PER_ROUND).map_err(crate::db::DbError::from)
            });
            match round {
                Ok(added) => {
                    if failing {
                        tracing::info!("analytics rollups resumed");
                        failing = false;
                    }
                    if added as i64 >= crate::service::analytics::PAGE * PAGES_PER_ROUND as i64 / 2 {
                        continue; // catching up: no pause
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot roll up analytics; retrying");
                        failing = true;
                    }
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    })?;
    Ok(Running { stop, thread: Some(thread) })
}
