//! The latest request logs in memory, for programs that embed the server and for tests
//! (`Config::recent_request_logs`; off by default, since the database holds every log).
//!
//! Owns: [`RecentLogs`]. `record` never blocks the request for longer than a short mutex
//! hold; when the ring is full the oldest record is overwritten (counted in `evicted`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llmur_core::{RequestLog, UsageSink};
use tokio::sync::Notify;

/// The last `capacity` request logs.
#[derive(Debug, Clone)]
pub struct RecentLogs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    logs: Mutex<VecDeque<RequestLog>>,
    evicted: AtomicU64,
    notify: Notify,
}

impl RecentLogs {
    /// A ring of `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                logs: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                evicted: AtomicU64::new(0),
                notify: Notify::new(),
            }),
        }
    }

    /// A copy of the records, oldest first.
    pub fn snapshot(&self) -> Vec<RequestLog> {
        let logs = self
            .inner
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        logs.iter().cloned().collect()
    }

    /// How many records were overwritten.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` records exist or `timeout` passes.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RequestLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.notify.notified();
            let logs = self.snapshot();
            if logs.len() >= n || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return if logs.len() >= n {
                    logs
                } else {
                    self.snapshot()
                };
            }
        }
    }
}

impl UsageSink for RecentLogs {
    fn record(&self, log: RequestLog) {
        let mut logs = self
            .inner
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logs.len() == self.inner.capacity {
            logs.pop_front();
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
        logs.push_back(log);
        drop(logs);
        self.inner.notify.notify_waiters();
    }
}
