//! Leases on a shared counter: how few calls reach it, that settles reach it exactly, and
//! that two instances on one shared counter admit exactly the limit.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use llmur_core::counter::{
    Ask, Bucket, CounterError, Decision, LeaseOptions, LeasingCounter, Level, MemoryCounter,
    Metric, Reservation, UsageCounter,
};
use llmur_core::window::Window;
use uuid::Uuid;

/// A memory counter that counts the reserves and settles it is sent.
#[derive(Debug, Default)]
struct Counted {
    inner: MemoryCounter,
    reserves: AtomicU64,
    settles: AtomicU64,
    /// Each reserve's asks, in order.
    asked: std::sync::Mutex<Vec<Vec<Ask>>>,
}

#[async_trait]
impl UsageCounter for Counted {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        self.reserves.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(asks.to_vec());
        }
        self.inner.reserve(asks, now_ms).await
    }
    async fn settle(&self, r: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        self.settles.fetch_add(1, Ordering::Relaxed);
        self.inner.settle(r, actual).await
    }
    fn settle_now(&self, r: &Reservation, actual: &[u64]) -> bool {
        self.settles.fetch_add(1, Ordering::Relaxed);
        self.inner.settle_now(r, actual)
    }
    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        self.inner.usage(bucket, now_ms).await
    }
}

fn bucket(id: Uuid, metric: Metric) -> Bucket {
    Bucket {
        level: Level::Project,
        id,
        metric,
        window: Window::Day,
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit")
}

fn options(ttl_ms: u64) -> LeaseOptions {
    LeaseOptions {
        ttl: Duration::from_millis(ttl_ms),
        grace: Duration::from_millis(10),
        ..LeaseOptions::default()
    }
}

#[tokio::test]
async fn leases_spare_the_shared_counter_and_settles_reach_it_exactly() {
    let shared = Arc::new(Counted::default());
    // A long lease: this test is about calls, not time.
    let leases = LeasingCounter::new(shared.clone(), options(60_000));
    let id = Uuid::new_v4();
    let asks = [
        Ask {
            bucket: bucket(id, Metric::Requests),
            limit: 1_000_000,
            amount: 1,
        },
        Ask {
            bucket: bucket(id, Metric::Tokens),
            limit: 1_000_000_000,
            amount: 100,
        },
    ];
    let now = now_ms();
    for i in 0..320u64 {
        let Decision::Admitted(r) = leases.reserve(&asks, now).await.expect("reserve") else {
            panic!("request {i} refused");
        };
        assert_eq!(
            r.parts[0].used,
            i + 1,
            "requests used, as if counted one by one"
        );
        assert_eq!(
            r.parts[1].used,
            i * 40 + 100,
            "tokens used, settles included"
        );
        assert!(leases.settle_now(&r, &[1, 40]), "settled at once");
    }
    let calls = shared.reserves.load(Ordering::Relaxed);
    // One call to learn the room, then one per 32 requests (requests' lease) and one per
    // 80 (tokens': settles leave 60 of each 100 in it).
    assert!(
        calls <= 16,
        "{calls} reserves reached the shared counter for 320 requests"
    );
    // The requests' own settles stay in the leases: what reaches the shared counter is
    // the first request's (no lease yet) and each spent lease going back.
    let settles = shared.settles.load(Ordering::Relaxed);
    assert!(settles <= calls, "{settles} settles for {calls} reserves");
    // Leases drawn low were renewed ahead, in the background, by some of those calls.
    let renewed = leases.renewed_ahead();
    assert!(
        renewed >= 1 && renewed < calls,
        "{renewed} renewals ahead among {calls} reserves"
    );
    assert_eq!(leases.leases(), 2);
    assert_eq!(
        leases.usage(asks[1].bucket, now).await.expect("usage"),
        320 * 40
    );

    // A settle beyond the lease's room reaches the shared counter at once.
    let Decision::Admitted(r) = leases.reserve(&asks, now).await.expect("reserve") else {
        panic!("refused");
    };
    let before = shared
        .inner
        .usage(asks[1].bucket, now)
        .await
        .expect("usage");
    leases.settle_now(&r, &[1, 10_000_000]);
    let after = shared
        .inner
        .usage(asks[1].bucket, now)
        .await
        .expect("usage");
    assert_eq!(
        after - before,
        10_000_000 - 100,
        "beyond the lease: counted at once"
    );
    assert!(shared.settles.load(Ordering::Relaxed) >= 1);

    leases.release_all().await;
    assert_eq!(leases.leases(), 0);
    let usage = |b| {
        let shared = shared.clone();
        async move { shared.inner.usage(b, now).await.expect("usage") }
    };
    assert_eq!(
        usage(asks[0].bucket).await,
        321,
        "every request, no lease left"
    );
    assert_eq!(usage(asks[1].bucket).await, 320 * 40 + 10_000_000);
}

/// Leases drawn low within half their time grow (up to 16 times `requests` asks), so a
/// busy bucket calls the shared counter less; one that expires more than half unused
/// halves the next.
#[tokio::test]
async fn leases_grow_when_drawn_fast_and_shrink_when_left_unused() {
    let shared = Arc::new(Counted::default());
    let ttl = 200;
    let leases = LeasingCounter::new(shared.clone(), options(ttl));
    let ask = Ask {
        bucket: bucket(Uuid::new_v4(), Metric::Requests),
        limit: 10_000_000,
        amount: 1,
    };
    let now = now_ms();
    let admit = |leases: &LeasingCounter| {
        let leases = leases.clone();
        async move {
            let Decision::Admitted(r) = leases.reserve(&[ask], now).await.expect("reserve") else {
                panic!("refused");
            };
            assert!(leases.settle_now(&r, &[1]), "settled at once");
            // A request's own I/O lets background work (renewals) run between requests.
            tokio::task::yield_now().await;
        }
    };
    for _ in 0..2_000 {
        admit(&leases).await;
    }
    let calls = shared.reserves.load(Ordering::Relaxed);
    // At 32 requests a lease (renewed at a quarter left), 2,000 requests take about 84
    // calls; growing 32, 64, ..., 512, they took 10.
    assert!(
        calls <= 16,
        "{calls} reserves for 2,000 requests drawn fast"
    );

    let shared_usage = || async { shared.usage(ask.bucket, now).await.expect("usage") };
    let settle_down = || tokio::time::sleep(Duration::from_millis(3 * ttl));
    settle_down().await;
    assert_eq!(shared_usage().await, 2_000, "every lease went back");
    admit(&leases).await;
    let first = shared_usage().await - 2_001;
    assert!(first >= 8 * 32, "the lease grew: {first}");
    // Expires with all but the one request unused: the next is half as large.
    settle_down().await;
    admit(&leases).await;
    let second = shared_usage().await - 2_002;
    assert_eq!(second, first / 2, "the lease shrank");
}

/// A lease renewed ahead for age is topped up in place by one reserve: nothing goes back
/// while it is drawn on, and it never holds more unused room than one lease's size.
#[tokio::test]
async fn old_leases_are_topped_up_in_place() {
    let shared = Arc::new(Counted::default());
    // Renewed for age at a quarter of 300 ms left; 15 ms between requests draws about 15
    // of a lease's 32 by then, so it is never drawn low.
    let leases = LeasingCounter::new(shared.clone(), options(300));
    let ask = Ask {
        bucket: bucket(Uuid::new_v4(), Metric::Requests),
        limit: 10_000_000,
        amount: 1,
    };
    let now = now_ms();
    let mut admitted = 0u64;
    for _ in 0..60 {
        let Decision::Admitted(r) = leases.reserve(&[ask], now).await.expect("reserve") else {
            panic!("refused");
        };
        admitted += 1;
        assert!(leases.settle_now(&r, &[1]), "settled at once");
        tokio::time::sleep(Duration::from_millis(15)).await;
        let used = shared.inner.usage(ask.bucket, now).await.expect("usage");
        let held = used - admitted;
        assert!(
            held <= 32,
            "{held} unused room leased after {admitted} requests"
        );
    }
    let renewed = leases.renewed_ahead();
    // One a quarter of the lease's time at most: a topped-up lease is drawn low against
    // its new room, not the sum of every top-up.
    assert!(
        (2..=5).contains(&renewed),
        "{renewed} renewals in 60 requests over 0.9 s"
    );
    assert_eq!(
        shared.reserves.load(Ordering::Relaxed),
        2 + renewed,
        "the first request, the first lease, then one call a renewal"
    );
    assert_eq!(
        shared.settles.load(Ordering::Relaxed),
        0,
        "nothing went back while the lease was drawn on"
    );
    leases.release_all().await;
    assert_eq!(
        shared.settles.load(Ordering::Relaxed),
        1,
        "one return at the end"
    );
    assert_eq!(
        shared.inner.usage(ask.bucket, now).await.expect("usage"),
        admitted,
        "every request, no lease left"
    );
}

/// A renewal tops up, in the same call, the request's other leases past half their room:
/// leases drawn at different paces come due together instead of a call each.
#[tokio::test]
async fn a_renewal_takes_the_requests_half_drawn_leases_along() {
    let shared = Arc::new(Counted::default());
    let leases = LeasingCounter::new(shared.clone(), options(60_000));
    let ask = |metric| Ask {
        bucket: bucket(Uuid::new_v4(), metric),
        limit: 10_000_000,
        amount: 1,
    };
    let (a, b) = (ask(Metric::Requests), ask(Metric::Tokens));
    let now = now_ms();
    let admit = |asks: Vec<Ask>| {
        let leases = leases.clone();
        async move {
            let Decision::Admitted(_) = leases.reserve(&asks, now).await.expect("reserve") else {
                panic!("refused");
            };
        }
    };
    // The first learns the room, the second leases 32 more on each (33, one drawn).
    admit(vec![a, b]).await;
    admit(vec![a, b]).await;
    // B down to 12 unused (below half, above a quarter), A to 8 (low at its next draw).
    for _ in 0..20 {
        admit(vec![b]).await;
    }
    for _ in 0..24 {
        admit(vec![a]).await;
    }
    assert_eq!(shared.reserves.load(Ordering::Relaxed), 2, "no renewal yet");
    admit(vec![a, b]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let asked = shared.asked.lock().map(|a| a.clone()).unwrap_or_default();
    let renewal = asked.get(2).expect("a renewal");
    assert_eq!(renewal.len(), 2, "both leases in one call: {renewal:?}");
    // Each is topped up to its next size: A's doubled (drawn low within half its time),
    // B's as it was; 7 and 11 left after the last draws.
    assert_eq!(renewal[0].amount, 64 - 7);
    assert_eq!(renewal[1].amount, 32 - 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_counter_admit_exactly_the_limit() {
    let shared = Arc::new(Counted::default());
    let a = LeasingCounter::new(shared.clone(), options(20));
    let b = LeasingCounter::new(shared.clone(), options(20));
    let ask = [Ask {
        bucket: bucket(Uuid::new_v4(), Metric::Requests),
        limit: 2_000,
        amount: 1,
    }];
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            for _ in 0..300 {
                if let Decision::Admitted(_) = c.reserve(&ask, now_ms()).await.expect("reserve") {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.expect("task");
    }
    assert_eq!(admitted, 2_000, "exactly the limit, of 2,400 asked");
    let calls = shared.reserves.load(Ordering::Relaxed);
    assert!(calls < 1_000, "{calls} reserves reached the shared counter");
    a.release_all().await;
    b.release_all().await;
    let used = shared.inner.usage(ask[0].bucket, now_ms()).await;
    assert_eq!(
        used.expect("usage"),
        2_000,
        "nothing leased is left counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_waits_for_another_instances_lease() {
    let shared = Arc::new(Counted::default());
    let a = LeasingCounter::new(shared.clone(), options(30));
    let b = LeasingCounter::new(shared.clone(), options(30));
    let ask = [Ask {
        bucket: bucket(Uuid::new_v4(), Metric::Requests),
        limit: 1_000,
        amount: 1,
    }];
    // A learns the room, then takes a lease (15 more: 998 / 64) and holds it.
    for _ in 0..2 {
        let d = a.reserve(&ask, now_ms()).await.expect("reserve");
        assert!(matches!(d, Decision::Admitted(_)));
    }
    assert_eq!(a.leases(), 1);
    let mut admitted = 0;
    loop {
        match b.reserve(&ask, now_ms()).await.expect("reserve") {
            Decision::Admitted(_) => admitted += 1,
            Decision::Refused(r) => {
                assert_eq!(r.used, 1_000, "refused only when truly full");
                break;
            }
        }
    }
    assert_eq!(
        admitted, 998,
        "B gets all A did not use, once A's lease went back"
    );
}

/// A memory counter whose settles take a while, like a shared counter across a network.
#[derive(Debug, Default)]
struct Slow(MemoryCounter);

#[async_trait]
impl UsageCounter for Slow {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        tokio::time::sleep(Duration::from_micros(300)).await;
        self.0.reserve(asks, now_ms).await
    }
    async fn settle(&self, r: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.settle(r, actual).await
    }
    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        self.0.usage(bucket, now_ms).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_over_a_slow_counter() {
    llmur_testkit::conformance::counter::run_counter_suite(|| async {
        let options = LeaseOptions {
            requests: 8,
            ttl: Duration::from_millis(10),
            share: 4,
            grace: Duration::from_millis(5),
        };
        Arc::new(LeasingCounter::new(Arc::new(Slow::default()), options)) as Arc<dyn UsageCounter>
    })
    .await;
}
