//! The state behind [`LeasingCounter`](super::LeasingCounter): what this process knows of
//! each bucket ([`Slot`]), the leases it holds ([`Lease`]), and the background work on
//! them (sweeping, giving back, corrections).
//! Owns: that state and its bookkeeping. Must not touch: the reserve's decisions (the
//! parent module).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::LeaseOptions;
use crate::counter::{Ask, Bucket, Decision, Part, Reservation, UsageCounter};

/// What a `LeasingCounter` and its background tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) inner: Arc<dyn UsageCounter>,
    pub(super) options: LeaseOptions,
    pub(super) epoch: Instant,
    /// Keyed by the catalog's own entity ids, never by client input: a fast non-keyed
    /// hash is safe here.
    pub(super) slots: Mutex<FxHashMap<Bucket, Slot>>,
    pub(super) sweeping: AtomicBool,
    /// Woken when a lease arrives (or a request for one ends without it).
    pub(super) arrived: tokio::sync::Notify,
    /// Woken when a call on the shared counter or a background change ends (see
    /// [`Shared::begin_call`]).
    pub(super) quiet: tokio::sync::Notify,
    /// Reserves admitted in process, from leases alone.
    pub(super) local: AtomicU64,
    /// Calls on the shared counter that renewed leases ahead, in the background.
    pub(super) renewals: AtomicU64,
    /// The caller's clock (Unix ms) at the last reserve: windows end by it.
    pub(super) caller_ms: AtomicI64,
}

/// What this process knows of one bucket.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) lease: Option<Lease>,
    /// A reserve that takes a lease on this bucket is in flight.
    pub(super) asking: bool,
    /// A lease is being renewed ahead, in the background (see [`Plan::ahead`]).
    pub(super) renewing: bool,
    /// The room left at the counter's last answer, that answer's limit, and when its
    /// window ends (Unix ms).
    pub(super) seen_remaining: u64,
    pub(super) seen_limit: u64,
    pub(super) seen_resets_at: i64,
    /// A refusal on this bucket was confirmed for the window ending then (Unix ms).
    pub(super) confirmed_resets_at: i64,
    /// Unused room of leases on their way back (window start, amount): still counted by
    /// the shared counter, not usage.
    pub(super) returning: Vec<(i64, u64)>,
    /// Corrections held until the returns in their window have landed: sent in the same
    /// batch as a return, a correction of a part the returned lease held would be summed
    /// with it and over-refund (reserved amounts are refunded together, then clamped).
    pub(super) held: Vec<(Part, u64)>,
    /// Held corrections being sent now.
    pub(super) sending: Vec<(Part, u64)>,
    /// Calls on the shared counter in flight whose answers are read here (reserves,
    /// usage): background changes on this bucket wait for them (see
    /// [`Shared::begin_call`]).
    pub(super) calls: u32,
    /// Settles sent in the background, in flight.
    pub(super) settling: u32,
    /// How many times `requests` asks the next lease takes (at least 1, at most
    /// [`MAX_SCALE`]): doubled when a lease runs low within half its time (many requests
    /// in flight draw on it at once), halved when one expires more than half unused.
    pub(super) scale: u64,
}

/// The most a lease grows beyond `requests` asks by [`Slot::scale`].
pub(super) const MAX_SCALE: u64 = 16;

impl Slot {
    /// Records the counter's answer on this bucket and makes `part` (as reserved) its
    /// lease until `expires`; returns the lease it replaces, marked as going back.
    pub(super) fn grant(&mut self, part: &Part, expires: u64) -> Option<Lease> {
        self.saw(part.remaining(), part.limit, part.resets_at);
        let old = self.lease.take().map(|l| l.leaving(self));
        self.lease = Some(Lease {
            part: *part,
            others: part
                .used
                .saturating_sub(part.amount)
                .saturating_sub(self.in_flight(part.window_start)),
            drawn: 0,
            expires,
            sized: part.amount,
        });
        old
    }

    /// Adds `part` (reserved on the lease's bucket by a renewal) to the lease in place and
    /// gives it until `expires`, if the lease is in the same window under the same limit;
    /// says whether it did. Nothing goes back: the lease's unused room stays leased.
    pub(super) fn top_up(&mut self, part: &Part, expires: u64) -> bool {
        let returning = self.in_flight(part.window_start);
        let Some(lease) = self
            .lease
            .as_mut()
            .filter(|l| l.part.window_start == part.window_start && l.part.limit == part.limit)
        else {
            return false;
        };
        lease.part.amount = lease.part.amount.saturating_add(part.amount);
        // The counter's usage holds the whole lease, topped up, drawn or not.
        lease.others = part
            .used
            .saturating_sub(lease.part.amount)
            .saturating_sub(returning);
        lease.expires = expires;
        lease.sized = lease.unused();
        self.saw(part.remaining(), part.limit, part.resets_at);
        true
    }

    /// Records the room the counter last reported, its limit and its window's end.
    pub(super) fn saw(&mut self, remaining: u64, limit: u64, resets_at: i64) {
        self.seen_remaining = remaining;
        self.seen_limit = limit;
        self.seen_resets_at = resets_at;
    }

    /// The lease, if it is in the window starting at `start`.
    pub(super) fn lease_in(&mut self, start: i64) -> Option<&mut Lease> {
        self.lease.as_mut().filter(|l| l.part.window_start == start)
    }

    /// Whether returns or corrections on this bucket are on their way to the counter.
    pub(super) fn busy(&self) -> bool {
        !self.returning.is_empty() || !self.held.is_empty() || !self.sending.is_empty()
    }

    /// Whether a change this process makes in the background (a lease renewed or given
    /// back, a correction, a settle) is on its way to the counter: until it lands, an
    /// answer of the counter may or may not include it.
    pub(super) fn changing(&self) -> bool {
        self.busy() || self.renewing || self.settling > 0
    }

    /// What the counter still counts in the window starting at `start` that is not
    /// usage: this process's unused leased room, room on its way back, and refunds held.
    pub(super) fn not_usage(&self, start: i64) -> u64 {
        let leased = self
            .lease
            .as_ref()
            .filter(|l| l.part.window_start == start)
            .map_or(0, Lease::unused);
        leased + self.in_flight(start)
    }

    /// Room on its way back and refunds held, in the window starting at `start`.
    pub(super) fn in_flight(&self, start: i64) -> u64 {
        let refunds: u64 = self
            .held
            .iter()
            .chain(&self.sending)
            .filter(|(p, _)| p.window_start == start)
            .map(|(p, real)| p.amount.saturating_sub(*real))
            .sum();
        self.returning_in(start) + refunds
    }

    /// Room on its way back into the window starting at `start`.
    pub(super) fn returning_in(&self, start: i64) -> u64 {
        self.returning
            .iter()
            .filter(|(s, _)| *s == start)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Room reserved on the shared counter and handed out here.
#[derive(Debug)]
pub(super) struct Lease {
    /// The part as reserved on the shared counter: `amount` is the whole lease.
    pub(super) part: Part,
    /// The window's usage besides this lease, at the shared counter's last answer on it
    /// (and this process's settles since).
    pub(super) others: u64,
    /// Handed out, plus the settles' corrections; returned as the part's actual amount.
    pub(super) drawn: u64,
    /// Milliseconds after the epoch from which it is no longer drawn on.
    pub(super) expires: u64,
    /// Its unused room when it was granted or last topped up: what "drawn low" and "left
    /// unused" are measured against (`part.amount` sums every top-up).
    pub(super) sized: u64,
}

impl Lease {
    pub(super) fn unused(&self) -> u64 {
        self.part.amount.saturating_sub(self.drawn)
    }

    /// Marks this lease's unused room as on its way back in `slot`; give it back next.
    pub(super) fn leaving(self, slot: &mut Slot) -> Lease {
        slot.returning.push((self.part.window_start, self.unused()));
        self
    }

    pub(super) fn usable(&self, ask: &Ask, now: u64, now_ms: i64) -> bool {
        self.live(ask.limit, now, now_ms)
            && self.drawn.saturating_add(ask.amount) <= self.part.amount
    }

    /// Whether it still counts for asks under `limit`: not expired, its window not ended.
    pub(super) fn live(&self, limit: u64, now: u64, now_ms: i64) -> bool {
        now < self.expires && now_ms < self.part.resets_at && self.part.limit == limit
    }

    /// Whether drawing `ask` leaves less than a quarter of the lease's room.
    pub(super) fn drawn_low(&self, ask: &Ask) -> bool {
        self.unused().saturating_sub(ask.amount) < self.sized / 4
    }

    /// Whether it is due for renewal when drawn on for `ask` (`now` and `ttl` in ms): drawn
    /// low, or less than a quarter of `ttl` left.
    pub(super) fn low(&self, ask: &Ask, now: u64, ttl: u64) -> bool {
        self.short_of(ask.amount, 4, now, ttl)
    }

    /// Whether drawing `amount` would leave it less than `1/parts` of its room, or it has
    /// less than `1/parts` of `ttl` left (`now` and `ttl` in ms).
    pub(super) fn short_of(&self, amount: u64, parts: u64, now: u64, ttl: u64) -> bool {
        self.unused().saturating_sub(amount) < self.sized / parts
            || self.expires.saturating_sub(now) < ttl / parts
    }

    /// The part a request drawing `amount` holds: its usage as of this draw.
    pub(super) fn draw(&mut self, amount: u64) -> Part {
        self.drawn += amount;
        Part {
            amount,
            used: self.others.saturating_add(self.drawn),
            ..self.part
        }
    }
}

/// A reserve's local draws, to give back if the shared counter refuses the rest.
pub(super) type Draws = Vec<Part>;

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, FxHashMap<Bucket, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts the task that gives expired leases back, once, while a runtime is at hand.
    pub(super) fn sweep_in_background(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Shared> = Arc::downgrade(self);
        let every = (self.options.ttl / 2).max(Duration::from_millis(2));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = weak.upgrade() else { return };
                shared.sweep().await;
            }
        });
    }

    /// Gives back leases that expired or whose window ended, and forgets buckets not
    /// asked on for a while.
    pub(super) async fn sweep(&self) {
        let now = self.now();
        let now_ms = self.caller_ms.load(Ordering::Relaxed);
        let expired: Vec<Lease> = {
            let mut slots = self.lock();
            let mut out = Vec::new();
            slots.retain(|_, slot| {
                let ended = slot
                    .lease
                    .as_ref()
                    .is_some_and(|l| now >= l.expires || now_ms >= l.part.resets_at);
                if let Some(lease) = slot.lease.take_if(|_| ended) {
                    if lease.unused() > lease.sized / 2 {
                        // Drawn on too slowly for its size: the next one is smaller.
                        slot.scale = (slot.scale / 2).max(1);
                    }
                    out.push(lease.leaving(slot));
                }
                slot.lease.is_some()
                    || slot.asking
                    || slot.changing()
                    || slot.calls > 0
                    || slot.seen_resets_at > now_ms
            });
            out
        };
        self.give_back(expired).await;
    }

    /// Settles each lease (already marked [`Lease::leaving`]) at what was drawn on it, on
    /// the shared counter, and waits until it has: until then its unused room is not
    /// reported as usage, and a refusal on it waits.
    pub(super) async fn give_back(&self, leases: Vec<Lease>) {
        if leases.is_empty() {
            return;
        }
        let actual: Vec<u64> = leases.iter().map(|l| l.drawn).collect();
        let reservation = Reservation {
            parts: leases.iter().map(|l| l.part).collect(),
            fallback: false,
        };
        self.until_no_calls(&buckets_of(&reservation.parts)).await;
        if let Err(e) = self.inner.settle(&reservation, &actual).await {
            tracing::warn!(error = %e, "giving a lease back failed; its room stays counted");
        }
        let mut held = Reservation::default();
        let mut held_actual = Vec::new();
        {
            let mut slots = self.lock();
            for lease in &leases {
                if let Some(slot) = slots.get_mut(&lease.part.bucket) {
                    let back = (lease.part.window_start, lease.unused());
                    if let Some(i) = slot.returning.iter().position(|r| *r == back) {
                        slot.returning.swap_remove(i);
                    }
                    if slot.returning.is_empty() {
                        // Listed as sending until sent, so that a settle waiting on
                        // them returns only once they have landed.
                        for (part, real) in std::mem::take(&mut slot.held) {
                            held.parts.push(part);
                            held_actual.push(real);
                            slot.sending.push((part, real));
                        }
                    }
                }
            }
        }
        self.quiet.notify_waiters();
        if held.parts.is_empty() {
            return;
        }
        self.until_no_calls(&buckets_of(&held.parts)).await;
        if let Err(e) = self.inner.settle(&held, &held_actual).await {
            tracing::warn!(error = %e, "usage settle failed; the reserved amounts stay counted");
        }
        {
            let mut slots = self.lock();
            for (part, real) in held.parts.iter().zip(held_actual) {
                if let Some(slot) = slots.get_mut(&part.bucket) {
                    if let Some(i) = slot.sending.iter().position(|h| *h == (*part, real)) {
                        slot.sending.swap_remove(i);
                    }
                }
            }
        }
        self.quiet.notify_waiters();
    }

    /// Waits (at most `until`) until no background change is on its way on any of
    /// `buckets`, then counts a call in flight on each: the counter's answer to it then
    /// includes exactly the changes this process knows have landed. End it with
    /// [`end_call`](Self::end_call). Background changes wait for calls in flight before
    /// they are sent ([`until_no_calls`](Self::until_no_calls)), so none lands during one.
    pub(super) async fn begin_call(&self, buckets: &[Bucket], until: Instant) {
        self.wait_then(
            until,
            |slots| {
                !buckets
                    .iter()
                    .any(|b| slots.get(b).is_some_and(Slot::changing))
            },
            |slots| {
                for b in buckets {
                    slots.entry(*b).or_default().calls += 1;
                }
            },
        )
        .await;
    }

    /// Ends calls begun with [`begin_call`](Self::begin_call).
    pub(super) fn end_call(&self, buckets: &[Bucket]) {
        {
            let mut slots = self.lock();
            for b in buckets {
                if let Some(slot) = slots.get_mut(b) {
                    slot.calls = slot.calls.saturating_sub(1);
                }
            }
        }
        self.quiet.notify_waiters();
    }

    /// Waits until no call is in flight on `buckets`: for a background change about to
    /// be sent. At most half a lease's time: a return held back longer would keep room
    /// from other requests and instances (a refusal is confirmed within `ttl` + `grace`).
    pub(super) async fn until_no_calls(&self, buckets: &[Bucket]) {
        self.wait_then(
            Instant::now() + self.options.ttl / 2,
            |slots| {
                !buckets
                    .iter()
                    .any(|b| slots.get(b).is_some_and(|s| s.calls > 0))
            },
            |_| {},
        )
        .await;
    }

    /// Waits until `ready` holds of the slots (woken by [`Shared::quiet`]) or `until`
    /// passes, then applies `mark` under the same lock.
    async fn wait_then(
        &self,
        until: Instant,
        ready: impl Fn(&FxHashMap<Bucket, Slot>) -> bool,
        mark: impl Fn(&mut FxHashMap<Bucket, Slot>),
    ) {
        loop {
            let quiet = self.quiet.notified();
            tokio::pin!(quiet);
            quiet.as_mut().enable();
            {
                let mut slots = self.lock();
                if ready(&slots) || Instant::now() >= until {
                    mark(&mut slots);
                    return;
                }
            }
            // Woken by a change ending, or at the deadline (then marked regardless).
            let _ = tokio::time::timeout_at(until, quiet).await;
        }
    }

    /// Settles `reservation` on the shared counter in a task of its own, counted on its
    /// buckets as a background change until it has landed.
    pub(super) fn settle_in_background(
        self: &Arc<Self>,
        reservation: Reservation,
        actual: Vec<u64>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            spawn_settle(self.inner.clone(), reservation, actual);
            return;
        };
        {
            let mut slots = self.lock();
            for part in &reservation.parts {
                slots.entry(part.bucket).or_default().settling += 1;
            }
        }
        let shared = self.clone();
        runtime.spawn(async move {
            shared.until_no_calls(&buckets_of(&reservation.parts)).await;
            if let Err(e) = shared.inner.settle(&reservation, &actual).await {
                tracing::warn!(error = %e, "usage settle failed; the reserved amounts stay counted");
            }
            {
                let mut slots = shared.lock();
                for part in &reservation.parts {
                    if let Some(slot) = slots.get_mut(&part.bucket) {
                        slot.settling = slot.settling.saturating_sub(1);
                    }
                }
            }
            shared.quiet.notify_waiters();
        });
    }

    /// How much more than `ask` to reserve as a lease on its bucket, by the room last
    /// seen: 0 when unknown, too little, or already being asked for.
    pub(super) fn lease_size(&self, slot: &Slot, ask: &Ask, now_ms: i64) -> u64 {
        if slot.asking
            || slot.seen_limit != ask.limit
            || now_ms >= slot.seen_resets_at
            || slot.confirmed_resets_at == slot.seen_resets_at
        {
            return 0;
        }
        let unit = ask.amount.max(1);
        let extra = unit
            .saturating_mul(self.options.requests)
            .saturating_mul(slot.scale.clamp(1, MAX_SCALE))
            .min(slot.seen_remaining.saturating_sub(ask.amount) / self.options.share);
        if extra < unit.saturating_mul(2) {
            0
        } else {
            extra
        }
    }

    /// The shared counter's answer with each part's usage less what this process holds
    /// of it that is not usage (see [`Slot::not_usage`]).
    pub(super) fn adjusted(&self, decision: Decision) -> Decision {
        let Decision::Admitted(mut reservation) = decision else {
            return decision;
        };
        let slots = self.lock();
        for part in &mut reservation.parts {
            if let Some(slot) = slots.get(&part.bucket) {
                part.used = part.used.saturating_sub(slot.not_usage(part.window_start));
            }
        }
        Decision::Admitted(reservation)
    }

    /// Whether any instance could hold a lease on a bucket with this limit.
    pub(super) fn leasable(&self, limit: u64) -> bool {
        limit / self.options.share >= 2
    }

    /// Applies settles to live leases of the same window where it can; holds those behind
    /// a return in flight in their window (see [`Slot::held`]) and says whether it did;
    /// returns the rest.
    pub(super) fn correct_locally(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> (Option<(Reservation, Vec<u64>)>, bool) {
        let mut rest: Option<(Reservation, Vec<u64>)> = None;
        let mut waiting = false;
        let mut slots = self.lock();
        for (part, &real) in reservation.parts.iter().zip(actual) {
            if real == part.amount {
                continue;
            }
            if !reservation.fallback {
                let Some(slot) = slots.get_mut(&part.bucket) else {
                    push_rest(&mut rest, reservation.fallback, part, real);
                    continue;
                };
                if let Some(lease) = slot.lease_in(part.window_start) {
                    // Only within the lease: the shared counter must see any more at once,
                    // or it could admit past the limit.
                    if real > part.amount {
                        let more = lease.drawn.saturating_add(real - part.amount);
                        if more <= lease.part.amount {
                            lease.drawn = more;
                            continue;
                        }
                    } else if lease.drawn >= part.amount - real {
                        lease.drawn -= part.amount - real;
                        continue;
                    }
                }
                if real > part.amount {
                    // Sent as a pure add (nothing reserved, the difference actual): it
                    // must reach the counter at once, and cannot over-refund in a batch.
                    let add = Part { amount: 0, ..*part };
                    push_rest(&mut rest, false, &add, real - part.amount);
                    if let Some(lease) = slot.lease_in(part.window_start) {
                        lease.others = lease.others.saturating_add(real - part.amount);
                    }
                    continue;
                }
                if slot.returning_in(part.window_start) > 0 {
                    slot.held.push((*part, real));
                    waiting = true;
                    continue;
                }
                if let Some(lease) = slot.lease_in(part.window_start) {
                    // Settled on the shared counter, beside the lease.
                    lease.others = lease
                        .others
                        .saturating_sub(part.amount)
                        .saturating_add(real);
                }
            }
            push_rest(&mut rest, reservation.fallback, part, real);
        }
        (rest, waiting)
    }

    /// Waits (at most a second) until no correction is held behind a return on any of
    /// `buckets`.
    pub(super) async fn until_released(&self, buckets: &[Part]) {
        self.poll_until(Instant::now() + Duration::from_secs(1), |slots| {
            !buckets.iter().any(|p| {
                slots
                    .get(&p.bucket)
                    .is_some_and(|s| s.held.iter().chain(&s.sending).any(|(h, _)| h == p))
            })
        })
        .await;
    }

    /// Waits until `done` holds of the slots or `deadline` passes: for returns and
    /// corrections other tasks are sending (each wakes [`Shared::quiet`] when it lands).
    pub(super) async fn poll_until(
        &self,
        deadline: Instant,
        done: impl Fn(&FxHashMap<Bucket, Slot>) -> bool,
    ) {
        self.wait_then(deadline, done, |_| {}).await;
    }

    /// Hands back draws of a reserve that was refused or failed.
    pub(super) fn undraw(self: &Arc<Self>, draws: Draws) {
        if draws.is_empty() {
            return;
        }
        let zeros = vec![0; draws.len()];
        let reservation = Reservation {
            parts: draws,
            fallback: false,
        };
        if let (Some((rest, actual)), _) = self.correct_locally(&reservation, &zeros) {
            self.settle_in_background(rest, actual);
        }
    }
}

/// The buckets of `parts`, in order.
pub(super) fn buckets_of(parts: &[Part]) -> Vec<Bucket> {
    parts.iter().map(|p| p.bucket).collect()
}

pub(super) fn push_rest(
    rest: &mut Option<(Reservation, Vec<u64>)>,
    fallback: bool,
    part: &Part,
    real: u64,
) {
    let (r, a) = rest.get_or_insert_with(|| {
        (
            Reservation {
                parts: Vec::new(),
                fallback,
            },
            Vec::new(),
        )
    });
    r.parts.push(*part);
    a.push(real);
}

pub(super) fn spawn_settle(
    inner: Arc<dyn UsageCounter>,
    reservation: Reservation,
    actual: Vec<u64>,
) {
    if inner.settle_now(&reservation, &actual) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime to settle a usage reservation; the reserved amounts stay");
        return;
    };
    runtime.spawn(async move {
        if let Err(e) = inner.settle(&reservation, &actual).await {
            tracing::warn!(error = %e, "usage settle failed; the reserved amounts stay counted");
        }
    });
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
