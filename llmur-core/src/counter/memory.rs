//! The in-memory [`UsageCounter`]: exact within one process (the embedded default).

use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use rustc_hash::FxHashMap;

use super::{Ask, Bucket, CounterError, Decision, Part, Refusal, Reservation, UsageCounter};

/// How long a finished window is kept so late settles (long streams) still find it.
pub const SETTLE_GRACE_MS: i64 = 10 * 60_000;

/// The in-memory counter: exact within one process. Finished windows are dropped once a
/// minute (of the callers' time), ten minutes after they end.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    /// Keyed by ids of the catalog's own entities, never by client input: a fast
    /// non-keyed hash is safe here.
    counts: Mutex<FxHashMap<(Bucket, i64), u64>>,
    next_prune_ms: AtomicI64,
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
        if now_ms >= self.next_prune_ms.load(Ordering::Relaxed) {
            self.next_prune_ms.store(now_ms + 60_000, Ordering::Relaxed);
            counts
                .retain(|(bucket, start), _| bucket.window.end(*start) + SETTLE_GRACE_MS > now_ms);
        }
        // Each ask is added in turn, so asks on the same bucket add up; the first that
        // does not fit takes back those added before it.
        let mut parts: Vec<Part> = Vec::with_capacity(asks.len());
        // Each window's start and end, worked out once per call (a request asks on up to
        // 24 buckets over at most five windows).
        let mut spans: [Option<(i64, i64)>; 5] = [None; 5];
        for ask in asks {
            let window = ask.bucket.window;
            let (start, resets_at) = match spans.get_mut(window.index()) {
                Some(span) => {
                    *span.get_or_insert_with(|| (window.start(now_ms), window.end(now_ms)))
                }
                None => (window.start(now_ms), window.end(now_ms)),
            };
            let count = counts.entry((ask.bucket, start));
            let used = match &count {
                Entry::Occupied(count) => *count.get(),
                Entry::Vacant(_) => 0,
            };
            if used.saturating_add(ask.amount) > ask.limit {
                // Nothing inserted for the refused ask: a count that existed (maybe at
                // zero, with a settle still to come) stays, and none is made.
                for part in &parts {
                    if let Some(used) = counts.get_mut(&(part.bucket, part.window_start)) {
                        *used = used.saturating_sub(part.amount);
                    }
                }
                return Ok(Decision::Refused(Refusal {
                    bucket: ask.bucket,
                    limit: ask.limit,
                    used,
                    amount: ask.amount,
                    resets_at,
                    now_ms,
                }));
            }
            let used = count.or_insert(0);
            *used = used.saturating_add(ask.amount);
            parts.push(Part {
                bucket: ask.bucket,
                window_start: start,
                resets_at,
                amount: ask.amount,
                limit: ask.limit,
                used: *used,
            });
        }
        Ok(Decision::Admitted(Reservation {
            parts,
            fallback: false,
        }))
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        self.settle_now(reservation, actual);
        Ok(())
    }

    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, part) in reservation.parts.iter().enumerate() {
            let real = actual.get(i).copied().unwrap_or(part.amount);
            // A window already pruned stays gone.
            if let Some(used) = counts.get_mut(&(part.bucket, part.window_start)) {
                // Never refund more than this reservation added.
                *used = used.saturating_sub(part.amount).saturating_add(real);
            }
        }
        true
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
    use crate::counter::{Level, Metric};
    use crate::window::Window;
    use uuid::Uuid;

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

    #[tokio::test]
    async fn a_refusal_keeps_an_empty_count_a_settle_still_needs() {
        let c = MemoryCounter::new();
        let b = bucket(Level::Project, Metric::Tokens, Window::Hour);
        let Ok(Decision::Admitted(zero)) = c
            .reserve(
                &[Ask {
                    bucket: b,
                    limit: 10,
                    amount: 0,
                }],
                0,
            )
            .await
        else {
            unreachable!("0 of 10 fits")
        };
        let refused = c
            .reserve(
                &[Ask {
                    bucket: b,
                    limit: 10,
                    amount: 11,
                }],
                0,
            )
            .await;
        assert!(matches!(refused, Ok(Decision::Refused(_))));
        c.settle(&zero, &[4]).await.expect("settle");
        assert_eq!(c.usage(b, 0).await.expect("usage"), 4);
    }
}
