//! A queue that hands concurrent requests' work to a few threads in batches: what the group
//! commit of writes ([`super::writer`]) and the grouped reads of checks and states
//! ([`super::reader`]) share.
//!
//! Requests push jobs and await their own reply (each job carries a `oneshot` sender). A
//! thread waits until something is queued, takes a batch with the owner's `take` policy, and
//! runs it; while it runs, the next thread gathers what arrives meanwhile. So an idle server
//! answers a lone request at once, and a busy one pays one database round trip per batch
//! instead of one per request.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct Queue<J> {
    jobs: VecDeque<J>,
    closed: bool,
}

struct Shared<J> {
    queue: Mutex<Queue<J>>,
    ready: Condvar,
}

impl<J> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, Queue<J>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue and its threads. Dropping it lets the threads finish what is queued and end.
pub struct Batcher<J> {
    shared: Arc<Shared<J>>,
}

impl<J: Send + 'static> Batcher<J> {
    /// Starts `threads` threads named `name-N`. Each takes a batch with `take` (called with
    /// the lock held, on a non-empty queue; it must take at least one job) and hands it to
    /// `run`, which must answer every job of the batch.
    pub fn start<R>(name: &str, threads: usize, take: fn(&mut VecDeque<J>) -> Vec<J>, run: R) -> Self
    where
        R: Fn(Vec<J>) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
        });
        let run = Arc::new(run);
        for n in 0..threads.max(1) {
            let (shared, run) = (shared.clone(), run.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || work(&shared, take, &*run))
                .expect("a thread can be spawned at start-up");
        }
        Self { shared }
    }

    /// Queues `job`; gives it back when the batcher is stopping.
    pub fn push(&self, job: J) -> Result<(), J> {
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(job);
            }
            queue.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl<J> Drop for Batcher<J> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn work<J>(shared: &Shared<J>, take: fn(&mut VecDeque<J>) -> Vec<J>, run: &dyn Fn(Vec<J>)) {
    loop {
        let (batch, more) = {
            let mut queue = shared.lock();
            while queue.jobs.is_empty() && !queue.closed {
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            if queue.jobs.is_empty() {
                return;
            }
            let batch = take(&mut queue.jobs);
            (batch, !queue.jobs.is_empty())
        };
        if more {
            // More is waiting: let another thread gather it while this one runs.
            shared.ready.notify_one();
        }
        // A panic (a bug) must not end the thread: its jobs' replies are dropped with the
        // batch, so their requests fail (503) instead of waiting forever, and the thread goes on.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(batch))).is_err() {
            tracing::error!("a batch panicked; its requests were answered 503");
        }
    }
}

/// A `take` policy: up to `N` jobs from the front.
pub fn take_up_to<J, const N: usize>(jobs: &mut VecDeque<J>) -> Vec<J> {
    let n = jobs.len().min(N);
    jobs.drain(..n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn every_job_is_run_once_in_batches_of_at_most_n() {
        let (tx, rx) = mpsc::channel::<Vec<u32>>();
        let tx = Mutex::new(tx);
        let batcher = Batcher::start("test-batch", 2, take_up_to::<u32, 8>, move |batch| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            tx.lock().unwrap().send(batch).unwrap();
        });
        for n in 0..100 {
            batcher.push(n).unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 100 {
            let batch = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("every job runs");
            assert!(!batch.is_empty() && batch.len() <= 8, "batch of {}", batch.len());
            seen.extend(batch);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_that_panics_drops_its_jobs_and_the_thread_goes_on() {
        let (tx, rx) = mpsc::channel::<u32>();
        let tx = Mutex::new(tx);
        let batcher = Batcher::start("test-panic", 1, take_up_to::<(u32, mpsc::Sender<()>), 1>, move |batch| {
            for (n, _done) in batch {
                assert_ne!(n, 1, "job 1 panics");
                tx.lock().unwrap().send(n).unwrap();
            }
        });
        let (first_done, first) = mpsc::channel();
        batcher.push((1, first_done)).unwrap();
        // The panicking batch dropped its job (and with it the job's reply channel).
        assert!(first.recv_timeout(std::time::Duration::from_secs(10)).is_err());
        let (done, _) = mpsc::channel();
        batcher.push((2, done)).unwrap();
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(2), "the thread still runs");
    }

    #[test]
    fn a_stopped_batcher_gives_the_job_back() {
        let batcher = Batcher::start("test-stop", 1, take_up_to::<u32, 8>, |_| {});
        batcher.shared.lock().closed = true;
        assert_eq!(batcher.push(7), Err(7));
    }
}
