//! Usage counters for rate limits: reserve on every bucket at once, settle later.
//!
//! Owns: the [`UsageCounter`] contract and [`MemoryCounter`], its in-memory
//! implementation. A request touches many buckets (key, project, deployment, connection ×
//! requests/tokens/cost × window); [`UsageCounter::reserve`] admits it only if *every*
//! bucket has room for its amount, and then adds all amounts atomically — exactly the limit
//! is admitted, never limit + 1. [`UsageCounter::settle`] replaces the reserved amounts
//! with the real ones in the windows they were reserved in (a refund is never larger than
//! the reservation). Cost is counted in micro-USD so sums are exact.
//!
//! Not wired into the proxy yet: the limits work builds on this contract (and adds a Redis
//! implementation running one Lua script per reserve).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::window::Window;

/// Which entity a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A virtual key.
    VirtualKey,
    /// A project.
    Project,
    /// A deployment.
    Deployment,
    /// A connection.
    Connection,
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests.
    Requests,
    /// Input plus output tokens.
    Tokens,
    /// Cost in micro-USD.
    CostMicros,
}

/// One counter: an entity, a metric and a window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bucket {
    /// The entity's level.
    pub level: Level,
    /// The entity's id.
    pub id: Uuid,
    /// What is counted.
    pub metric: Metric,
    /// The window kind.
    pub window: Window,
}

/// Room asked for in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The bucket.
    pub bucket: Bucket,
    /// Its limit for the window.
    pub limit: u64,
    /// The amount to reserve.
    pub amount: u64,
}

/// What was reserved, to be settled later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Per ask, in order: bucket, window start (Unix ms) and reserved amount.
    pub parts: Vec<(Bucket, i64, u64)>,
}

/// Why a reservation was refused: the first bucket without room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The bucket.
    pub bucket: Bucket,
    /// Its limit.
    pub limit: u64,
    /// What it had used.
    pub used: u64,
    /// When its window ends (Unix ms): the earliest the request could succeed.
    pub resets_at: i64,
}

/// The answer to a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every bucket had room; all amounts were added.
    Admitted(Reservation),
    /// At least one bucket had no room; nothing was added.
    Refused(Refusal),
}

/// A counter backend failure (e.g. Redis unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("usage counter unavailable: {0}")]
pub struct CounterError(pub String);

/// Atomic multi-bucket reservation with a later settle.
#[async_trait]
pub trait UsageCounter: Send + Sync + std::fmt::Debug + 'static {
    /// Admits all of `asks` or none, at `now_ms` (the counter's time for window math).
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError>;
    /// Replaces each reserved amount with `actual[i]` (same order as the reservation).
    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError>;
    /// The current usage of `bucket` in the window containing `now_ms`.
    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError>;
}

/// The in-memory counter: exact within one process.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    counts: Mutex<HashMap<(Bucket, i64), u64>>,
}

impl MemoryCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops windows that ended before `now_ms` (call now and then).
    pub fn prune(&self, now_ms: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.retain(|(bucket, start), _| bucket.window.end(*start) > now_ms);
    }
}

#[async_trait]
impl UsageCounter for MemoryCounter {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for ask in asks {
            let start = ask.bucket.window.start(now_ms);
            let used = counts.get(&(ask.bucket, start)).copied().unwrap_or(0);
            if used.saturating_add(ask.amount) > ask.limit {
                return Ok(Decision::Refused(Refusal {
                    bucket: ask.bucket,
                    limit: ask.limit,
                    used,
                    resets_at: ask.bucket.window.end(now_ms),
                }));
            }
        }
        let mut parts = Vec::with_capacity(asks.len());
        for ask in asks {
            let start = ask.bucket.window.start(now_ms);
            let used = counts.entry((ask.bucket, start)).or_insert(0);
            *used = used.saturating_add(ask.amount);
            parts.push((ask.bucket, start, ask.amount));
        }
        Ok(Decision::Admitted(Reservation { parts }))
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, (bucket, start, reserved)) in reservation.parts.iter().enumerate() {
            let real = actual.get(i).copied().unwrap_or(*reserved);
            let used = counts.entry((*bucket, *start)).or_insert(0);
            // Never refund more than this reservation added.
            *used = used.saturating_sub(*reserved).saturating_add(real);
        }
        Ok(())
    }

    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(counts
            .get(&(bucket, bucket.window.start(now_ms)))
            .copied()
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(level: Level, metric: Metric, window: Window) -> Bucket {
        Bucket {
            level,
            id: Uuid::nil(),
            metric,
            window,
        }
    }

    #[tokio::test]
    async fn exactly_the_limit_is_admitted_all_or_nothing() {
        let c = MemoryCounter::new();
        let key = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
        let project = bucket(Level::Project, Metric::Tokens, Window::Day);
        let now = 1_000_000;
        let mut admitted = 0;
        for _ in 0..10 {
            let asks = [
                Ask {
                    bucket: key,
                    limit: 5,
                    amount: 1,
                },
                Ask {
                    bucket: project,
                    limit: 1_000,
                    amount: 100,
                },
            ];
            if let Ok(Decision::Admitted(_)) = c.reserve(&asks, now).await {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5);
        assert_eq!(
            c.usage(project, now).await.ok(),
            Some(500),
            "refusals add nothing"
        );
        // A new minute has room again for the key; the day bucket keeps counting.
        let later = Window::Minute.end(now);
        let asks = [Ask {
            bucket: key,
            limit: 5,
            amount: 1,
        }];
        assert!(matches!(
            c.reserve(&asks, later).await,
            Ok(Decision::Admitted(_))
        ));
    }

    #[tokio::test]
    async fn settle_replaces_the_reservation_and_never_over_refunds() {
        let c = MemoryCounter::new();
        let tokens = bucket(Level::Deployment, Metric::Tokens, Window::Hour);
        let now = 5 * 3_600_000 + 10;
        let Ok(Decision::Admitted(r)) = c
            .reserve(
                &[Ask {
                    bucket: tokens,
                    limit: 10_000,
                    amount: 1_000,
                }],
                now,
            )
            .await
        else {
            unreachable!("room")
        };
        assert!(c.settle(&r, &[250]).await.is_ok());
        assert_eq!(c.usage(tokens, now).await.ok(), Some(250));
        // Settling in a later window still corrects the window it was reserved in.
        let next_hour = Window::Hour.end(now);
        let Ok(Decision::Admitted(r2)) = c
            .reserve(
                &[Ask {
                    bucket: tokens,
                    limit: 10_000,
                    amount: 100,
                }],
                now,
            )
            .await
        else {
            unreachable!("room")
        };
        assert!(c.settle(&r2, &[0]).await.is_ok());
        assert_eq!(c.usage(tokens, now).await.ok(), Some(250));
        assert_eq!(c.usage(tokens, next_hour).await.ok(), Some(0));
        c.prune(Window::Hour.end(next_hour));
        assert_eq!(c.usage(tokens, now).await.ok(), Some(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reserves_never_exceed_the_limit() {
        let c = std::sync::Arc::new(MemoryCounter::new());
        let b = bucket(Level::Connection, Metric::CostMicros, Window::Month);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    let asks = [Ask {
                        bucket: b,
                        limit: 17_000,
                        amount: 1_000,
                    }];
                    matches!(c.reserve(&asks, 42).await, Ok(Decision::Admitted(_)))
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            if t.await.unwrap_or(false) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 17);
        assert_eq!(c.usage(b, 42).await.ok(), Some(17_000));
    }
}
