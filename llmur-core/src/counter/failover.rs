//! A shared counter with a time limit on every call and a local fallback.
//!
//! Owns: [`FailoverCounter`] and [`FailPolicy`]. Every call to the primary (Redis) has a
//! short timeout, so a dead or hung primary never holds a request longer than that. On a
//! failure the primary is skipped for a short pause, then tried again on the next call:
//! recovery is automatic. A call that started after the last failure and succeeded ends
//! both the degraded state and the pause together, so `degraded == false` always means
//! the primary counts again; an answer to a call sent before that failure (read late, by
//! a starved process) proves nothing and changes neither. While it is down,
//! `FailPolicy::Open` counts in a local [`MemoryCounter`] (exact per instance) and
//! `FailPolicy::Closed` refuses.
//! Each switch to degraded mode is logged once and counted
//! ([`FailoverStatus::degradations`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Bucket, CounterError, Decision, MemoryCounter, Reservation, UsageCounter};
use crate::counter::Ask;

/// What to do when the shared counter cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailPolicy {
    /// Keep serving, counting in a local in-memory counter per instance (the default).
    #[default]
    Open,
    /// Refuse requests that have limits (503) until the counter is back.
    Closed,
}

/// A snapshot of a [`FailoverCounter`]'s health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailoverStatus {
    /// Whether the last call to the primary failed.
    pub degraded: bool,
    /// How many times the counter switched from healthy to degraded.
    pub degradations: u64,
    /// Primary calls that failed or timed out.
    pub failures: u64,
    /// The policy in force.
    pub policy: FailPolicy,
}

/// How long a timed-out reservation is retried for cancellation.
pub const CANCEL_FOR: Duration = Duration::from_secs(60);

/// Wraps a shared counter with timeouts and a fail-open or fail-closed fallback.
#[derive(Debug)]
pub struct FailoverCounter {
    primary: Arc<dyn UsageCounter>,
    local: MemoryCounter,
    policy: FailPolicy,
    timeout: Duration,
    pause: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` before which the primary is not tried: the last
    /// failure plus the pause (0 once a later call succeeded).
    down_until: AtomicU64,
    degraded: AtomicBool,
    degradations: AtomicU64,
    failures: AtomicU64,
}

impl FailoverCounter {
    /// Wraps `primary`: each call may take at most `timeout`; after a failure the primary is
    /// skipped for `pause` before it is tried again.
    pub fn new(
        primary: Arc<dyn UsageCounter>,
        policy: FailPolicy,
        timeout: Duration,
        pause: Duration,
    ) -> Self {
        Self {
            primary,
            local: MemoryCounter::new(),
            policy,
            timeout,
            pause,
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            degradations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The current health figures.
    pub fn status(&self) -> FailoverStatus {
        FailoverStatus {
            degraded: self.degraded.load(Ordering::Relaxed),
            degradations: self.degradations.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            policy: self.policy,
        }
    }

    /// While degraded, tries the primary once (unless it is paused), so the status clears
    /// even when no limited request comes along; `/health` calls this.
    pub async fn probe(&self) -> FailoverStatus {
        if self.degraded.load(Ordering::Relaxed) && !self.primary_paused() {
            let bucket = Bucket {
                level: super::Level::VirtualKey,
                id: uuid::Uuid::nil(),
                metric: super::Metric::Requests,
                window: crate::window::Window::Minute,
            };
            let _ = self.call("probe", self.primary.usage(bucket, 0)).await;
        }
        self.status()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn pause_ms(&self) -> u64 {
        u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX)
    }

    /// When the last failure happened: the pause began then (0 once a later call
    /// succeeded; any later answer then changes nothing).
    fn failed_at(&self) -> u64 {
        self.down_until
            .load(Ordering::Relaxed)
            .saturating_sub(self.pause_ms())
    }

    fn primary_paused(&self) -> bool {
        self.elapsed_ms() < self.down_until.load(Ordering::Relaxed)
    }

    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, CounterError>>,
    ) -> Result<T, CounterError> {
        let started = self.elapsed_ms();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(CounterError(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &result {
            // `>`: a call that started in the same millisecond as the failure may have
            // been sent before it.
            Ok(_) if started > self.failed_at() => {
                self.down_until.store(0, Ordering::Relaxed);
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("usage counter recovered; counting in the shared counter again");
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.down_until.store(
                    self.elapsed_ms().saturating_add(self.pause_ms()),
                    Ordering::Relaxed,
                );
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    self.degradations.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        error = %e,
                        operation = what,
                        policy = ?self.policy,
                        "usage counter degraded; {}",
                        match self.policy {
                            FailPolicy::Open => "counting locally per instance until it is back",
                            FailPolicy::Closed => "refusing limited requests until it is back",
                        }
                    );
                }
            }
        }
        result
    }

    /// Sends `cancel(ticket)` to the primary until it answers (every `pause`, for about
    /// [`CANCEL_FOR`]).
    fn cancel_later(&self, asks: &[Ask], ticket: uuid::Uuid) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let primary = self.primary.clone();
        let asks = asks.to_vec();
        let pause = self.pause.max(Duration::from_millis(10));
        let attempt_timeout = self.timeout.max(Duration::from_millis(500));
        runtime.spawn(async move {
            let started = Instant::now();
            loop {
                let cancelled =
                    tokio::time::timeout(attempt_timeout, primary.cancel(&asks, ticket));
                match cancelled.await {
                    Ok(Ok(())) => return,
                    Ok(Err(_)) | Err(_) if started.elapsed() < CANCEL_FOR => {
                        tokio::time::sleep(pause).await;
                    }
                    _ => {
                        tracing::warn!(
                            %ticket,
                            "a timed-out reservation could not be cancelled in the shared counter; \
                             it may stay counted there until its window ends"
                        );
                        return;
                    }
                }
            }
        });
    }

    async fn fallback_reserve(
        &self,
        asks: &[Ask],
        now_ms: i64,
        error: CounterError,
    ) -> Result<Decision, CounterError> {
        match self.policy {
            FailPolicy::Closed => Err(error),
            FailPolicy::Open => {
                let mut decision = self.local.reserve(asks, now_ms).await?;
                if let Decision::Admitted(reservation) = &mut decision {
                    reservation.fallback = true;
                }
                Ok(decision)
            }
        }
    }
}

#[async_trait]
impl UsageCounter for FailoverCounter {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        if self.primary_paused() {
            let error = CounterError("the shared counter is unavailable".to_owned());
            return self.fallback_reserve(asks, now_ms, error).await;
        }
        // Time-ordered: a counter may file tickets by time (the Redis counter does).
        let ticket = uuid::Uuid::now_v7();
        match self
            .call("reserve", self.primary.reserve_tagged(asks, now_ms, ticket))
            .await
        {
            Ok(decision) => Ok(decision),
            Err(error) => {
                // The call may have reached the primary and still run there: undo it
                // (or keep it from running) in the background, so the request is not
                // counted twice — locally now and in the shared counter later.
                self.cancel_later(asks, ticket);
                self.fallback_reserve(asks, now_ms, error).await
            }
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        if reservation.fallback {
            return self.local.settle(reservation, actual).await;
        }
        self.call("settle", self.primary.settle(reservation, actual))
            .await
    }

    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        if reservation.fallback {
            self.local.settle_now(reservation, actual)
        } else {
            self.primary.settle_now(reservation, actual)
        }
    }

    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        if !self.primary_paused() {
            if let Ok(used) = self.call("usage", self.primary.usage(bucket, now_ms)).await {
                return Ok(used);
            }
        }
        match self.policy {
            FailPolicy::Open => self.local.usage(bucket, now_ms).await,
            FailPolicy::Closed => Err(CounterError("the shared counter is unavailable".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::{Level, Metric};
    use crate::window::Window;

    /// A primary that fails or hangs on demand.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: MemoryCounter,
        mode: std::sync::atomic::AtomicU8,
        /// `usage` waits for `release` while this is set.
        hold_usage: AtomicBool,
        release: tokio::sync::Notify,
    }

    const OK: u8 = 0;
    const FAIL: u8 = 1;
    const HANG: u8 = 2;

    #[async_trait]
    impl UsageCounter for Flaky {
        async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
            match self.mode.load(Ordering::Relaxed) {
                OK => self.inner.reserve(asks, now_ms).await,
                FAIL => Err(CounterError("down".into())),
                _ => std::future::pending().await,
            }
        }
        async fn settle(&self, r: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
            self.inner.settle(r, actual).await
        }
        async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
            if self.hold_usage.load(Ordering::Relaxed) {
                self.release.notified().await;
            }
            self.inner.usage(bucket, now_ms).await
        }
    }

    fn ask() -> Ask {
        Ask {
            bucket: Bucket {
                level: Level::VirtualKey,
                id: uuid::Uuid::nil(),
                metric: Metric::Requests,
                window: Window::Day,
            },
            limit: 3,
            amount: 1,
        }
    }

    #[tokio::test]
    async fn open_falls_back_within_the_timeout_and_recovers() {
        let flaky = Arc::new(Flaky::default());
        let c = FailoverCounter::new(
            flaky.clone(),
            FailPolicy::Open,
            Duration::from_millis(30),
            Duration::from_millis(50),
        );
        assert!(matches!(c.reserve(&[ask()], 0).await, Ok(Decision::Admitted(r)) if !r.fallback));
        flaky.mode.store(HANG, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let Ok(Decision::Admitted(r)) = c.reserve(&[ask()], 0).await else {
            unreachable!("fail open admits")
        };
        assert!(r.fallback && started.elapsed() < Duration::from_millis(500));
        assert!(c.status().degraded);
        // Paused: no wait at all, straight to the local counter.
        let started = std::time::Instant::now();
        assert!(matches!(c.reserve(&[ask()], 0).await, Ok(Decision::Admitted(r)) if r.fallback));
        assert!(started.elapsed() < Duration::from_millis(20));
        assert!(c.settle(&r, &[0]).await.is_ok());
        flaky.mode.store(OK, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(c.reserve(&[ask()], 0).await, Ok(Decision::Admitted(r)) if !r.fallback));
        let status = c.status();
        assert!(!status.degraded);
        assert_eq!(status.degradations, 1);
    }

    #[tokio::test]
    async fn closed_refuses_while_down() {
        let flaky = Arc::new(Flaky::default());
        flaky.mode.store(FAIL, Ordering::Relaxed);
        let c = FailoverCounter::new(
            flaky,
            FailPolicy::Closed,
            Duration::from_millis(30),
            Duration::from_millis(50),
        );
        assert!(c.reserve(&[ask()], 0).await.is_err());
        assert!(c.reserve(&[ask()], 0).await.is_err());
        assert_eq!(c.status().degradations, 1);
        assert_eq!(
            c.status().failures,
            1,
            "paused: the second call did not try"
        );
    }

    fn failing_open() -> (Arc<Flaky>, Arc<FailoverCounter>) {
        let flaky = Arc::new(Flaky::default());
        let c = Arc::new(FailoverCounter::new(
            flaky.clone(),
            FailPolicy::Open,
            Duration::from_millis(30),
            Duration::from_secs(10),
        ));
        (flaky, c)
    }

    #[tokio::test]
    async fn a_success_after_the_failure_ends_the_pause_and_the_degradation() {
        let (flaky, c) = failing_open();
        flaky.mode.store(FAIL, Ordering::Relaxed);
        let Ok(Decision::Admitted(local)) = c.reserve(&[ask()], 0).await else {
            unreachable!("fail open admits")
        };
        assert!(local.fallback && c.status().degraded);
        flaky.mode.store(OK, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(3)).await;
        // A settle is not held back by the pause; its answer shows the primary is back.
        let Ok(Decision::Admitted(shared)) = c.primary.reserve(&[ask()], 0).await else {
            unreachable!("room")
        };
        assert!(c.settle(&shared, &[1]).await.is_ok());
        assert!(!c.status().degraded, "{:?}", c.status());
        let Ok(Decision::Admitted(next)) = c.reserve(&[ask()], 0).await else {
            unreachable!("room")
        };
        assert!(
            !next.fallback,
            "healthy again means counting in the primary again, pause or not"
        );
    }

    #[tokio::test]
    async fn a_late_answer_to_a_call_sent_before_the_failure_changes_nothing() {
        let (flaky, c) = failing_open();
        flaky.hold_usage.store(true, Ordering::Relaxed);
        let early = tokio::spawn({
            let c = c.clone();
            async move { c.usage(ask().bucket, 0).await }
        });
        tokio::time::sleep(Duration::from_millis(3)).await;
        flaky.mode.store(FAIL, Ordering::Relaxed);
        assert!(matches!(c.reserve(&[ask()], 0).await, Ok(Decision::Admitted(r)) if r.fallback));
        flaky.mode.store(OK, Ordering::Relaxed);
        flaky.release.notify_one();
        assert!(matches!(early.await, Ok(Ok(0))));
        assert!(c.status().degraded, "{:?}", c.status());
        assert!(
            matches!(c.reserve(&[ask()], 0).await, Ok(Decision::Admitted(r)) if r.fallback),
            "still paused"
        );
    }
}
