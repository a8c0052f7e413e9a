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

use crate::counter::{Level, Refusal, Reservation};
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
                .saturating_add(amount[rule.metric.index()])
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
                .fetch_add(amount[rule.metric.index()], Relaxed);
        }
        Some(Self { sets, amount })
    }
}

impl Drop for Early<'_> {
    fn drop(&mut self) {
        for (rule, seen) in rules(&self.sets) {
            let amount = self.amount[rule.metric.index()];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::{Bucket, Metric, Part};
    use crate::store::types::Limits;
    use crate::window::Window;

    fn set(per_minute: u64) -> std::sync::Arc<LimitSet> {
        let mut limits = Limits::default();
        limits.requests.per_minute = Some(per_minute);
        LimitSet::from_limits(&limits).unwrap_or_default()
    }

    fn admitted(used: u64, resets_at: i64, fallback: bool) -> Reservation {
        Reservation {
            parts: vec![Part {
                bucket: Bucket {
                    level: Level::VirtualKey,
                    id: uuid::Uuid::nil(),
                    metric: Metric::Requests,
                    window: Window::Minute,
                },
                window_start: resets_at - 60_000,
                resets_at,
                amount: 1,
                limit: 100,
                used,
            }],
            fallback,
        }
    }

    #[test]
    fn room_is_trusted_for_a_second_within_its_window_and_never_from_a_fallback() {
        let key = set(100);
        let sets: Sets<'_> = [
            (Level::VirtualKey, Some(&key)),
            (Level::Project, None),
            (Level::Deployment, None),
            (Level::Connection, None),
        ];
        let go = |now| Early::try_start(sets, [1, 0, 0], 0.25, now).is_some();
        assert!(!go(0), "nothing known yet");

        observe(&sets, &admitted(10, 60_000, false), 1_000);
        assert!(go(1_999));
        assert!(!go(2_000), "a second old");
        observe(&sets, &admitted(10, 1_500, false), 1_000);
        assert!(go(1_499));
        assert!(!go(1_500), "its window ended");

        observe(&sets, &admitted(10, 60_000, true), 1_000);
        assert!(
            !go(1_001),
            "a fallback counter's answer says nothing of the shared one"
        );

        // 90 left, 25 kept back: 65 can be in flight at once, and come back when answered.
        observe(&sets, &admitted(10, 60_000, false), 1_000);
        let held: Vec<_> = (0..65)
            .map_while(|_| Early::try_start(sets, [1, 0, 0], 0.25, 1_001))
            .collect();
        assert_eq!(held.len(), 65);
        assert!(!go(1_001));
        drop(held);
        assert!(go(1_001));

        let refusal = Refusal {
            bucket: admitted(0, 0, false).parts[0].bucket,
            limit: 100,
            used: 100,
            amount: 1,
            resets_at: 60_000,
            now_ms: 1_001,
        };
        refused(&sets, &refusal);
        assert!(!go(1_002), "refused on that limit");
    }

    #[test]
    fn a_request_without_limits_never_goes_early() {
        let sets: Sets<'_> = [
            (Level::VirtualKey, None),
            (Level::Project, None),
            (Level::Deployment, None),
            (Level::Connection, None),
        ];
        assert!(Early::try_start(sets, [1, 0, 0], 0.0, 0).is_none());
    }
}
