//! Reserves that arrive while a script call is in flight, sent together as the next call.
//!
//! Owns: [`ReserveBatch`]. When no call is in flight a reserve is sent at once from its
//! caller's own task (no timer, no hop through another task). While one is in flight, new
//! reserves queue; when it ends, a task sends the queue as one `reserve.lua` call per up
//! to 128 reserves on one clock (the server's, unless callers bring their own) until it is
//! empty. Under load, then, one script run reads each window
//! hash once (one `HMGET`) and writes it once (one `HSET`) for many requests, and a
//! reservation asking on the same buckets with the same limits as the one before it (one
//! amount per metric, as a request's asks are) is sent as just its three amounts. A batch
//! decides exactly what the same reserves sent one by one in queue order would. A queued
//! reserve whose caller stopped waiting is dropped unsent; one that was already sent is
//! taken back by its ticket (see `cancel.lua`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bb8_redis::redis::Script;
use llmur_core::counter::{Ask, Bucket, CounterError, Level};
use llmur_core::window::Window;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::call::ScriptCall;
use super::keys::{Keys, push_f64};
use super::{MAX_EXACT, Redis};

/// Most reservations in one script call.
const MAX_BATCH: usize = 128;

/// Longest wait for one script call; a connection that does not answer in time is dropped
/// so the next batch does not queue behind it (callers give up long before, by policy).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One reservation's raw reply (see `reserve.lua`).
pub(super) type Reply = Result<Vec<i64>, CounterError>;

/// A reserve to send.
struct Job {
    asks: Vec<Ask>,
    /// The caller's clock, or `None` for the server's.
    now_ms: Option<i64>,
    /// The ticket's hash (or "") and field (or key), if cancellable.
    ticket: Option<(String, Vec<u8>)>,
    /// Where a queued job's reply goes (`None` for the job a caller sends itself).
    reply: Option<oneshot::Sender<Reply>>,
}

impl Job {
    /// Whether nobody waits for this job any more.
    fn abandoned(&self) -> bool {
        self.reply.as_ref().is_some_and(oneshot::Sender::is_closed)
    }
}

/// The reserve queue, shared by every handle of a counter.
pub(super) struct ReserveBatch {
    inner: Arc<Inner>,
}

struct Inner {
    sender: Sender,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A call is in flight (its sender drains the queue when it is done).
    busy: bool,
    queue: Vec<Job>,
}

/// What a batch is sent with.
pub(super) struct Sender {
    pub(super) redis: Arc<Redis>,
    pub(super) script: Script,
    pub(super) keys: Arc<Keys>,
    pub(super) grace_ms: u64,
}

impl ReserveBatch {
    pub(super) fn new(sender: Sender) -> Self {
        Self {
            inner: Arc::new(Inner {
                sender,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Sends a reserve at once when no call is in flight (from the caller's own task: no
    /// hop through another task); otherwise queues it for the next batch and waits.
    pub(super) async fn reserve(
        &self,
        asks: &[Ask],
        now_ms: Option<i64>,
        ticket: Option<(String, Vec<u8>)>,
    ) -> Reply {
        if let Some(ask) = asks.iter().find(|a| a.amount > MAX_EXACT) {
            return Err(CounterError(format!(
                "amount {} for {} {} is above what the Redis counter handles ({MAX_EXACT})",
                ask.amount,
                ask.bucket.level.as_str(),
                ask.bucket.metric.as_str()
            )));
        }
        let mut job = Job {
            asks: asks.to_vec(),
            now_ms,
            ticket,
            reply: None,
        };
        let queued = {
            let mut state = lock(&self.inner.state);
            if state.busy {
                let (reply, rx) = oneshot::channel();
                job.reply = Some(reply);
                state.queue.push(job);
                Err(rx)
            } else {
                state.busy = true;
                Ok(job)
            }
        };
        match queued {
            Ok(job) => {
                // Hands the queue on however this ends, also when this future is dropped.
                let _handoff = Handoff(Arc::clone(&self.inner));
                let jobs = [job];
                self.inner
                    .send(&jobs)
                    .await
                    .and_then(|mut replies| replies.pop().ok_or_else(no_reply))
            }
            Err(rx) => rx.await.unwrap_or_else(|_| {
                Err(CounterError(
                    "the Redis reserve batch was dropped before it answered".to_owned(),
                ))
            }),
        }
    }
}

fn no_reply() -> CounterError {
    CounterError("the reserve script sent no reply".to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On drop, ends the in-flight state: with nothing queued the next reserve is sent at once
/// by its caller; otherwise a task sends the queue in batches until it is empty.
struct Handoff(Arc<Inner>);

impl Drop for Handoff {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if state.queue.is_empty() {
            state.busy = false;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(state);
            runtime.spawn(drain(Arc::clone(&self.0)));
        } else {
            // No runtime left (shutting down): the queued callers get an error.
            state.busy = false;
            state.queue.clear();
        }
    }
}

/// Sends the queue, a batch at a time, until it is empty; then ends the in-flight state.
async fn drain(inner: Arc<Inner>) {
    loop {
        let mut jobs = {
            let mut state = lock(&inner.state);
            if state.queue.is_empty() {
                state.busy = false;
                return;
            }
            // One script call runs on one clock: a batch is the longest run of queued
            // reserves on the first one's clock (all of them, unless callers bring their
            // own clocks).
            let clock = state.queue[0].now_ms;
            let take = state
                .queue
                .iter()
                .take(MAX_BATCH)
                .take_while(|job| job.now_ms == clock)
                .count();
            state.queue.drain(..take).collect::<Vec<_>>()
        };
        // A caller that gave up (a timeout) must not have its reserve applied.
        jobs.retain(|job| !job.abandoned());
        if jobs.is_empty() {
            continue;
        }
        let result = inner.send(&jobs).await;
        match result {
            Ok(replies) => {
                for (job, reply) in jobs.into_iter().zip(replies) {
                    if let Some(tx) = job.reply {
                        let _ = tx.send(Ok(reply));
                    }
                }
            }
            Err(e) => {
                for job in jobs {
                    if let Some(tx) = job.reply {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl Inner {
    /// One script call for `jobs`: a reply per job, in order.
    async fn send(&self, jobs: &[Job]) -> Result<Vec<Vec<i64>>, CounterError> {
        let mut slots = Vec::new();
        let call = self.script_call(jobs, &mut slots);
        let replies = self.sender.call(&call, jobs.len() + 1).await?;
        replay(jobs, &slots, &replies).ok_or_else(|| {
            CounterError(format!(
                "unexpected reply from the reserve script at {}: {replies:?}",
                self.sender.redis.target,
            ))
        })
    }

    /// The script call's arguments (see `reserve.lua`); every job is on the first one's
    /// clock.
    /// `slots` gets each ask's slot (from 0), job after job, for [`replay`].
    fn script_call(&self, jobs: &[Job], slots: &mut Vec<usize>) -> ScriptCall<'_> {
        let sender = &self.sender;
        let mut cache = sender.keys.lock();
        let asks: usize = jobs.iter().map(|job| job.asks.len()).sum();
        // At most a field (about 50 bytes) and 24 bytes of doubles per ask, a ticket (about
        // 60 bytes) per job.
        let mut out = ScriptCall::new(
            &sender.script,
            0,
            16 + asks + 3 * jobs.len(),
            64 + asks * 80 + jobs.len() * 80,
        );
        out.arg(sender.grace_ms).arg(sender.keys.prefix());
        debug_assert!(jobs.windows(2).all(|pair| pair[0].now_ms == pair[1].now_ms));
        match jobs.first().and_then(|job| job.now_ms) {
            Some(now) => out.arg(now),
            None => out.arg(""),
        };
        // The groups: per window kind, its distinct entities in order of first ask; each
        // ask's (group, position, metric) to number its slot once every group's size is
        // known. Sized up front: growing them ask by ask was a third of this function's
        // work.
        let mut groups: Vec<(Window, Vec<&Bucket>)> = Vec::with_capacity(2);
        let mut places: FxHashMap<(Level, Uuid, Window), (usize, usize)> =
            FxHashMap::with_capacity_and_hasher(asks, Default::default());
        let mut asked = Vec::with_capacity(asks);
        for ask in jobs.iter().flat_map(|job| &job.asks) {
            let bucket = &ask.bucket;
            let entity = (bucket.level, bucket.id, bucket.window);
            let (g, j) = *places.entry(entity).or_insert_with(|| {
                let g = match groups.iter().position(|(w, _)| *w == bucket.window) {
                    Some(g) => g,
                    None => {
                        groups.push((bucket.window, Vec::with_capacity(asks)));
                        groups.len() - 1
                    }
                };
                groups[g].1.push(bucket);
                (g, groups[g].1.len() - 1)
            });
            asked.push((g, j, bucket.metric.index()));
        }
        let mut base = Vec::with_capacity(groups.len());
        out.arg(groups.len());
        let mut fields = 0;
        let mut before: &[&Bucket] = &[];
        for (window, entities) in &groups {
            base.push(fields);
            fields += entities.len();
            out.arg(window.as_str());
            // The same entities as the group before, in the same order: named once (0).
            let same = before.len() == entities.len()
                && before
                    .iter()
                    .zip(entities)
                    .all(|(a, b)| a.level == b.level && a.id == b.id);
            if same {
                out.arg(0);
            } else {
                out.arg(entities.len());
                for bucket in entities {
                    out.arg(cache.field(bucket));
                }
            }
            before = entities;
        }
        out.arg(jobs.len());
        let mut rest = asked.as_slice();
        let most = jobs.iter().map(|job| job.asks.len()).max().unwrap_or(0);
        let mut packed = Vec::with_capacity(24 * most);
        // The last job sent in full: its slots (a range of `slots`) and asks. A job asking on
        // the same slots with the same limits, one amount per metric, sends only those amounts.
        let mut full: Option<(std::ops::Range<usize>, &[Ask])> = None;
        for job in jobs {
            match &job.ticket {
                Some((hash, field)) => out.arg(hash.as_str()).arg(field.as_slice()),
                None => out.arg("").arg(""),
            };
            let (places, tail) = rest.split_at(job.asks.len());
            rest = tail;
            let start = slots.len();
            let mut by_metric: [Option<u64>; 3] = [None; 3];
            let mut uniform = true;
            for (ask, &(g, j, metric)) in job.asks.iter().zip(places) {
                // Field f's counts are the slots 3f, 3f + 1, 3f + 2 (Lua counts from 1).
                slots.push(3 * (base[g] + j) + metric);
                uniform &= *by_metric[metric].get_or_insert(ask.amount) == ask.amount;
            }
            let limit = |ask: &Ask| ask.limit.min(MAX_EXACT);
            let same = full.as_ref().is_some_and(|(range, asks)| {
                slots[range.clone()] == slots[start..]
                    && asks.iter().map(limit).eq(job.asks.iter().map(limit))
            });
            packed.clear();
            if uniform && !job.asks.is_empty() && same {
                push_amounts(&mut packed, by_metric);
            } else if let Some(limits) = uniform
                .then(|| dense_limits(&slots[start..], &job.asks, 3 * fields))
                .flatten()
            {
                // Once on every slot: the amounts by metric, then each slot's limit.
                push_amounts(&mut packed, by_metric);
                for limit in limits {
                    push_f64(&mut packed, limit as f64);
                }
                full = Some((start..slots.len(), &job.asks));
            } else {
                // Three columns: the slots, the limits, the amounts.
                for &slot in &slots[start..] {
                    push_f64(&mut packed, (slot + 1) as f64);
                }
                for ask in &job.asks {
                    push_f64(&mut packed, limit(ask) as f64);
                }
                for ask in &job.asks {
                    push_f64(&mut packed, ask.amount as f64);
                }
                full = Some((start..slots.len(), &job.asks));
            }
            out.arg(packed.as_slice());
        }
        out
    }
}

/// The head of the compact and dense forms of `reserve.lua`: 0, then the amounts of
/// requests, tokens and cost.
fn push_amounts(packed: &mut Vec<u8>, by_metric: [Option<u64>; 3]) {
    push_f64(packed, 0.0);
    for amount in by_metric {
        push_f64(packed, amount.unwrap_or(0) as f64);
    }
}

/// Each slot's limit, slot by slot, when `asks` ask once on each of the call's `total`
/// slots (`slots[i]` is ask i's slot): the dense form of `reserve.lua`.
fn dense_limits(slots: &[usize], asks: &[Ask], total: usize) -> Option<Vec<u64>> {
    if total == 0 || slots.len() != total {
        return None;
    }
    // u64::MAX marks a slot not asked yet: a limit is at most MAX_EXACT.
    let mut limits = vec![u64::MAX; total];
    for (&slot, ask) in slots.iter().zip(asks) {
        let limit = limits.get_mut(slot)?;
        if *limit != u64::MAX {
            return None;
        }
        *limit = ask.limit.min(MAX_EXACT);
    }
    Some(limits)
}

impl Sender {
    /// Runs `call`, expecting `expected` bulk strings.
    async fn call(
        &self,
        call: &ScriptCall<'_>,
        expected: usize,
    ) -> Result<Vec<Vec<u8>>, CounterError> {
        let mut conn = self.redis.conn().await?;
        let replies = match tokio::time::timeout(
            CALL_TIMEOUT,
            call.run::<Vec<Vec<u8>>>(&mut conn.conn),
        )
        .await
        {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => return Err(self.redis.fail(&mut conn, &e)),
            Err(_) => {
                conn.broken = true;
                return Err(CounterError(format!(
                    "Redis at {} did not answer within {} ms",
                    self.redis.target,
                    CALL_TIMEOUT.as_millis()
                )));
            }
        };
        if replies.len() != expected {
            return Err(CounterError(format!(
                "unexpected reply from the reserve script at {}: {} replies, {expected} expected",
                self.redis.target,
                replies.len()
            )));
        }
        Ok(replies)
    }
}

/// Each job's reply (see `decode_reserve`), worked out from the script's: the call's `now`
/// and every slot's count before the call, then per job whether it was admitted (`1`),
/// refused (`0`) or cancelled (`2`). The jobs' adds are replayed in order, exactly as the
/// script made them (integers below 2^53 on both sides): an admitted job's counts after its
/// adds, a refused one's first ask without room. Packing each admitted job's counts in
/// Lua cost a sixth of a batched reservation; the script now packs the counts once per call.
/// `None` when the reply does not fit the jobs (a status the replay does not reach).
fn replay(jobs: &[Job], slots: &[usize], replies: &[Vec<u8>]) -> Option<Vec<Vec<i64>>> {
    let (head, statuses) = replies.split_first()?;
    let head = unpack_integers(head)?;
    let (&now, counts) = head.split_first()?;
    let mut counts = counts.to_vec();
    let mut rest = slots;
    let mut out = Vec::with_capacity(jobs.len());
    for (job, status) in jobs.iter().zip(statuses) {
        let (slots, tail) = rest.split_at(job.asks.len());
        rest = tail;
        let added = add(&mut counts, &job.asks, slots, now)?;
        out.push(match (status.as_slice(), added) {
            (b"1", Ok(reply)) => reply,
            (b"0", Err((i, before))) => {
                let index = i64::try_from(i + 1).ok()?;
                vec![0, now, index, before, job.asks[i].bucket.window.end(now)]
            }
            (b"2", Ok(_)) => {
                take_back(&mut counts, &job.asks, slots)?;
                vec![2, now]
            }
            _ => return None,
        });
    }
    Some(out)
}

/// Adds `asks` to `counts` one by one, as the script does: the admitted reply (`1`, `now`,
/// then each ask's count after its add), or, at the first that does not fit, nothing
/// added and that ask's index and count before it. `None` if a slot or an amount is out
/// of range.
fn add(
    counts: &mut [i64],
    asks: &[Ask],
    slots: &[usize],
    now: i64,
) -> Option<Result<Vec<i64>, (usize, i64)>> {
    let mut used = Vec::with_capacity(2 + asks.len());
    used.extend([1, now]);
    for (i, (ask, &slot)) in asks.iter().zip(slots).enumerate() {
        let count = counts.get_mut(slot)?;
        let amount = i64::try_from(ask.amount).ok()?;
        *count += amount;
        if *count > i64::try_from(ask.limit.min(MAX_EXACT)).ok()? {
            let before = *count - amount;
            take_back(counts, &asks[..=i], slots)?;
            return Some(Err((i, before)));
        }
        used.push(*count);
    }
    Some(Ok(used))
}

/// Takes the amounts of `asks` back out of `counts`.
fn take_back(counts: &mut [i64], asks: &[Ask], slots: &[usize]) -> Option<()> {
    for (ask, &slot) in asks.iter().zip(slots) {
        *counts.get_mut(slot)? -= i64::try_from(ask.amount).ok()?;
    }
    Some(())
}

/// The integers packed as little-endian doubles in `bytes`; `None` unless every one is a
/// whole number (every value the script sends is, and below 2^53, so exact).
fn unpack_integers(bytes: &[u8]) -> Option<Vec<i64>> {
    let chunks = bytes.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return None;
    }
    // A loop into a sized vector: collecting into `Option<Vec<_>>` grows it step by step.
    let mut out = Vec::with_capacity(bytes.len() / 8);
    for chunk in chunks {
        let x = f64::from_le_bytes(chunk.try_into().ok()?);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "checked: the double converts back to itself"
        )]
        let n = x as i64;
        if n as f64 != x {
            return None;
        }
        out.push(n);
    }
    Some(out)
}
