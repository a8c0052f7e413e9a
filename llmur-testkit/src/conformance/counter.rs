//! The conformance suite every [`UsageCounter`] runs (in-memory, Redis).
//!
//! Owns: the counter checks, one public async function each, their runner
//! [`run_counter_suite`] and the reference model the property check compares against.
//! Must not touch: any counter implementation; checks see only `Arc<dyn UsageCounter>`.
//!
//! Every check gets a fresh counter from the caller whose clock is the `now_ms` passed to
//! it (a Redis counter runs in caller-clock mode), and uses random (v4) bucket ids, so a
//! shared Redis can be reused across runs. A check fails by panicking with a message that
//! names it and what went wrong. Run the suite on a multi-threaded Tokio runtime so the
//! concurrency check is really concurrent:
//!
//! ```
//! use std::sync::Arc;
//! use llmur_core::counter::{MemoryCounter, UsageCounter};
//!
//! # async fn demo() {
//! llmur_testkit::conformance::counter::run_counter_suite(|| async {
//!     Arc::new(MemoryCounter::new()) as Arc<dyn UsageCounter>
//! })
//! .await;
//! # }
//! ```
//!
//! # The contract, as checked
//!
//! - **All or nothing**: a reserve is admitted only if every bucket has room
//!   (`used + amount <= limit`); then every amount is added. A refusal adds nothing and
//!   names the *first* bucket (in ask order) without room, with its usage, the asked
//!   amount, the end of its window and the counter's time.
//! - **Exactly the limit**, sequentially and under 256 concurrent reserves: never limit + 1.
//!   An amount of 0 always fits.
//! - **Parts** come in ask order, with the window's start and end (UTC calendar windows,
//!   [`Window::start`]/[`Window::end`]), the amount, the limit and the usage right after.
//! - **Settle** sets each part to `max(0, count - reserved) + actual` in the window it was
//!   reserved in, even after that window has ended, for at least [`SETTLE_GRACE_MS`] after
//!   its end (later, the counter may have dropped the window and ignore the settle): lower
//!   and higher actuals both work, a part without an actual keeps its reservation, a refund
//!   never exceeds the part's amount and the count never goes below zero.
//! - **Windows** roll over exactly: `end - 1` is in the old window, `end` in the new one, for
//!   every kind, across a leap-day month end, a year end and an ISO week (Sunday → Monday).
//! - **Random sequences** (seeded) of clock advances, reserves over one to four buckets and
//!   settles agree with a reference model, decision by decision and usage by usage.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use llmur_core::counter::{
    Ask, Bucket, CounterError, Decision, Level, Metric, Part, Refusal, Reservation, UsageCounter,
};
use llmur_core::window::Window;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// How long after its window's end a counter must still apply a settle (10 minutes).
/// A counter may drop a window later than that (and then ignore settles for it), but not
/// sooner.
pub const SETTLE_GRACE_MS: i64 = 10 * MINUTE;

/// A counter as the runner hands it out.
pub type DynCounter = Arc<dyn UsageCounter>;

/// The names of every check, in the order [`run_counter_suite`] runs them; each is a
/// function in this module.
pub const COUNTER_CHECKS: &[&str] = &[
    "all_or_nothing",
    "exactly_the_limit_sequential",
    "exactly_the_limit_concurrent",
    "refusal_adds_nothing_and_names_the_bucket",
    "part_fields",
    "settle_replaces_the_amount",
    "settle_never_refunds_more_than_reserved",
    "settle_after_rollover_corrects_the_old_window",
    "windows_roll_over_exactly",
    "usage_reads",
    "one_entity_counts_each_metric_and_window_apart",
    "random_sequences_match_a_model",
];

/// Runs every counter check, each against a fresh counter from `make` (whose clock must be
/// the caller's `now_ms`); panics naming the failing check on the first failure.
pub async fn run_counter_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynCounter>,
{
    macro_rules! run {
        ($($name:ident),* $(,)?) => {
            $( run_counter_check(stringify!($name), $name(make().await)).await; )*
        };
    }
    run!(
        all_or_nothing,
        exactly_the_limit_sequential,
        exactly_the_limit_concurrent,
        refusal_adds_nothing_and_names_the_bucket,
        part_fields,
        settle_replaces_the_amount,
        settle_never_refunds_more_than_reserved,
        settle_after_rollover_corrects_the_old_window,
        windows_roll_over_exactly,
        usage_reads,
        one_entity_counts_each_metric_and_window_apart,
        random_sequences_match_a_model,
    );
}

/// Runs one check, turning its panic into one that names the check.
#[expect(
    clippy::panic,
    reason = "a failed conformance check fails the calling test"
)]
pub async fn run_counter_check(name: &str, check: impl Future<Output = ()>) {
    let started = std::time::Instant::now();
    let outcome = AssertUnwindSafe(check).catch_unwind().await;
    eprintln!(
        "counter check {name}: {} in {:?}",
        if outcome.is_ok() { "ok" } else { "FAILED" },
        started.elapsed()
    );
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("counter conformance check `{name}` failed: {message}");
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

/// A reserve over several buckets is admitted only when all have room; a refusal adds to
/// none of them and names the first full one.
pub async fn all_or_nothing(c: DynCounter) {
    let now = at(2026, 11, 25, 4, 13, 55, 250);
    let a = bucket(Level::VirtualKey, Metric::Tokens, Window::Minute);
    let b = bucket(Level::Project, Metric::Requests, Window::Day);
    let d = bucket(Level::Deployment, Metric::CostMicros, Window::Month);
    let asks = [ask(a, 100, 10), ask(b, 3, 1), ask(d, 1_000, 50)];
    for i in 1..=3u64 {
        let r = admit(
            &c,
            &asks,
            now,
            &format!("reserve {i} of 3 on three buckets"),
        )
        .await;
        let used: Vec<u64> = r.parts.iter().map(|p| p.used).collect();
        assert_eq!(
            used,
            vec![10 * i, i, 50 * i],
            "usage after admitted reserve {i}"
        );
    }
    let refusal = refuse(&c, &asks, now, "fourth reserve: the middle bucket is full").await;
    assert_eq!(
        refusal.bucket, b,
        "the refusal names the bucket without room"
    );
    assert_eq!((refusal.used, refusal.limit, refusal.amount), (3, 3, 1));
    for (bk, want) in [(a, 30), (b, 3), (d, 150)] {
        assert_eq!(
            usage(&c, bk, now, "after a refusal").await,
            want,
            "a refused reserve added nothing to {:?}",
            bk.level
        );
    }
    // The last bucket lacks room: the earlier ones, which had room, are untouched too.
    let e = bucket(Level::Connection, Metric::Tokens, Window::Hour);
    let refusal = refuse(
        &c,
        &[ask(a, 100, 5), ask(d, 1_000, 10), ask(e, 10, 11)],
        now,
        "reserve whose last bucket is too small",
    )
    .await;
    assert_eq!(refusal.bucket, e, "the refusal names the last bucket");
    assert_eq!(usage(&c, a, now, "first bucket").await, 30);
    assert_eq!(usage(&c, d, now, "second bucket").await, 150);
    assert_eq!(usage(&c, e, now, "refused bucket").await, 0);
    // Several buckets without room: the first in ask order is named.
    let refusal = refuse(
        &c,
        &[ask(a, 100, 5), ask(b, 3, 1), ask(e, 10, 11)],
        now,
        "two buckets without room",
    )
    .await;
    assert_eq!(refusal.bucket, b, "the first bucket without room is named");
    // An empty ask is admitted with no parts.
    let r = admit(&c, &[], now, "empty ask").await;
    assert!(r.parts.is_empty(), "an empty ask has no parts");
}

/// Exactly the limit is admitted, one reserve after another; an amount of 0 always fits.
pub async fn exactly_the_limit_sequential(c: DynCounter) {
    let now = at(2025, 6, 30, 12, 0, 0, 0);
    let b = bucket(Level::VirtualKey, Metric::Requests, Window::Hour);
    let mut admitted = Vec::new();
    for i in 0..12 {
        match reserve(&c, &[ask(b, 7, 1)], now, &format!("reserve {i}")).await {
            Decision::Admitted(r) => admitted.push(single(&r).used),
            Decision::Refused(_) => {}
        }
    }
    assert_eq!(
        admitted,
        (1..=7).collect::<Vec<_>>(),
        "exactly 7 of 12 reserves fit a limit of 7, each seeing the usage after it"
    );
    assert_eq!(usage(&c, b, now, "full bucket").await, 7);
    let r = admit(&c, &[ask(b, 7, 0)], now, "amount 0 on a full bucket").await;
    assert_eq!(single(&r).used, 7);

    let t = bucket(Level::Project, Metric::Tokens, Window::Day);
    for i in 0..3 {
        admit(&c, &[ask(t, 10, 3)], now, &format!("3 of 10, reserve {i}")).await;
    }
    let r = admit(&c, &[ask(t, 10, 1)], now, "the last unit up to the limit").await;
    assert_eq!(single(&r).used, 10, "usage may reach the limit exactly");
    assert_eq!(single(&r).remaining(), 0);
    refuse(&c, &[ask(t, 10, 1)], now, "one past the limit").await;

    let z = bucket(Level::Connection, Metric::CostMicros, Window::Week);
    admit(&c, &[ask(z, 0, 0)], now, "amount 0 with limit 0").await;
    refuse(&c, &[ask(z, 0, 1)], now, "amount 1 with limit 0").await;
}

/// 256 concurrent reserves over two buckets admit exactly the tighter limit.
#[expect(
    clippy::panic,
    reason = "a failed conformance check fails the calling test"
)]
pub async fn exactly_the_limit_concurrent(c: DynCounter) {
    let now = at(2024, 7, 1, 8, 30, 0, 0);
    let tight = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
    let loose = bucket(Level::Project, Metric::Tokens, Window::Month);
    let odd = bucket(Level::Deployment, Metric::CostMicros, Window::Day);
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                // Every fourth task also asks for `odd`, whose limit fits 20 of them.
                let mut asks = vec![ask(tight, 100, 1), ask(loose, 1_000, 3)];
                if i % 4 == 0 {
                    asks.push(ask(odd, 20 * 7, 7));
                }
                (i % 4 == 0, c.reserve(&asks, now).await)
            })
        })
        .collect();
    let (mut admitted, mut admitted_odd) = (0u64, 0u64);
    for task in tasks {
        match task.await {
            Ok((with_odd, Ok(Decision::Admitted(r)))) => {
                admitted += 1;
                admitted_odd += u64::from(with_odd);
                for p in &r.parts {
                    assert!(
                        p.used <= p.limit,
                        "a part was admitted past its limit: {p:?}"
                    );
                }
            }
            Ok((_, Ok(Decision::Refused(_)))) => {}
            Ok((_, Err(e))) => panic!("concurrent reserve failed: {e}"),
            Err(e) => panic!("a concurrent reserve task failed: {e}"),
        }
    }
    assert_eq!(
        admitted, 100,
        "exactly the limit of 100 is admitted, never more"
    );
    assert_eq!(usage(&c, tight, now, "tight bucket").await, 100);
    assert_eq!(
        usage(&c, loose, now, "loose bucket").await,
        300,
        "the loose bucket counts exactly the admitted reserves"
    );
    assert!(
        admitted_odd <= 20,
        "{admitted_odd} reserves fit a bucket with room for 20"
    );
    assert_eq!(usage(&c, odd, now, "third bucket").await, admitted_odd * 7);
}

/// A refusal adds nothing and reports bucket, limit, usage, amount, reset time and now.
pub async fn refusal_adds_nothing_and_names_the_bucket(c: DynCounter) {
    let now = at(2027, 1, 13, 17, 45, 12, 5);
    for window in Window::ALL {
        let b = bucket(Level::Deployment, Metric::Tokens, window);
        admit(&c, &[ask(b, 10, 8)], now, "8 of 10").await;
        let refusal = refuse(&c, &[ask(b, 10, 3)], now, "3 more on 8 of 10").await;
        let want = Refusal {
            bucket: b,
            limit: 10,
            used: 8,
            amount: 3,
            resets_at: window.end(now),
            now_ms: now,
        };
        assert_eq!(refusal, want, "refusal in a {} window", window.as_str());
        assert_eq!(usage(&c, b, now, "after the refusal").await, 8);
        let r = admit(&c, &[ask(b, 10, 2)], now, "the 2 that still fit").await;
        assert_eq!(single(&r).used, 10, "the refusal added nothing");
    }
    // Hard-coded ends, independent of `Window`'s arithmetic: a refusal in November 2026.
    let t = at(2026, 11, 25, 4, 13, 55, 250);
    for (window, end) in [
        (Window::Minute, at(2026, 11, 25, 4, 14, 0, 0)),
        (Window::Hour, at(2026, 11, 25, 5, 0, 0, 0)),
        (Window::Day, at(2026, 11, 26, 0, 0, 0, 0)),
        (Window::Week, at(2026, 11, 30, 0, 0, 0, 0)),
        (Window::Month, at(2026, 12, 1, 0, 0, 0, 0)),
    ] {
        let b = bucket(Level::Connection, Metric::Requests, window);
        let refusal = refuse(&c, &[ask(b, 0, 1)], t, "limit 0").await;
        assert_eq!(
            refusal.resets_at,
            end,
            "a {} window ends at its calendar boundary",
            window.as_str()
        );
    }
}

/// Parts come in ask order with correct window, reset time, amount, limit and usage.
pub async fn part_fields(c: DynCounter) {
    // Wednesday 2026-11-25 04:13:55.250 UTC.
    let now = at(2026, 11, 25, 4, 13, 55, 250);
    let expected = [
        (
            Window::Minute,
            at(2026, 11, 25, 4, 13, 0, 0),
            at(2026, 11, 25, 4, 14, 0, 0),
        ),
        (
            Window::Hour,
            at(2026, 11, 25, 4, 0, 0, 0),
            at(2026, 11, 25, 5, 0, 0, 0),
        ),
        (
            Window::Day,
            at(2026, 11, 25, 0, 0, 0, 0),
            at(2026, 11, 26, 0, 0, 0, 0),
        ),
        (
            Window::Week,
            at(2026, 11, 23, 0, 0, 0, 0),
            at(2026, 11, 30, 0, 0, 0, 0),
        ),
        (
            Window::Month,
            at(2026, 11, 1, 0, 0, 0, 0),
            at(2026, 12, 1, 0, 0, 0, 0),
        ),
    ];
    let buckets: Vec<Bucket> = expected
        .iter()
        .map(|&(w, _, _)| bucket(Level::VirtualKey, Metric::Tokens, w))
        .collect();
    let asks: Vec<Ask> = buckets
        .iter()
        .enumerate()
        .map(|(i, &b)| ask(b, 1_000 + i as u64, 10 + i as u64))
        .collect();
    for round in 1..=2u64 {
        let r = admit(&c, &asks, now, &format!("round {round}")).await;
        assert_eq!(r.parts.len(), asks.len(), "one part per ask");
        assert!(!r.fallback, "a counter's own reservation is not a fallback");
        for (i, (part, &(window, start, end))) in r.parts.iter().zip(&expected).enumerate() {
            let want = Part {
                bucket: buckets[i],
                window_start: start,
                resets_at: end,
                amount: 10 + i as u64,
                limit: 1_000 + i as u64,
                used: round * (10 + i as u64),
            };
            assert_eq!(
                *part,
                want,
                "part {i} ({} window), round {round}",
                window.as_str()
            );
        }
    }
}

/// Settling replaces the reserved amount with the actual one, lower or higher.
pub async fn settle_replaces_the_amount(c: DynCounter) {
    let now = at(2025, 3, 9, 10, 20, 30, 0);
    let b = bucket(Level::Project, Metric::Tokens, Window::Hour);
    let r1 = admit(&c, &[ask(b, 1_000, 100)], now, "first 100").await;
    settle(&c, &r1, &[40], "first down to 40").await;
    assert_eq!(
        usage(&c, b, now, "after a lower actual").await,
        40,
        "a lower actual refunds the difference"
    );
    let r2 = admit(&c, &[ask(b, 1_000, 100)], now, "second 100").await;
    assert_eq!(single(&r2).used, 140);
    settle(&c, &r2, &[250], "second up to 250").await;
    assert_eq!(
        usage(&c, b, now, "after a higher actual").await,
        290,
        "a higher actual adds the difference, even past what was reserved"
    );
    // Two buckets, only the first settled: a part without an actual keeps its reservation.
    let other = bucket(Level::VirtualKey, Metric::CostMicros, Window::Day);
    let r3 = admit(
        &c,
        &[ask(b, 1_000, 10), ask(other, 1_000, 70)],
        now,
        "two parts",
    )
    .await;
    settle(&c, &r3, &[4], "only the first part").await;
    assert_eq!(usage(&c, b, now, "settled part").await, 294);
    assert_eq!(
        usage(&c, other, now, "part without an actual").await,
        70,
        "a part without an actual keeps its reservation"
    );
    settle(&c, &Reservation::default(), &[], "empty reservation").await;
    // Usage is then back on the limit's side: a bucket over its limit refuses.
    let refusal = refuse(&c, &[ask(b, 294, 1)], now, "over the limit after settles").await;
    assert_eq!(refusal.used, 294);
}

/// A settle refunds at most what its part reserved, and the count never goes below zero.
pub async fn settle_never_refunds_more_than_reserved(c: DynCounter) {
    let now = at(2025, 8, 15, 23, 59, 0, 0);
    let b = bucket(Level::Connection, Metric::Tokens, Window::Day);
    let small = admit(&c, &[ask(b, 1_000, 10)], now, "10 to refund").await;
    admit(&c, &[ask(b, 1_000, 50)], now, "50 from another request").await;
    settle(&c, &small, &[0], "refund the 10").await;
    assert_eq!(
        usage(&c, b, now, "after the refund").await,
        50,
        "the other request's 50 stay"
    );
    // A repeated settle (a caller bug) still refunds at most the part's 10.
    settle(&c, &small, &[0], "refund the 10 again").await;
    assert_eq!(
        usage(&c, b, now, "after a repeated refund").await,
        40,
        "a settle refunds at most what its part reserved"
    );
    // Refunding on an emptied bucket stays at zero, and the bucket keeps working.
    let lone = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
    let r = admit(&c, &[ask(lone, 3, 2)], now, "2 of 3").await;
    settle(&c, &r, &[0], "refund to zero").await;
    settle(&c, &r, &[0], "refund below zero").await;
    assert_eq!(
        usage(&c, lone, now, "after refunds past zero").await,
        0,
        "the count never goes below zero"
    );
    for i in 0..3 {
        admit(
            &c,
            &[ask(lone, 3, 1)],
            now,
            &format!("reserve {i} after refunds"),
        )
        .await;
    }
    refuse(
        &c,
        &[ask(lone, 3, 1)],
        now,
        "the limit still holds after refunds",
    )
    .await;
}

/// A settle after the window rolled over corrects the window it was reserved in, not the
/// current one.
pub async fn settle_after_rollover_corrects_the_old_window(c: DynCounter) {
    for window in Window::ALL {
        let before = at(2024, 12, 31, 23, 59, 59, 999);
        let after = window.end(before);
        let b = bucket(Level::Deployment, Metric::Tokens, window);
        let old = admit(&c, &[ask(b, 1_000, 100)], before, "in the old window").await;
        let new = admit(&c, &[ask(b, 1_000, 30)], after, "in the new window").await;
        assert_eq!(
            single(&new).used,
            30,
            "a new {} window starts empty",
            window.as_str()
        );
        settle(&c, &old, &[10], "the old reservation, after the rollover").await;
        assert_eq!(
            usage(&c, b, before, "old window").await,
            10,
            "the settle corrected the old {} window",
            window.as_str()
        );
        assert_eq!(
            usage(&c, b, after, "new window").await,
            30,
            "the settle left the new {} window alone",
            window.as_str()
        );
        settle(&c, &new, &[45], "the new reservation").await;
        assert_eq!(usage(&c, b, after, "new window").await, 45);
        assert_eq!(usage(&c, b, before, "old window").await, 10);
    }
    // A settle just inside the grace after the window's end, with the counter's clock
    // (seen through another reserve) already that far on, still applies.
    let before = at(2025, 5, 31, 23, 59, 30, 0);
    let end = Window::Minute.end(before);
    let b = bucket(Level::VirtualKey, Metric::Tokens, Window::Minute);
    let late = admit(&c, &[ask(b, 1_000, 100)], before, "before the end").await;
    let other = bucket(Level::Project, Metric::Requests, Window::Minute);
    admit(
        &c,
        &[ask(other, 10, 1)],
        end + SETTLE_GRACE_MS - 1,
        "another reserve, just inside the grace",
    )
    .await;
    settle(&c, &late, &[60], "late settle, inside the grace").await;
    assert_eq!(
        usage(&c, b, before, "window ended within the grace").await,
        60,
        "a settle within the grace after the window's end applies"
    );
}

/// `end - 1` is in the old window and `end` in the new one, for every kind, across a
/// leap-day month end, a year end and an ISO week.
pub async fn windows_roll_over_exactly(c: DynCounter) {
    // Thursday 2024-02-29 23:59:59.999 ends a minute, an hour, a day and a month.
    let leap = at(2024, 3, 1, 0, 0, 0, 0);
    // Sunday 2024-03-03 23:59:59.999 ends an ISO week.
    let monday = at(2024, 3, 4, 0, 0, 0, 0);
    // 2026-12-31 23:59:59.999 ends a year (and its month); 2027-01-01 is a Friday.
    let new_year = at(2027, 1, 1, 0, 0, 0, 0);
    let cases = [
        (Window::Minute, leap, at(2024, 2, 29, 23, 59, 0, 0)),
        (Window::Hour, leap, at(2024, 2, 29, 23, 0, 0, 0)),
        (Window::Day, leap, at(2024, 2, 29, 0, 0, 0, 0)),
        (Window::Month, leap, at(2024, 2, 1, 0, 0, 0, 0)),
        (Window::Week, monday, at(2024, 2, 26, 0, 0, 0, 0)),
        (Window::Month, new_year, at(2026, 12, 1, 0, 0, 0, 0)),
        (Window::Day, new_year, at(2026, 12, 31, 0, 0, 0, 0)),
        (Window::Week, new_year, at(2026, 12, 28, 0, 0, 0, 0)),
    ];
    for (window, boundary, old_start) in cases {
        let name = window.as_str();
        let b = bucket(Level::Project, Metric::Requests, window);
        let last = boundary - 1;
        // The week containing 2027-01-01 does not end there.
        let old_end = if window == Window::Week && boundary == new_year {
            at(2027, 1, 4, 0, 0, 0, 0)
        } else {
            boundary
        };
        let r = admit(
            &c,
            &[ask(b, 2, 2)],
            old_start,
            "first instant of the window",
        )
        .await;
        assert_eq!(
            (single(&r).window_start, single(&r).resets_at),
            (old_start, old_end),
            "{name} window at its first instant"
        );
        let refusal = refuse(&c, &[ask(b, 2, 1)], last, "last instant, full").await;
        assert_eq!(
            refusal.resets_at, old_end,
            "{name} window: the last instant before {boundary} is still in the old window"
        );
        if old_end == boundary {
            let r = admit(&c, &[ask(b, 2, 1)], boundary, "at the boundary").await;
            assert_eq!(
                single(&r).window_start,
                boundary,
                "{name} window: the boundary instant starts a new window"
            );
            assert_eq!(single(&r).used, 1, "the new {name} window starts empty");
        } else {
            let refusal = refuse(&c, &[ask(b, 2, 1)], boundary, "same week").await;
            assert_eq!(refusal.resets_at, old_end, "still the old {name} window");
        }
    }
    // Every kind at `end - 1` and `end` of the window containing an arbitrary instant.
    let t = at(2031, 5, 17, 9, 26, 53, 589);
    for window in Window::ALL {
        let end = window.end(t);
        let b = bucket(Level::VirtualKey, Metric::Tokens, window);
        let r = admit(&c, &[ask(b, 5, 5)], end - 1, "end - 1").await;
        assert_eq!(single(&r).window_start, window.start(t));
        assert_eq!(single(&r).resets_at, end);
        let r = admit(&c, &[ask(b, 5, 5)], end, "end").await;
        assert_eq!(
            (single(&r).window_start, single(&r).used),
            (end, 5),
            "{} window rolled over at {end}",
            window.as_str()
        );
        assert_eq!(usage(&c, b, end - 1, "old window").await, 5);
    }
}

/// One entity's buckets (every metric, two windows) count apart, whatever a backend keeps
/// together; two asks on one bucket in one reserve add up; a refusal on one of them takes
/// back the amounts the same reserve added to the entity's other buckets; a settle of
/// one metric leaves the others alone.
pub async fn one_entity_counts_each_metric_and_window_apart(c: DynCounter) {
    let now = at(2026, 12, 1, 19, 58, 30, 0);
    let id = Uuid::new_v4();
    let of = |metric, window| Bucket {
        level: Level::Project,
        id,
        metric,
        window,
    };
    let metrics = [Metric::Requests, Metric::Tokens, Metric::CostMicros];
    let mut asks = Vec::new();
    for window in [Window::Minute, Window::Day] {
        for (i, metric) in metrics.into_iter().enumerate() {
            asks.push(ask(of(metric, window), 1_000, 10 * (i as u64 + 1)));
        }
    }
    let r = admit(&c, &asks, now, "every metric in two windows").await;
    let used: Vec<u64> = r.parts.iter().map(|p| p.used).collect();
    assert_eq!(used, [10, 20, 30, 10, 20, 30], "each bucket its own count");
    // Two asks on the minute's tokens: 20 + 5 + 7.
    let twice = [
        ask(of(Metric::Tokens, Window::Minute), 1_000, 5),
        ask(of(Metric::Tokens, Window::Minute), 1_000, 7),
    ];
    let r2 = admit(&c, &twice, now, "two asks on one bucket").await;
    let used: Vec<u64> = r2.parts.iter().map(|p| p.used).collect();
    assert_eq!(used, [25, 32], "asks on one bucket add up, in order");
    // Requests and cost fit, the day's tokens do not: nothing is added anywhere.
    let refusal = refuse(
        &c,
        &[
            ask(of(Metric::Requests, Window::Minute), 1_000, 1),
            ask(of(Metric::CostMicros, Window::Day), 1_000, 1),
            ask(of(Metric::Tokens, Window::Day), 25, 6),
        ],
        now,
        "the day's tokens are full",
    )
    .await;
    assert_eq!(
        (refusal.bucket, refusal.used),
        (of(Metric::Tokens, Window::Day), 20)
    );
    // Two asks on one bucket that fit apart but not together.
    let refusal = refuse(
        &c,
        &[
            ask(of(Metric::Requests, Window::Day), 15, 3),
            ask(of(Metric::Requests, Window::Day), 15, 3),
        ],
        now,
        "10 + 3 + 3 > 15",
    )
    .await;
    assert_eq!(refusal.used, 13, "the second ask sees the first");
    // The minute's tokens settle to 2 (reserved 20): only that bucket changes.
    let tokens = r
        .parts
        .get(1)
        .copied()
        .unwrap_or_else(|| fail("no tokens part"));
    settle(
        &c,
        &Reservation {
            parts: vec![tokens],
            fallback: false,
        },
        &[2],
        "tokens",
    )
    .await;
    let mut after = Vec::new();
    for window in [Window::Minute, Window::Day] {
        for metric in metrics {
            after.push(usage(&c, of(metric, window), now, "after the settle").await);
        }
    }
    assert_eq!(
        after,
        [10, 14, 30, 10, 20, 30],
        "only the settled bucket moved"
    );
}

/// Usage reads the window containing the time asked about, per bucket.
pub async fn usage_reads(c: DynCounter) {
    let now = at(2025, 10, 26, 1, 30, 0, 0);
    let id = Uuid::new_v4();
    let b = Bucket {
        level: Level::Project,
        id,
        metric: Metric::Tokens,
        window: Window::Hour,
    };
    assert_eq!(usage(&c, b, now, "unknown bucket").await, 0);
    admit(&c, &[ask(b, 1_000, 123)], now, "123 tokens").await;
    assert_eq!(usage(&c, b, now, "same instant").await, 123);
    assert_eq!(
        usage(&c, b, Window::Hour.start(now), "window start").await,
        123
    );
    assert_eq!(
        usage(&c, b, Window::Hour.end(now) - 1, "window end - 1").await,
        123
    );
    assert_eq!(usage(&c, b, Window::Hour.end(now), "next window").await, 0);
    assert_eq!(
        usage(&c, b, Window::Hour.start(now) - 1, "previous window").await,
        0
    );
    // Same id, another level, metric or window: separate counters.
    for (what, other) in [
        (
            "level",
            Bucket {
                level: Level::VirtualKey,
                ..b
            },
        ),
        (
            "metric",
            Bucket {
                metric: Metric::Requests,
                ..b
            },
        ),
        (
            "window",
            Bucket {
                window: Window::Day,
                ..b
            },
        ),
        (
            "id",
            Bucket {
                id: Uuid::new_v4(),
                ..b
            },
        ),
    ] {
        assert_eq!(
            usage(&c, other, now, what).await,
            0,
            "a bucket differing only in its {what} is separate"
        );
    }
    let day = Bucket {
        window: Window::Day,
        ..b
    };
    admit(&c, &[ask(day, 1_000, 7)], now, "7 in the day bucket").await;
    assert_eq!(usage(&c, b, now, "hour bucket").await, 123);
    assert_eq!(usage(&c, day, now, "day bucket").await, 7);
}

/// Seeded random sequences of clock advances, reserves and settles agree with a reference
/// model: decisions, parts, refusals and usage; no admission past a limit, no settle
/// refunding more than its part reserved.
pub async fn random_sequences_match_a_model(c: DynCounter) {
    for seed in 0..20u64 {
        run_random_sequence(&c, seed, 200).await;
    }
}

// ---------------------------------------------------------------------------------------
// The property check and its model.

/// The reference model: a count per (bucket, window start).
#[derive(Debug, Default)]
struct Model {
    counts: HashMap<(Bucket, i64), u64>,
}

impl Model {
    fn get(&self, bucket: Bucket, now: i64) -> u64 {
        self.counts
            .get(&(bucket, bucket.window.start(now)))
            .copied()
            .unwrap_or(0)
    }

    fn reserve(&mut self, asks: &[Ask], now: i64) -> Decision {
        // Asks are added in turn: two on one bucket add up.
        let mut pending: HashMap<Bucket, u64> = HashMap::new();
        for ask in asks {
            let used = self.get(ask.bucket, now) + pending.get(&ask.bucket).copied().unwrap_or(0);
            if used + ask.amount > ask.limit {
                return Decision::Refused(Refusal {
                    bucket: ask.bucket,
                    limit: ask.limit,
                    used,
                    amount: ask.amount,
                    resets_at: ask.bucket.window.end(now),
                    now_ms: now,
                });
            }
            *pending.entry(ask.bucket).or_insert(0) += ask.amount;
        }
        let parts = asks
            .iter()
            .map(|ask| {
                let start = ask.bucket.window.start(now);
                let used = self.counts.entry((ask.bucket, start)).or_insert(0);
                *used += ask.amount;
                Part {
                    bucket: ask.bucket,
                    window_start: start,
                    resets_at: ask.bucket.window.end(now),
                    amount: ask.amount,
                    limit: ask.limit,
                    used: *used,
                }
            })
            .collect();
        Decision::Admitted(Reservation {
            parts,
            fallback: false,
        })
    }

    fn settle(&mut self, reservation: &Reservation, actual: &[u64]) {
        for (part, &real) in reservation.parts.iter().zip(actual) {
            if let Some(count) = self.counts.get_mut(&(part.bucket, part.window_start)) {
                *count = count.saturating_sub(part.amount) + real;
            }
        }
    }
}

/// One seeded sequence of `ops` operations, checked against the model after each.
async fn run_random_sequence(c: &DynCounter, seed: u64, ops: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let levels = [
        Level::VirtualKey,
        Level::Project,
        Level::Deployment,
        Level::Connection,
    ];
    let metrics = [Metric::Requests, Metric::Tokens, Metric::CostMicros];
    // Ids from a pool of two, so that buckets often share an entity (a backend may keep an
    // entity's metrics and windows together). Distinct buckets: the settle checks below
    // hold per bucket (two asks on one bucket are `one_entity_counts_…`'s).
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let mut buckets: Vec<(Bucket, u64)> = (0..rng.random_range(2..=6))
        .map(|_| {
            let b = Bucket {
                level: levels[rng.random_range(0..levels.len())],
                id: ids[rng.random_range(0..ids.len())],
                metric: metrics[rng.random_range(0..metrics.len())],
                window: Window::ALL[rng.random_range(0..Window::ALL.len())],
            };
            let limit = if rng.random_bool(0.2) {
                rng.random_range(100..10_000)
            } else {
                rng.random_range(1..40)
            };
            (b, limit)
        })
        .collect();
    buckets.sort_by_key(|(b, _)| *b);
    buckets.dedup_by_key(|(b, _)| *b);
    // Somewhere between 2020 and 2030.
    let mut now = at(2020, 1, 1, 0, 0, 0, 0) + rng.random_range(0..10 * 365 * DAY);
    let mut open: Vec<Reservation> = Vec::new();
    let (mut admitted, mut refused, mut settled) = (0, 0, 0);
    for op in 0..ops {
        let ctx = format!("seed {seed}, op {op}, now {now}");
        let roll = rng.random_range(0..100);
        if roll < 15 {
            now = advance(&mut rng, now);
        } else if roll < 70 {
            let k = rng.random_range(1..=buckets.len().min(4));
            let mut picked: Vec<usize> = (0..buckets.len()).collect();
            // A partial Fisher–Yates shuffle: k distinct buckets in random order.
            for i in 0..k {
                let j = rng.random_range(i..picked.len());
                picked.swap(i, j);
            }
            let asks: Vec<Ask> = picked[..k]
                .iter()
                .map(|&i| {
                    let (b, base) = buckets[i];
                    let limit = if rng.random_bool(0.1) {
                        rng.random_range(0..=base * 2)
                    } else {
                        base
                    };
                    ask(b, limit, rng.random_range(0..=base / 3 + 1))
                })
                .collect();
            let want = model.reserve(&asks, now);
            let got = reserve(c, &asks, now, &ctx).await;
            assert_eq!(got, want, "{ctx}: reserve of {asks:?}");
            if let Decision::Admitted(r) = got {
                for p in &r.parts {
                    assert!(p.used <= p.limit, "{ctx}: admitted past the limit: {p:?}");
                }
                admitted += 1;
                open.push(r);
            } else {
                refused += 1;
            }
        } else if !open.is_empty() {
            let r = open.swap_remove(rng.random_range(0..open.len()));
            let mut actual: Vec<u64> = r
                .parts
                .iter()
                .map(|p| rng.random_range(0..=p.amount * 2 + 1))
                .collect();
            if rng.random_bool(0.1) {
                actual.truncate(rng.random_range(0..=actual.len()));
            }
            // Windows past their grace may be gone from the counter: not checked.
            let kept = |p: &Part| now < p.resets_at + SETTLE_GRACE_MS;
            let mut before = Vec::new();
            for p in &r.parts {
                before.push(usage(c, p.bucket, p.window_start, &ctx).await);
            }
            model.settle(&r, &actual);
            settle(c, &r, &actual, &ctx).await;
            settled += 1;
            for (p, was) in r.parts.iter().zip(before).filter(|(p, _)| kept(p)) {
                let is = usage(c, p.bucket, p.window_start, &ctx).await;
                assert!(
                    is + p.amount >= was,
                    "{ctx}: a settle refunded {} of a part that reserved {}",
                    was - is,
                    p.amount
                );
                assert_eq!(
                    is,
                    model.get(p.bucket, p.window_start),
                    "{ctx}: usage of a settled part's window (settled {actual:?} for {p:?})"
                );
            }
        }
        // Parts already carry the usage after each reserve; read every bucket now and then
        // (and at the end) to keep a shared counter's run short.
        if op % 4 == 3 || op + 1 == ops {
            for &(b, _) in &buckets {
                assert_eq!(
                    usage(c, b, now, &ctx).await,
                    model.get(b, now),
                    "{ctx}: usage of {b:?}"
                );
            }
        }
    }
    assert!(
        admitted > 0 && refused > 0 && settled > 0,
        "seed {seed} exercised too little: {admitted} admitted, {refused} refused, {settled} settled"
    );
}

/// A random step of the fake clock: small or large, often onto a window boundary.
fn advance(rng: &mut StdRng, now: i64) -> i64 {
    match rng.random_range(0..6) {
        0 => now + rng.random_range(0..1_000),
        1 => now + rng.random_range(0..2 * MINUTE),
        2 => now + rng.random_range(0..2 * DAY),
        3 => now + rng.random_range(0..40 * DAY),
        4 => Window::ALL[rng.random_range(0..Window::ALL.len())].end(now) - 1,
        _ => Window::ALL[rng.random_range(0..Window::ALL.len())].end(now),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

/// A bucket with a fresh random id (for counter tests of any backend).
pub fn bucket(level: Level, metric: Metric, window: Window) -> Bucket {
    Bucket {
        level,
        id: Uuid::new_v4(),
        metric,
        window,
    }
}

/// Room for `amount` in `bucket` under `limit`.
pub fn ask(bucket: Bucket, limit: u64, amount: u64) -> Ask {
    Ask {
        bucket,
        limit,
        amount,
    }
}

/// Unix ms of a UTC date and time (years from 1970), computed independently of
/// `llmur_core::window`.
fn at(year: i64, month: i64, day: i64, hour: i64, min: i64, sec: i64, ms: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for m in 1..month {
        days += lengths[(m - 1) as usize] + i64::from(m == 2 && leap(year));
    }
    days += day - 1;
    ((days * 24 + hour) * 60 + min) * MINUTE + sec * 1_000 + ms
}

/// Fails the check with `message`.
#[track_caller]
#[expect(
    clippy::panic,
    reason = "a failed conformance check fails the calling test"
)]
fn fail(message: impl fmt::Display) -> ! {
    panic!("{message}")
}

/// The value, or a failure naming `what` and the error.
#[track_caller]
fn must<T>(result: Result<T, CounterError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => fail(format_args!("{what}: unexpected error: {e}")),
    }
}

async fn reserve(c: &DynCounter, asks: &[Ask], now: i64, what: &str) -> Decision {
    must(c.reserve(asks, now).await, what)
}

/// A reserve that must be admitted.
async fn admit(c: &DynCounter, asks: &[Ask], now: i64, what: &str) -> Reservation {
    match reserve(c, asks, now, what).await {
        Decision::Admitted(r) => r,
        Decision::Refused(refusal) => {
            fail(format_args!("{what}: expected admission, got {refusal:?}"))
        }
    }
}

/// A reserve that must be refused.
async fn refuse(c: &DynCounter, asks: &[Ask], now: i64, what: &str) -> Refusal {
    match reserve(c, asks, now, what).await {
        Decision::Refused(refusal) => refusal,
        Decision::Admitted(r) => fail(format_args!("{what}: expected a refusal, got {r:?}")),
    }
}

async fn settle(c: &DynCounter, r: &Reservation, actual: &[u64], what: &str) {
    must(c.settle(r, actual).await, what);
}

async fn usage(c: &DynCounter, b: Bucket, now: i64, what: &str) -> u64 {
    must(c.usage(b, now).await, what)
}

/// The only part of a one-ask reservation.
#[track_caller]
fn single(r: &Reservation) -> &Part {
    match r.parts.as_slice() {
        [part] => part,
        parts => fail(format_args!("expected one part, got {parts:?}")),
    }
}
