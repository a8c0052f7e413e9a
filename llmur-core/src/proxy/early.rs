//! Early forwarding: sending the upstream call while the counter is still deciding.
//!
//! Owns: the guard that allows it ([`Early::try_start`]: every limit the request touches
//! had, at the counter's last answer, at least the configured share of its room left
//! beyond what this process has since sent early), the memory of those answers
//! ([`observe`], [`refused`]) and [`admit_while_sending`], which polls the reserve and the
//! upstream call together. The counter still decides every request: when it refuses, the
//! upstream call is dropped before anything of its answer reaches the client.
//! Must not touch: the counter itself, the upstream client.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;

use tokio::time::Instant;

use crate::counter::{Level, Metric, Refusal, Reservation};
use crate::limits::LimitSet;

/// How long (ms) the room a counter reported is trusted without a newer answer.
pub(crate) const FRESH_MS: i64 = 1_000;

/// The sets a request's asks come from, in the order the asks are made, with their level.
pub(crate) type Sets<'a> = [(Level, Option<&'a LimitSet>); 4];

/// Amounts sent early on every rule of `sets`; taken back when dropped (once the counter
/// has answered).
pub(crate) struct Early<'a> {
    sets: Sets<'a>,
    amount: [u64; 3],
}

impl<'a> Early<'a> {
    /// Counts the request as sent early if every rule in `sets` had room for `amount`
    /// (per metric: requests, tokens, cost) plus `headroom` of its limit plus everything
    /// already in flight, by an answer still fresh at `now_ms`.
    pub(crate) fn try_start(
        sets: Sets<'a>,
        amount: [u64; 3],
        headroom: f64,
        now_ms: i64,
    ) -> Option<Self> {
        let mut any = false;
        for (rule, seen) in rules(&sets) {
            any = true;
            if now_ms >= seen.valid_until.load(Relaxed) {
                return None;
            }
            // Saturating float-to-int conversion; headroom is within 0..=1.
            let margin = (rule.limit as f64 * headroom).ceil() as u64;
            let need = seen
                .in_flight
                .load(Relaxed)
                .saturating_add(amount[metric_index(rule.metric)])
                .saturating_add(margin);
            if seen.remaining.load(Relaxed) < need {
                return None;
            }
        }
        if !any {
            return None;
        }
        for (rule, seen) in rules(&sets) {
            seen.in_flight
                .fetch_add(amount[metric_index(rule.metric)], Relaxed);
        }
        Some(Self { sets, amount })
    }
}

impl Drop for Early<'_> {
    fn drop(&mut self) {
        for (rule, seen) in rules(&self.sets) {
            let amount = self.amount[metric_index(rule.metric)];
            // Never below zero, even if a catalog swap mixed sets up.
            let _ = seen
                .in_flight
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(amount)));
        }
    }
}

/// Remembers the room an admitted reservation left: its parts are in the order of the
/// rules of `sets`. A reservation from a fallback counter says nothing of the shared
/// count, and forgets what was known instead.
pub(crate) fn observe(sets: &Sets<'_>, reservation: &Reservation, now_ms: i64) {
    let fresh_until = now_ms.saturating_add(FRESH_MS);
    let mut parts = reservation.parts.iter();
    for (rule, seen) in rules(sets) {
        let part = parts.next();
        match part {
            Some(p)
                if !reservation.fallback
                    && p.bucket.metric == rule.metric
                    && p.bucket.window == rule.window =>
            {
                seen.remaining.store(p.remaining(), Relaxed);
                seen.valid_until
                    .store(p.resets_at.min(fresh_until), Relaxed);
            }
            _ => seen.valid_until.store(0, Relaxed),
        }
    }
}

/// Forgets the room of the refused bucket's rule: nothing goes early on it until the
/// counter admits on it again.
pub(crate) fn refused(sets: &Sets<'_>, refusal: &Refusal) {
    let b = refusal.bucket;
    for (level, set) in sets {
        if *level != b.level {
            continue;
        }
        let Some(set) = set else { continue };
        for (rule, seen) in set.rules().iter().zip(set.seen()) {
            if rule.metric == b.metric && rule.window == b.window {
                seen.remaining.store(0, Relaxed);
            }
        }
    }
}

fn rules<'s>(
    sets: &'s Sets<'_>,
) -> impl Iterator<Item = (&'s crate::limits::Rule, &'s crate::limits::Seen)> {
    sets.iter()
        .filter_map(|(_, set)| *set)
        .flat_map(|set| set.rules().iter().zip(set.seen()))
}

pub(crate) fn metric_index(metric: Metric) -> usize {
    match metric {
        Metric::Requests => 0,
        Metric::Tokens => 1,
        Metric::CostMicros => 2,
    }
}

/// The upstream call as it stands when the reserve was answered.
pub(crate) enum Sending<S: Future> {
    /// It finished first, at that instant.
    Done(S::Output, Instant),
    /// Still going: await it, or drop it to abort the call.
    Pending(Pin<Box<S>>),
}

/// Polls `admit` and `send` together until `admit` is done. `admit` is polled first, so
/// that a counter that answers at once never starts `send`.
pub(crate) async fn admit_while_sending<A: Future, S: Future>(
    admit: A,
    send: S,
) -> (A::Output, Sending<S>) {
    let mut admit = std::pin::pin!(admit);
    let mut sending = Sending::Pending(Box::pin(send));
    let admitted = std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = admit.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if let Sending::Pending(send) = &mut sending {
            if let Poll::Ready(out) = send.as_mut().poll(cx) {
                sending = Sending::Done(out, Instant::now());
            }
        }
        Poll::Pending
    })
    .await;
    (admitted, sending)
}
