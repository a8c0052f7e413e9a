//! Leases: room taken from a shared counter ahead of need and handed out in-process.
//!
//! Owns: [`LeasingCounter`] and [`LeaseOptions`]. When a bucket has plenty of room, the
//! reserve that misses locally also takes a *lease* on it: `requests` times the ask more,
//! at most `1/share` of the room the counter last reported. The next requests draw on the
//! lease without a counter call, and their settles correct it in place; after `ttl` (or at
//! the window's end) what is left goes back in one settle. A lease drawn low or near its
//! `ttl` is renewed ahead, in the background, by one reserve: topped up in place to its
//! size, so nothing goes back (or, when the room has shrunk below what it still holds,
//! replaced by a fresh one while the old goes back). A lease is an ordinary reservation on
//! the shared counter, so the counter never holds more than its limit: the sum of
//! everything admitted, leased or not, stays within it on every instance together. What a
//! lease can do is hold room another instance could have used; so a refusal on a bucket
//! that leases can reach is confirmed once per window, after `ttl` plus a grace (by when
//! every lease held before it has gone back, or been renewed by a reserve the counter
//! admitted within the limit), before it is given. Leases grow on
//! busy buckets and shrink on idle ones ([`LeaseOptions::requests`]). The usage figures
//! read from the counter are exact: calls whose answers are read and this process's
//! background changes (renewals, returns, refunds) wait for each other on a bucket, so no
//! answer includes a change not yet known here (`Shared::begin_call`).
//! Must not touch: HTTP, the catalog, the shared counter's own storage.

mod state;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::{Ask, Bucket, CounterError, Decision, Part, Reservation, UsageCounter};
use state::{Draws, Lease, Shared, Slot, spawn_settle};

/// How a [`LeasingCounter`] sizes and keeps its leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// A lease takes this many times the ask that took it (default 32): about this many
    /// requests are served before the shared counter is asked again. On a bucket whose
    /// leases run low within half their time (many requests in flight at once), leases
    /// grow, doubling up to 16 times this; one that expires more than half unused halves
    /// it again. Never more than `1/share` of the room either way.
    pub requests: u64,
    /// How long a lease is drawn on before what is left goes back (default 50 ms).
    pub ttl: Duration,
    /// A lease never takes more than `1/share` of the room the counter last reported
    /// (default 64), so leases stop well before a limit and the last of the room is
    /// reserved request by request.
    pub share: u64,
    /// Extra wait after `ttl` before a refusal is confirmed, for returns in flight
    /// (default 25 ms).
    pub grace: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            requests: 32,
            ttl: Duration::from_millis(50),
            share: 64,
            grace: Duration::from_millis(25),
        }
    }
}

/// Wraps a shared counter (Redis) with leases; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeasingCounter {
    shared: Arc<Shared>,
}

impl LeasingCounter {
    /// Wraps `inner`, the shared counter every instance reserves on.
    pub fn new(inner: Arc<dyn UsageCounter>, options: LeaseOptions) -> Self {
        let options = LeaseOptions {
            requests: options.requests.max(1),
            share: options.share.max(1),
            ttl: options.ttl.max(Duration::from_millis(1)),
            ..options
        };
        Self {
            shared: Arc::new(Shared {
                inner,
                options,
                epoch: Instant::now(),
                slots: Mutex::new(FxHashMap::default()),
                sweeping: AtomicBool::new(false),
                caller_ms: AtomicI64::new(0),
                arrived: tokio::sync::Notify::new(),
                quiet: tokio::sync::Notify::new(),
                local: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
            }),
        }
    }

    /// Gives every lease's unused room back now (call on shutdown); returns once the
    /// shared counter has taken it (not merely queued it).
    pub async fn release_all(&self) {
        let leases: Vec<Lease> = {
            let mut slots = self.shared.lock();
            slots
                .values_mut()
                .filter_map(|s| s.lease.take().map(|l| l.leaving(s)))
                .collect()
        };
        self.shared.give_back(leases).await;
        // Returns of replaced leases run in tasks of their own: wait for them too.
        self.shared
            .poll_until(Instant::now() + Duration::from_secs(1), |slots| {
                !slots.values().any(Slot::changing)
            })
            .await;
    }

    /// Reserves admitted in process, from leases alone, since start.
    pub fn admitted_locally(&self) -> u64 {
        self.shared.local.load(Ordering::Relaxed)
    }

    /// Calls on the shared counter that renewed leases ahead, in the background, since
    /// start: the Redis calls leases cost beyond those of requests that found none.
    pub fn renewed_ahead(&self) -> u64 {
        self.shared.renewals.load(Ordering::Relaxed)
    }

    /// How many leases are held now.
    pub fn leases(&self) -> usize {
        self.shared
            .lock()
            .values()
            .filter(|s| s.lease.is_some())
            .count()
    }
}

/// The plan for one reserve: parts drawn here, and what to ask the shared counter.
struct Plan {
    parts: Vec<Option<Part>>,
    draws: Draws,
    /// Indices (into the asks) of those asked of the shared counter, with the lease
    /// taken on top of each.
    missing: Vec<(usize, u64)>,
    /// Leases to renew in the background, for leases drawn low or old by this request
    /// (every ask drawn here): nobody waits for them.
    ahead: Vec<Ask>,
    /// Per ask of `ahead`: whether it tops the lease up in place (else it replaces it).
    top_ups: Vec<bool>,
    /// Some ask missed while a lease for it is on its way.
    wait: bool,
}

impl Plan {
    /// Renews `ask`'s lease, which holds `unused`, in the background up to `more`: topped
    /// up by the difference in place when it holds less (one call, nothing to give back),
    /// otherwise (the room shrank) replaced by a fresh lease of `more`.
    fn renew(&mut self, slot: &mut Slot, ask: &Ask, more: u64, unused: u64) {
        slot.renewing = true;
        let top_up = more > unused;
        self.ahead.push(Ask {
            amount: if top_up { more - unused } else { more },
            ..*ask
        });
        self.top_ups.push(top_up);
    }
}

impl LeasingCounter {
    fn plan(&self, asks: &[Ask], now_ms: i64) -> Plan {
        let shared = &self.shared;
        let now = shared.now();
        let mut plan = Plan {
            parts: vec![None; asks.len()],
            // Sized up front: a request draws on every bucket it asks (24 with limits on all
            // four levels), and growing a part at a time reallocated five times.
            draws: Vec::with_capacity(asks.len()),
            missing: Vec::new(),
            ahead: Vec::new(),
            top_ups: Vec::new(),
            wait: false,
        };
        let mut slots = shared.lock();
        let ttl = millis(shared.options.ttl);
        // The common case first, one lookup an ask: a lease that serves its ask and is not
        // low is drawn on whatever the other asks need (only a low lease's fate depends on
        // them). The rest, from the first ask that is not so, are planned below.
        let mut first = 0;
        for ask in asks {
            let Some(lease) = slots.get_mut(&ask.bucket).and_then(|s| s.lease.as_mut()) else {
                break;
            };
            if !lease.usable(ask, now, now_ms) || lease.low(ask, now, ttl) {
                break;
            }
            let part = lease.draw(ask.amount);
            plan.draws.push(part);
            plan.parts[first] = Some(part);
            first += 1;
        }
        // When the counter is asked anyway, leases running low are topped up in the same
        // call, so that a request's leases run out together rather than one call each.
        let refresh = asks.iter().skip(first).any(|ask| {
            !slots
                .get(&ask.bucket)
                .and_then(|s| s.lease.as_ref())
                .is_some_and(|l| l.usable(ask, now, now_ms))
        });
        for (i, ask) in asks.iter().enumerate().skip(first) {
            let slot = slots.entry(ask.bucket).or_default();
            let lease = slot.lease.as_ref();
            let usable = lease.is_some_and(|l| l.usable(ask, now, now_ms));
            let drawn_low = lease.is_some_and(|l| l.drawn_low(ask));
            // What is left of the lease's time.
            let left = lease.map(|l| l.expires.saturating_sub(now));
            let low = lease.is_some_and(|l| l.low(ask, now, ttl));
            if drawn_low && !slot.renewing && left.is_some_and(|t| t > ttl / 2) {
                // Run low within half its time: requests in flight hold much of it at
                // once. The next lease on this bucket is larger.
                slot.scale = (slot.scale.max(1) * 2).min(state::MAX_SCALE);
            }
            let extra = if usable && !(refresh && low) {
                0
            } else {
                shared.lease_size(slot, ask, now_ms)
            };
            match slot.lease.as_mut() {
                Some(lease) if usable && extra == 0 => {
                    let part = lease.draw(ask.amount);
                    let unused = lease.unused();
                    plan.draws.push(part);
                    plan.parts[i] = Some(part);
                    if !refresh && low {
                        // Renewed ahead, in the background, before it runs out.
                        let more = if slot.renewing {
                            0
                        } else {
                            shared.lease_size(slot, ask, now_ms)
                        };
                        if more > 0 {
                            plan.renew(slot, ask, more, unused);
                        }
                    }
                }
                _ => {
                    if extra > 0 {
                        slot.asking = true;
                    } else if slot.renewing || slot.asking {
                        // A lease is on its way: better to wait for it than to call too.
                        plan.wait = true;
                    }
                    plan.missing.push((i, extra));
                }
            }
        }
        if !refresh && !plan.ahead.is_empty() {
            self.coalesce(&mut slots, asks, &mut plan, now, now_ms, ttl);
        }
        plan
    }

    /// A renewal goes out anyway: tops up, in the same call, this request's other leases
    /// at less than half their room or time, so that its leases come due together.
    /// Without this the requests', tokens' and cost's leases, each drawn at its own pace,
    /// renew apart, a call each. Only what tops a lease up to its size is asked; a lease
    /// already holding that much is left to renew on its own.
    fn coalesce(
        &self,
        slots: &mut FxHashMap<Bucket, Slot>,
        asks: &[Ask],
        plan: &mut Plan,
        now: u64,
        now_ms: i64,
        ttl: u64,
    ) {
        for ask in asks {
            let Some(slot) = slots.get_mut(&ask.bucket) else {
                continue;
            };
            let Some(lease) = slot.lease.as_ref().filter(|_| !slot.renewing) else {
                continue;
            };
            // This request's draw is already taken from it.
            if !(lease.live(ask.limit, now, now_ms) && lease.short_of(0, 2, now, ttl)) {
                continue;
            }
            let unused = lease.unused();
            let more = self.shared.lease_size(slot, ask, now_ms);
            if more > unused {
                plan.renew(slot, ask, more, unused);
            }
        }
    }

    /// Records the shared counter's answer on the asks it was given: what it saw, and the
    /// leases it granted. Returns leases replaced (to give back).
    fn install(&self, asks: &[Ask], plan: &mut Plan, answer: &Reservation) -> Vec<Lease> {
        let now = self.shared.now();
        let mut replaced = Vec::new();
        let mut slots = self.shared.lock();
        for (&(i, extra), part) in plan.missing.iter().zip(&answer.parts) {
            let slot = slots.entry(asks[i].bucket).or_default();
            slot.saw(part.remaining(), part.limit, part.resets_at);
            // Room on its way back is still in the counter's answer, not usage.
            let returning = slot.in_flight(part.window_start);
            if extra == 0 {
                // Its usage less the room this process holds leased on it.
                let used = match slot.lease_in(part.window_start) {
                    Some(lease) => {
                        lease.others = part
                            .used
                            .saturating_sub(lease.part.amount)
                            .saturating_sub(returning);
                        lease.others.saturating_add(lease.drawn)
                    }
                    None => part.used.saturating_sub(returning),
                };
                plan.parts[i] = Some(Part { used, ..*part });
                continue;
            }
            slot.asking = false;
            replaced.extend(slot.grant(part, now + millis(self.shared.options.ttl)));
            plan.parts[i] = slot.lease.as_mut().map(|l| l.draw(asks[i].amount));
        }
        replaced
    }

    /// Renews the leases `plan` found drawn low or old (its `ahead`: the lease amounts
    /// alone), in a task of its own, in one call: each is topped up in place where the
    /// plan says so and the answer allows (same window and limit); otherwise the fresh
    /// lease replaces the bucket's current one, which goes back.
    fn renew_ahead(&self, plan: &mut Plan, now_ms: i64) {
        if plan.ahead.is_empty() {
            return;
        }
        let asks = std::mem::take(&mut plan.ahead);
        let top_ups = std::mem::take(&mut plan.top_ups);
        let shared = self.shared.clone();
        // No lease came of it: whoever waits for one asks itself.
        let clear = move |shared: &Shared, asks: &[Ask]| {
            {
                let mut slots = shared.lock();
                for ask in asks {
                    if let Some(slot) = slots.get_mut(&ask.bucket) {
                        slot.renewing = false;
                    }
                }
            }
            shared.arrived.notify_waiters();
            shared.quiet.notify_waiters();
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            clear(&shared, &asks);
            return;
        };
        runtime.spawn(async move {
            // Not while a call whose answer is read here is in flight on these buckets:
            // the lease could land in Redis before that answer and not be known here yet.
            let buckets = buckets_of_asks(&asks);
            shared.until_no_calls(&buckets).await;
            shared.renewals.fetch_add(1, Ordering::Relaxed);
            let answer = shared.inner.reserve(&asks, now_ms).await;
            let Ok(Decision::Admitted(reservation)) = answer else {
                clear(&shared, &asks);
                return;
            };
            if reservation.fallback {
                // Counted by the fallback counter: no leases from it.
                let zeros = vec![0; reservation.parts.len()];
                clear(&shared, &asks);
                spawn_settle(shared.inner.clone(), reservation, zeros);
                return;
            }
            let now = shared.now();
            let mut replaced = Vec::new();
            {
                let mut slots = shared.lock();
                let expires = now + millis(shared.options.ttl);
                for (part, &top_up) in reservation.parts.iter().zip(&top_ups) {
                    let slot = slots.entry(part.bucket).or_default();
                    slot.renewing = false;
                    if !(top_up && slot.top_up(part, expires)) {
                        replaced.extend(slot.grant(part, expires));
                    }
                }
            }
            shared.arrived.notify_waiters();
            shared.quiet.notify_waiters();
            shared.give_back(replaced).await;
        });
    }

    /// The shared counter's answer to `asks` as usage (see [`Shared::adjusted`]), read
    /// while no background change of this process is on its way on them.
    async fn call(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        let buckets = buckets_of_asks(asks);
        self.shared.begin_call(&buckets, self.call_deadline()).await;
        let answer = self.shared.inner.reserve(asks, now_ms).await;
        let decision = answer.map(|a| self.shared.adjusted(a));
        self.shared.end_call(&buckets);
        decision
    }

    /// How long a call waits for background changes on its buckets to land: a lease's
    /// time and the grace, then it goes regardless.
    fn call_deadline(&self) -> Instant {
        Instant::now() + self.shared.options.ttl + self.shared.options.grace
    }

    fn clear_asking(&self, asks: &[Ask], plan: &Plan) {
        let mut cleared = false;
        {
            let mut slots = self.shared.lock();
            for &(i, extra) in &plan.missing {
                if extra > 0 {
                    if let Some(slot) = slots.get_mut(&asks[i].bucket) {
                        slot.asking = false;
                        cleared = true;
                    }
                }
            }
        }
        if cleared {
            // Whoever waits for this lease asks for one itself now.
            self.shared.arrived.notify_waiters();
        }
    }

    /// Makes sure a refusal is not caused by leases: gives this process's lease on the
    /// refused bucket back and asks again; and on a bucket leases can reach, once per
    /// window, first waits until every lease taken before the refusal has gone back.
    async fn confirm(
        &self,
        asks: &[Ask],
        now_ms: i64,
        mut decision: Decision,
    ) -> Result<Decision, CounterError> {
        // Other tasks of this process may take a lease on the bucket or give one back
        // meanwhile: look again after each answer, a few times.
        for _ in 0..4 {
            let Decision::Refused(refusal) = &decision else {
                return Ok(decision);
            };
            let refusal = *refusal;
            let shared = &self.shared;
            let (own, wait, busy) = {
                let mut slots = shared.lock();
                let slot = slots.entry(refusal.bucket).or_default();
                let wait =
                    slot.confirmed_resets_at != refusal.resets_at && shared.leasable(refusal.limit);
                if wait {
                    slot.confirmed_resets_at = refusal.resets_at;
                    slot.saw(
                        refusal.limit.saturating_sub(refusal.used),
                        refusal.limit,
                        refusal.resets_at,
                    );
                }
                let own = slot.lease.take().map(|l| l.leaving(slot));
                (own, wait, slot.changing())
            };
            if own.is_none() && !wait && !busy {
                return Ok(decision);
            }
            if let Some(lease) = own {
                // Applied before the reserve below is sent, not queued.
                shared.give_back(vec![lease]).await;
            }
            let deadline = Instant::now() + shared.options.ttl + shared.options.grace;
            if wait {
                tokio::time::sleep_until(deadline).await;
            }
            // Returns and corrections still on their way (other tasks send them).
            shared
                .poll_until(deadline, |slots| {
                    !slots.get(&refusal.bucket).is_some_and(Slot::changing)
                })
                .await;
            decision = self.call(asks, now_ms).await?;
            if wait && matches!(decision, Decision::Admitted(_)) {
                // Room came back: leases may be taken on it again.
                if let Some(slot) = shared.lock().get_mut(&refusal.bucket) {
                    slot.confirmed_resets_at = 0;
                }
            }
        }
        Ok(decision)
    }
}

/// `reservation`'s parts settled above their amount (adds), and the rest (refunds).
type Settles = Option<(Reservation, Vec<u64>)>;
fn split_adds(reservation: Reservation, actual: Vec<u64>) -> (Settles, Settles) {
    let mut adds: Settles = None;
    let mut refunds: Settles = None;
    for (part, real) in reservation.parts.iter().zip(actual) {
        let to = if real > part.amount {
            &mut adds
        } else {
            &mut refunds
        };
        state::push_rest(to, reservation.fallback, part, real);
    }
    (adds, refunds)
}

/// The longest a request waits for a lease on its way before calling the counter itself.
const WAIT_FOR_LEASE: Duration = Duration::from_millis(20);

/// The buckets of `asks`, in order.
fn buckets_of_asks(asks: &[Ask]) -> Vec<Bucket> {
    asks.iter().map(|a| a.bucket).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl UsageCounter for LeasingCounter {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        self.shared.caller_ms.store(now_ms, Ordering::Relaxed);
        self.shared.sweep_in_background();
        let mut plan = self.plan(asks, now_ms);
        // A miss while a lease is on its way waits for it (a little) instead of calling
        // the counter as well: under load, every request between a lease running out and
        // the next arriving would otherwise call.
        for _ in 0..2 {
            if !plan.wait {
                break;
            }
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            self.clear_asking(asks, &plan);
            self.shared.undraw(std::mem::take(&mut plan.draws));
            // Whatever it renewed ahead stays asked for.
            self.renew_ahead(&mut plan, now_ms);
            let _ = tokio::time::timeout(WAIT_FOR_LEASE, arrived).await;
            plan = self.plan(asks, now_ms);
        }
        self.renew_ahead(&mut plan, now_ms);
        if plan.missing.is_empty() {
            self.shared.local.fetch_add(1, Ordering::Relaxed);
            // `flatten` cannot tell `collect` how many parts there are: reserve first.
            let mut parts = Vec::with_capacity(plan.parts.len());
            parts.extend(plan.parts.into_iter().flatten());
            return Ok(Decision::Admitted(Reservation {
                parts,
                fallback: false,
            }));
        }
        let inner_asks: Vec<Ask> = plan
            .missing
            .iter()
            .map(|&(i, extra)| Ask {
                amount: asks[i].amount.saturating_add(extra),
                ..asks[i]
            })
            .collect();
        let leased = plan.missing.iter().any(|&(_, extra)| extra > 0);
        let buckets = buckets_of_asks(&inner_asks);
        self.shared.begin_call(&buckets, self.call_deadline()).await;
        let answer = self.shared.inner.reserve(&inner_asks, now_ms).await;
        if !matches!(&answer, Ok(Decision::Admitted(r)) if !r.fallback) {
            self.shared.end_call(&buckets);
        }
        let answer = match answer {
            Ok(Decision::Admitted(reservation)) if !reservation.fallback => reservation,
            Ok(Decision::Admitted(reservation)) if plan.draws.is_empty() && !leased => {
                // Counted by the fallback counter: no leases from it.
                return Ok(Decision::Admitted(reservation));
            }
            other => {
                self.clear_asking(asks, &plan);
                self.shared.undraw(std::mem::take(&mut plan.draws));
                let retry_plain = match &other {
                    Ok(Decision::Admitted(reservation)) => {
                        // A fallback answer with leases asked or draws made: give it
                        // back, and count the whole request where the counter now counts.
                        let zeros = vec![0; reservation.parts.len()];
                        spawn_settle(self.shared.inner.clone(), reservation.clone(), zeros);
                        true
                    }
                    // A lease asked on the refused bucket may be what did not fit.
                    Ok(Decision::Refused(r)) => plan
                        .missing
                        .iter()
                        .any(|&(i, extra)| extra > 0 && asks[i].bucket == r.bucket),
                    Err(_) => false,
                };
                let decision = if retry_plain {
                    self.call(asks, now_ms).await?
                } else {
                    other?
                };
                return self.confirm(asks, now_ms, decision).await;
            }
        };
        let replaced = self.install(asks, &mut plan, &answer);
        // Installed: background changes on these buckets may go now.
        self.shared.end_call(&buckets);
        if leased {
            self.shared.arrived.notify_waiters();
        }
        if !replaced.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let shared = self.shared.clone();
                    runtime.spawn(async move { shared.give_back(replaced).await });
                }
                Err(_) => self.shared.give_back(replaced).await,
            }
        }
        Ok(Decision::Admitted(Reservation {
            parts: plan.parts.into_iter().flatten().collect(),
            fallback: false,
        }))
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        let (rest, waiting) = self.shared.correct_locally(reservation, actual);
        if let Some((rest, actual)) = rest {
            self.shared.inner.settle(&rest, &actual).await?;
        }
        if waiting {
            // Held behind a return: done when the return's task has sent them.
            self.shared.until_released(&reservation.parts).await;
        }
        Ok(())
    }

    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        if let (Some((rest, actual)), _) = self.shared.correct_locally(reservation, actual) {
            // Adds reach the counter at once, or it could admit past a limit meanwhile;
            // refunds may wait for calls in flight (see `Shared::begin_call`).
            let (adds, refunds) = split_adds(rest, actual);
            if let Some((adds, actual)) = adds {
                spawn_settle(self.shared.inner.clone(), adds, actual);
            }
            if let Some((refunds, actual)) = refunds {
                self.shared.settle_in_background(refunds, actual);
            }
        }
        true
    }

    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        // A return that has landed but is still listed would be taken off twice: read
        // once none is on its way (at most a second; this is not the hot path).
        let buckets = [bucket];
        self.shared
            .begin_call(&buckets, Instant::now() + Duration::from_secs(1))
            .await;
        let used = self.shared.inner.usage(bucket, now_ms).await;
        let start = bucket.window.start(now_ms);
        let not_usage = self
            .shared
            .lock()
            .get(&bucket)
            .map_or(0, |s| s.not_usage(start));
        self.shared.end_call(&buckets);
        Ok(used?.saturating_sub(not_usage))
    }

    async fn reserve_tagged(
        &self,
        asks: &[Ask],
        now_ms: i64,
        ticket: uuid::Uuid,
    ) -> Result<Decision, CounterError> {
        self.shared.inner.reserve_tagged(asks, now_ms, ticket).await
    }

    async fn cancel(&self, asks: &[Ask], ticket: uuid::Uuid) -> Result<(), CounterError> {
        self.shared.inner.cancel(asks, ticket).await
    }
}
