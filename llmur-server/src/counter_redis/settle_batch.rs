//! Settles gathered over a few milliseconds and sent as one script call.
//!
//! Owns: [`SettleBatch`]. Under load many requests settle the same buckets (the same key,
//! project, deployment and connection); their corrections are summed per bucket window and
//! written together, so Redis does one read and one write per window hash per batch
//! instead of one per request. Each `settle` still returns only once its own correction is
//! written (or has failed), so callers see the same contract as an unbatched settle; a
//! `queue`d one (the proxy's, through `settle_now`) does not wait at all, and a failed write
//! is logged for it. The write runs in a task of its own: a caller that gives up waiting
//! (a timeout) cannot strand the batch.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bb8_redis::redis::Script;
use llmur_core::counter::{Bucket, CounterError, Level};
use llmur_core::window::Window;
use rustc_hash::FxHashMap;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::call::ScriptCall;
use super::keys::{Keys, push_f64};
use super::{MAX_EXACT, Redis};

/// An entity's window: the entity, the window kind and the window's start (ms).
type EntityWindow = (Level, Uuid, Window, i64);

/// An entity and its sums, as written to one window's hash.
type EntitySums<'a> = (Level, Uuid, &'a [u64; 6]);

/// One part to settle: its bucket, its window's start, the reserved and actual amounts.
pub(super) type SettlePart = (Bucket, i64, u64, u64);

type Waiter = oneshot::Sender<Result<(), CounterError>>;

#[derive(Default)]
struct Pending {
    /// Per entity window: the reserved requests, tokens and cost, then the actual ones,
    /// summed (what `settle.lua` takes per field). Keys are named only when written.
    parts: FxHashMap<EntityWindow, [u64; 6]>,
    waiters: Vec<Waiter>,
    /// Settles queued without a waiter (see [`SettleBatch::queue`]).
    unwaited: usize,
}

/// The batch being gathered, shared by all clones of the counter's handle.
pub(super) struct SettleBatch {
    redis: Arc<Redis>,
    keys: Arc<Keys>,
    script: Script,
    /// How long the first settle of a batch waits for others to join it.
    window: Duration,
    pending: Mutex<Option<Pending>>,
}

impl SettleBatch {
    pub(super) fn new(
        redis: Arc<Redis>,
        keys: Arc<Keys>,
        script: Script,
        window: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            redis,
            keys,
            script,
            window,
            pending: Mutex::new(None),
        })
    }

    /// Adds `(bucket, window start, reserved, actual)` corrections and waits until they
    /// are written.
    pub(super) async fn settle(
        self: &Arc<Self>,
        parts: Vec<SettlePart>,
    ) -> Result<(), CounterError> {
        if parts.is_empty() {
            return Ok(());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(CounterError("no runtime to write a settle on".to_owned()));
        };
        let (tx, rx) = oneshot::channel();
        self.add(&runtime, parts, Some(tx));
        rx.await.unwrap_or_else(|_| {
            Err(CounterError(
                "the settle batch was dropped before it was written".to_owned(),
            ))
        })
    }

    /// Adds corrections without waiting for them: the batch logs a failed write itself.
    /// `false` (nothing added) when there is no runtime to write them on.
    pub(super) fn queue(self: &Arc<Self>, parts: Vec<SettlePart>) -> bool {
        if parts.is_empty() {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        self.add(&runtime, parts, None);
        true
    }

    /// Adds corrections to the open batch, or opens one and spawns its write on `runtime`.
    fn add(self: &Arc<Self>, runtime: &Handle, parts: Vec<SettlePart>, waiter: Option<Waiter>) {
        let start_batch = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let open = pending.is_none();
            let batch = pending.get_or_insert_with(Pending::default);
            for (bucket, start, reserved, actual) in parts {
                let key = (bucket.level, bucket.id, bucket.window, start);
                let sums = batch.parts.entry(key).or_insert([0; 6]);
                let m = bucket.metric.index();
                sums[m] = sums[m].saturating_add(reserved);
                sums[3 + m] = sums[3 + m].saturating_add(actual);
            }
            match waiter {
                Some(waiter) => batch.waiters.push(waiter),
                None => batch.unwaited += 1,
            }
            open
        };
        if start_batch {
            let this = Arc::clone(self);
            runtime.spawn(async move { this.flush().await });
        }
    }

    async fn flush(&self) {
        tokio::time::sleep(self.window).await;
        let batch = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(batch) = batch else { return };
        let result = self.write(&batch.parts).await;
        if let Err(e) = &result {
            if batch.unwaited > 0 {
                tracing::warn!(
                    error = %e,
                    settles = batch.unwaited,
                    "usage settle failed; the reserved amounts stay counted"
                );
            }
        }
        for waiter in batch.waiters {
            let _ = waiter.send(result.clone());
        }
    }

    async fn write(&self, parts: &FxHashMap<EntityWindow, [u64; 6]>) -> Result<(), CounterError> {
        // Grouped by window hash: one HMGET and at most one HSET per hash (see
        // `settle.lua`). An entity whose every sum nets to nothing is left out.
        let mut hashes: FxHashMap<(Window, i64), Vec<EntitySums<'_>>> = FxHashMap::default();
        for (&(level, id, window, start), sums) in parts {
            if sums[..3] != sums[3..] {
                hashes
                    .entry((window, start))
                    .or_default()
                    .push((level, id, sums));
            }
        }
        if hashes.is_empty() {
            return Ok(());
        }
        let hashes: Vec<_> = hashes.into_iter().collect();
        let entities: usize = hashes.iter().map(|(_, entities)| entities.len()).sum();
        let mut call = ScriptCall::new(
            &self.script,
            hashes.len(),
            2 * hashes.len() + 2 * entities,
            hashes.len() * 64 + entities * 100,
        );
        for ((window, start), _) in &hashes {
            call.arg(self.keys.hash(*window, *start));
        }
        {
            let mut fields = self.keys.lock();
            let mut packed = Vec::with_capacity(48);
            for (_, entities) in &hashes {
                call.arg(entities.len());
                for &(level, id, sums) in entities {
                    packed.clear();
                    for &amount in sums {
                        // At most 2^53 - 1 (the counter clamps), so exact as a double.
                        push_f64(&mut packed, amount.min(MAX_EXACT) as f64);
                    }
                    call.arg(fields.entity(level, id)).arg(packed.as_slice());
                }
            }
        }
        self.redis.run::<i64>(&call).await.map(|_| ())
    }
}
