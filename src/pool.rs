//! A bounded pool of blocking worker threads for CPU-bound work (decode,
//! preprocess, inference). Async code submits a job and awaits its answer; when
//! every worker is busy and the queue is full, [`WorkerPool::try_run`] refuses at
//! once instead of letting latency grow without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue is full: the caller should answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// Counters shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Jobs accepted and not yet finished (queued + running).
    pub in_flight: AtomicUsize,
    /// Jobs running on a worker now.
    pub running: AtomicUsize,
}

pub struct WorkerPool {
    tx: SyncSender<Job>,
    workers: usize,
    queue_depth: usize,
    stats: Arc<PoolStats>,
}

impl WorkerPool {
    /// Starts `workers` threads (at least 1) behind a queue of `queue_depth` waiting jobs.
    pub fn new(workers: usize, queue_depth: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        // The channel can hold everything admitted, so admission is decided by the
        // in-flight count alone, not by how fast a worker picks jobs up.
        let (tx, rx) = sync_channel::<Job>(workers + queue_depth);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name(format!("boneage-worker-{i}"))
                .spawn(move || worker(rx, stats))?;
        }
        Ok(WorkerPool {
            tx,
            workers,
            queue_depth,
            stats,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Whether [`WorkerPool::try_run`] would refuse now (workers and queue full). A
    /// hint for shedding before expensive work such as reading an upload; the
    /// admission itself stays in `try_run`.
    pub fn is_saturated(&self) -> bool {
        self.stats.in_flight.load(Ordering::SeqCst) >= self.workers + self.queue_depth
    }

    /// Queues `f` unless the pool is saturated; the receiver yields its result.
    pub fn try_run<F, R>(&self, f: F) -> Result<oneshot::Receiver<R>, Overloaded>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        // Admission: at most workers + queue_depth jobs in flight.
        let limit = self.workers + self.queue_depth;
        let prev = self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        if prev >= limit {
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Overloaded);
        }
        let stats = Arc::clone(&self.stats);
        let job: Job = Box::new(move || {
            stats.running.fetch_add(1, Ordering::SeqCst);
            let r = f();
            stats.running.fetch_sub(1, Ordering::SeqCst);
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            // The requester may have gone away; its answer is then dropped.
            let _ = done.send(r);
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(Overloaded)
            }
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>, _stats: Arc<PoolStats>) {
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return, // pool dropped
            }
        };
        // A panicking job must not take the worker down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = WorkerPool::new(2, 4).unwrap();
        let rx = pool.try_run(|| 21 * 2).unwrap();
        assert_eq!(rx.await.unwrap(), 42);
    }

    #[tokio::test]
    async fn refuses_beyond_workers_plus_queue() {
        let pool = WorkerPool::new(1, 1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut accepted = Vec::new();
        let mut refused = 0;
        for _ in 0..5 {
            let r = Arc::clone(&release_rx);
            match pool.try_run(move || {
                let _ = r.lock().map(|g| g.recv_timeout(Duration::from_secs(5)));
            }) {
                Ok(rx) => accepted.push(rx),
                Err(Overloaded) => refused += 1,
            }
        }
        assert_eq!(accepted.len(), 2);
        assert_eq!(refused, 3);
        assert!(pool.is_saturated());
        for _ in 0..2 {
            release_tx.send(()).unwrap();
        }
        for rx in accepted {
            rx.await.unwrap();
        }
        assert_eq!(pool.stats().in_flight.load(Ordering::SeqCst), 0);
        // Capacity is back.
        assert!(!pool.is_saturated());
        assert!(pool.try_run(|| ()).is_ok());
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_worker() {
        let pool = WorkerPool::new(1, 1).unwrap();
        let rx = pool
            .try_run(|| -> u8 {
                panic!("deliberate panic in a pool test: the worker must survive it")
            })
            .unwrap();
        assert!(rx.await.is_err());
        assert_eq!(pool.try_run(|| 7).unwrap().await.unwrap(), 7);
    }
}
