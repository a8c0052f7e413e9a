//! Usage counters for rate limits: reserve on every bucket at once, settle later.
//!
//! Owns: the [`UsageCounter`] contract, its value types, [`MemoryCounter`] (the in-memory
//! implementation) and [`FailoverCounter`] (a shared counter with a local fallback). A
//! request touches many buckets (key, project, deployment, connection ×
//! requests/tokens/cost × window); [`UsageCounter::reserve`] admits it only if *every*
//! bucket has room for its amount, and then adds all amounts atomically — exactly the limit
//! is admitted, never limit + 1. [`UsageCounter::settle`] replaces the reserved amounts
//! with the real ones in the windows they were reserved in (a refund is never larger than
//! the reservation). Cost is counted in micro-USD so sums are exact.
//! Must not touch: HTTP, the catalog; the proxy decides what to ask for.

mod failover;
mod lease;
mod memory;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::window::Window;

pub use failover::{FailPolicy, FailoverCounter, FailoverStatus};
pub use lease::{LeaseOptions, LeasingCounter};
pub use memory::MemoryCounter;

/// Which entity a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

impl Level {
    /// The name used in keys and messages (`virtual_key`, `project`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::VirtualKey => "virtual_key",
            Level::Project => "project",
            Level::Deployment => "deployment",
            Level::Connection => "connection",
        }
    }
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests.
    Requests,
    /// Input plus output tokens.
    Tokens,
    /// Cost in micro-USD.
    CostMicros,
}

impl Metric {
    /// The name used in keys and messages (`requests`, `tokens`, `cost_micros`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::CostMicros => "cost_micros",
        }
    }

    /// Its place among the three (requests 0, tokens 1, cost 2): where it goes in
    /// per-metric arrays and packed counts.
    pub fn index(self) -> usize {
        match self {
            Metric::Requests => 0,
            Metric::Tokens => 1,
            Metric::CostMicros => 2,
        }
    }
}

/// One counter: an entity, a metric and a window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// One bucket of an admitted reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The bucket.
    pub bucket: Bucket,
    /// Start of the window the amount went into (Unix ms).
    pub window_start: i64,
    /// End of that window (Unix ms): when the bucket is empty again.
    pub resets_at: i64,
    /// The amount reserved.
    pub amount: u64,
    /// The bucket's limit.
    pub limit: u64,
    /// The bucket's usage right after this reservation was added.
    pub used: u64,
}

impl Part {
    /// Room left in the bucket after this reservation.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// What was reserved, to be settled later.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reservation {
    /// One part per ask, in the order asked.
    pub parts: Vec<Part>,
    /// Reserved by a fallback counter (see [`FailoverCounter`]); settles go there too.
    pub fallback: bool,
}

impl Reservation {
    /// Splits the parts into those `keep` accepts and the rest, each with this
    /// reservation's origin.
    pub fn split(self, keep: impl Fn(&Part) -> bool) -> (Reservation, Reservation) {
        // Sized up front: `partition` grows both vectors a part at a time.
        let kept = self.parts.iter().filter(|p| keep(p)).count();
        let mut a = Vec::with_capacity(kept);
        let mut b = Vec::with_capacity(self.parts.len() - kept);
        for part in self.parts {
            if keep(&part) {
                a.push(part);
            } else {
                b.push(part);
            }
        }
        (
            Reservation {
                parts: a,
                fallback: self.fallback,
            },
            Reservation {
                parts: b,
                fallback: self.fallback,
            },
        )
    }
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
    /// What was asked for it.
    pub amount: u64,
    /// When its window ends (Unix ms): the earliest the request could succeed.
    pub resets_at: i64,
    /// The counter's time when it refused (Unix ms).
    pub now_ms: i64,
}

/// The answer to a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every bucket had room; all amounts were added.
    Admitted(Reservation),
    /// At least one bucket had no room; nothing was added.
    Refused(Refusal),
}

/// A counter backend failure (e.g. Redis unreachable or too slow).
#[derive(Debug, Clone, thiserror::Error)]
#[error("usage counter unavailable: {0}")]
pub struct CounterError(pub String);

/// Atomic multi-bucket reservation with a later settle.
///
/// Implementations must pass `llmur_testkit::conformance::counter` (the same suite runs
/// on the in-memory and the Redis counter).
#[async_trait]
pub trait UsageCounter: Send + Sync + std::fmt::Debug + 'static {
    /// Admits all of `asks` or none. Asks on the same bucket add up, as if asked one after
    /// the other. `now_ms` is the caller's clock; a counter with a clock of its own
    /// (Redis) may use that instead, and reports its time in the answer.
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError>;
    /// Replaces each reserved amount with `actual[i]` (same order as the parts), in the
    /// window it was reserved in. A refund never exceeds what the part reserved; a part
    /// whose window has expired is ignored.
    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError>;
    /// The current usage of `bucket` in the window containing `now_ms`.
    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError>;

    /// Like [`reserve`](Self::reserve), tagged with `ticket` so that
    /// [`cancel`](Self::cancel) can undo it when its answer is lost (a timeout after the
    /// call was sent). The default ignores the ticket: for counters whose calls cannot be
    /// lost halfway, such as the in-memory one.
    async fn reserve_tagged(
        &self,
        asks: &[Ask],
        now_ms: i64,
        ticket: Uuid,
    ) -> Result<Decision, CounterError> {
        let _ = ticket;
        self.reserve(asks, now_ms).await
    }

    /// Undoes the reserve tagged `ticket` (same `asks`) if it was applied, and makes sure
    /// it is never applied if it has not run yet. Idempotent; the default does nothing.
    async fn cancel(&self, asks: &[Ask], ticket: Uuid) -> Result<(), CounterError> {
        let _ = (asks, ticket);
        Ok(())
    }

    /// Settles without waiting, when this counter can, and says whether it did: at once
    /// (an in-process counter), or by handing the correction to a batch of its own that
    /// logs a failed write (the Redis counter); otherwise the same contract as
    /// [`settle`](Self::settle). The default does nothing and returns `false`, and the
    /// caller then runs `settle` in a task. The proxy settles every request: this spares
    /// a counter a task per request.
    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        let _ = (reservation, actual);
        false
    }
}
