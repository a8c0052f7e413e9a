//! Unit tests of a slot's lease bookkeeping: top-ups, and what "low" means.

use uuid::Uuid;

use super::*;
use crate::counter::{Level, Metric};
use crate::window::Window;

fn part(amount: u64, used: u64, window_start: i64) -> Part {
    Part {
        bucket: Bucket {
            level: Level::Project,
            id: Uuid::nil(),
            metric: Metric::Requests,
            window: Window::Minute,
        },
        window_start,
        resets_at: window_start + 60_000,
        amount,
        limit: 10_000,
        used,
    }
}

fn ask(amount: u64) -> Ask {
    Ask {
        bucket: part(0, 0, 0).bucket,
        limit: 10_000,
        amount,
    }
}

/// A slot holding a lease of 33 (one request's ask and 32 more) with 20 drawn, taken
/// when 100 others were counted.
fn slot() -> Slot {
    let mut slot = Slot::default();
    assert!(slot.grant(&part(33, 133, 0), 50).is_none());
    if let Some(lease) = slot.lease.as_mut() {
        lease.drawn = 20;
    }
    slot
}

#[test]
fn a_top_up_adds_to_the_lease_in_place() {
    let mut slot = slot();
    // 20 more, answered with the counter's usage: the others, 100, plus 53 leased.
    assert!(slot.top_up(&part(20, 153, 0), 90));
    assert!(slot.returning.is_empty(), "nothing goes back");
    let lease = slot.lease.as_ref().expect("lease");
    assert_eq!(
        (lease.part.amount, lease.drawn, lease.unused()),
        (53, 20, 33)
    );
    assert_eq!(lease.others, 100);
    assert_eq!(lease.expires, 90);
    // Drawn low against its room since the top-up (33), not the sum (53).
    assert_eq!(lease.sized, 33);
    assert!(!lease.drawn_low(&ask(1)));
    let lease = slot.lease.as_mut().expect("lease");
    lease.drawn = 40;
    assert!(!lease.drawn_low(&ask(1)), "12 of 33 left after the ask");
    lease.drawn = 45;
    assert!(lease.drawn_low(&ask(1)), "7 of 33 left: below a quarter");
    assert_eq!(slot.seen_remaining, 10_000 - 153);
}

#[test]
fn a_top_up_in_another_window_or_under_another_limit_is_not_added() {
    let mut slot = slot();
    assert!(!slot.top_up(&part(20, 20, 60_000), 90), "the next window");
    let other_limit = Part {
        limit: 5_000,
        ..part(20, 153, 0)
    };
    assert!(!slot.top_up(&other_limit, 90));
    let lease = slot.lease.as_ref().expect("lease");
    assert_eq!(
        (lease.part.amount, lease.expires),
        (33, 50),
        "left as it was"
    );
    assert!(!Slot::default().top_up(&part(20, 20, 0), 90), "no lease");
}

#[test]
fn low_means_drawn_low_or_a_quarter_of_its_time_left() {
    let slot = slot();
    let lease = slot.lease.as_ref().expect("lease");
    // Expires at 50 ms after the epoch; ttl 40: low from 40 on (under 10 left).
    assert!(!lease.low(&ask(1), 39, 40));
    assert!(lease.low(&ask(1), 41, 40));
    // 13 unused of 33: drawing 6 leaves 7, under a quarter.
    assert!(!lease.low(&ask(4), 0, 40));
    assert!(lease.low(&ask(6), 0, 40));
}
