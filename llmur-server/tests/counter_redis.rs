//! The Redis usage counter on a real server (`LLMUR_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`): the shared conformance suite in caller-clock mode, then the
//! server clock, several instances at once, round trips, expiry and a dead or restarting
//! Redis. Every test uses its own key prefix and deletes its keys. Without a reachable
//! server these tests fail with a message saying how to start one; they never skip. The
//! round-trip and restart tests start a private `redis-server` (from `PATH`) on a free port.

#![expect(
    clippy::expect_used,
    reason = "test helpers fail the calling test on an unexpected Redis error"
)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmur_core::counter::{
    Ask, Bucket, CounterError, Decision, FailPolicy, FailoverCounter, LeaseOptions, LeasingCounter,
    Level, Metric, Part, Reservation, UsageCounter,
};
use llmur_core::window::Window;
use llmur_server::counter_redis::{RedisCounter, RedisCounterOptions};
use llmur_testkit::conformance::counter::{ask, bucket, run_counter_suite};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("LLMUR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection to the shared test Redis; panics with how to start one when unreachable.
#[expect(clippy::panic, reason = "test helper: fail loudly with how to fix it")]
async fn raw(url: &str) -> MultiplexedConnection {
    let connect = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("{}", unreachable_message(url, &e.to_string())),
        Err(_) => panic!("{}", unreachable_message(url, "no answer within 3 s")),
    }
}

fn unreachable_message(url: &str, why: &str) -> String {
    format!(
        "the Redis counter tests need a Redis server at {url} ({why}). Start one with \
         `redis-server --port 6379 --save '' --appendonly no --daemonize yes`, or point \
         LLMUR_TEST_REDIS_URL at another (e.g. redis://127.0.0.1:6380/0)"
    )
}

/// A key prefix of its own for one test.
fn fresh_prefix() -> String {
    format!("llmur:test:{}", Uuid::new_v4())
}

/// Deletes every key under `prefix`.
async fn cleanup(conn: &mut MultiplexedConnection, prefix: &str) {
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: i64 = conn.del(keys).await.expect("DEL");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// The Redis server's clock (Unix ms).
async fn server_now(conn: &mut MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1_000 + micros / 1_000
}

fn local_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit i64")
}

fn counter(url: &str, prefix: &str) -> RedisCounter {
    RedisCounter::connect(url, prefix).expect("valid URL")
}

fn admitted(decision: Decision) -> Reservation {
    match decision {
        Decision::Admitted(r) => r,
        Decision::Refused(r) => unreachable!("expected admission, got {r:?}"),
    }
}

fn only(r: &Reservation) -> Part {
    assert_eq!(r.parts.len(), 1, "one part");
    r.parts[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_in_caller_clock_mode() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let started = Instant::now();
    let make_prefix = prefix.clone();
    run_counter_suite(move || {
        let counter = counter(&url, &make_prefix).with_caller_clock();
        async move { Arc::new(counter) as Arc<dyn UsageCounter> }
    })
    .await;
    eprintln!("counter conformance on Redis took {:?}", started.elapsed());
    cleanup(&mut conn, &prefix).await;
}

/// Leases over the Redis counter pass the same suite, with leases small and short enough
/// that the suite's limits take them. Its `used` figures are exact only because calls
/// whose answers are read wait for background lease changes on their buckets to land,
/// and those changes wait for such calls (`Shared::begin_call`): with four busy loops on
/// the two cores and leases of a fixed size, it failed 6 runs of 8 without that and 0 of
/// 8 with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_with_leases() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let make_prefix = prefix.clone();
    run_counter_suite(move || {
        let inner = Arc::new(counter(&url, &make_prefix).with_caller_clock());
        let options = llmur_core::counter::LeaseOptions {
            requests: 8,
            ttl: Duration::from_millis(10),
            share: 4,
            grace: Duration::from_millis(5),
        };
        async move {
            Arc::new(llmur_core::counter::LeasingCounter::new(inner, options))
                as Arc<dyn UsageCounter>
        }
    })
    .await;
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn windows_come_from_the_server_clock() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let c = counter(&url, &prefix);
    for window in Window::ALL {
        let b = bucket(Level::Project, Metric::Tokens, window);
        let local_before = local_now();
        let server_before = server_now(&mut conn).await;
        // The caller's clock says 1970: a server-clock counter ignores it.
        let r = admitted(c.reserve(&[ask(b, 10, 4)], 0).await.expect("reserve"));
        let server_after = server_now(&mut conn).await;
        let local_after = local_now();
        let p = only(&r);
        assert!(
            p.window_start == window.start(server_before)
                || p.window_start == window.start(server_after),
            "{window:?}: window start {} not from the server's clock ({server_before}..{server_after})",
            p.window_start
        );
        assert_eq!(p.resets_at, window.end(p.window_start), "{window:?} end");
        // Same machine: the local clock agrees within a second, allowing for a boundary.
        assert!(
            window.start(local_before - 1_000) <= p.window_start
                && p.window_start <= window.start(local_after + 1_000),
            "{window:?}: window start {} far from the local clock {local_before}",
            p.window_start
        );
        assert_eq!(
            c.usage(b, server_after).await.expect("usage"),
            4,
            "usage by the server's time"
        );
        let (hash, field) = c.location(&b, p.window_start);
        assert_eq!(
            (hash.as_str(), field.as_str()),
            (
                format!("{prefix}:{}:{}", window.as_str(), p.window_start).as_str(),
                format!("project:{}", b.id).as_str()
            ),
            "key layout"
        );
        let stored: Vec<u8> = conn.hget(&hash, &field).await.expect("HGET");
        assert_eq!(stored.len(), 24, "three packed doubles");
        assert_eq!(RedisCounter::unpack_count(&stored, Metric::Tokens), Some(4));
        assert_eq!(
            RedisCounter::unpack_count(&stored, Metric::Requests),
            Some(0)
        );
        // A refusal reports the server's time.
        let before = server_now(&mut conn).await;
        let refusal = match c.reserve(&[ask(b, 10, 7)], 0).await.expect("reserve") {
            Decision::Refused(refusal) => refusal,
            Decision::Admitted(r) => unreachable!("4 + 7 > 10, got {r:?}"),
        };
        let after = server_now(&mut conn).await;
        assert!(
            (before..=after).contains(&refusal.now_ms),
            "refusal time {} is the server's ({before}..{after})",
            refusal.now_ms
        );
        assert_eq!(refusal.resets_at, window.end(refusal.now_ms));
    }
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn exactly_the_limit_across_three_instances() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    // Three instances, three pools, one Redis.
    let counters: Vec<Arc<RedisCounter>> =
        (0..3).map(|_| Arc::new(counter(&url, &prefix))).collect();
    let key = bucket(Level::VirtualKey, Metric::Requests, Window::Month);
    let project = bucket(Level::Project, Metric::Tokens, Window::Month);
    let limit = 137;
    let started = Instant::now();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let c = Arc::clone(&counters[i % 3]);
            tokio::spawn(async move {
                c.reserve(&[ask(key, limit, 1), ask(project, 1_000_000, 10)], 0)
                    .await
            })
        })
        .collect();
    let mut per_window: HashMap<i64, u64> = HashMap::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task").expect("reserve") {
            Decision::Admitted(r) => {
                assert!(r.parts[0].used <= limit, "admitted past the limit: {r:?}");
                *per_window.entry(r.parts[0].window_start).or_default() += 1;
            }
            Decision::Refused(_) => refused += 1,
        }
    }
    eprintln!(
        "300 concurrent reserves on 3 instances took {:?}",
        started.elapsed()
    );
    // A month boundary during the test would split the counts over two windows.
    for (&start, &n) in &per_window {
        assert!(n <= limit, "{n} admitted in the window starting {start}");
    }
    if per_window.len() == 1 {
        let (&start, &n) = per_window.iter().next().expect("one window");
        assert_eq!(n, limit, "exactly the limit is admitted, never more");
        assert_eq!(refused, 300 - limit);
        for c in &counters {
            assert_eq!(c.usage(key, start).await.expect("usage"), limit);
            assert_eq!(c.usage(project, start).await.expect("usage"), limit * 10);
        }
    }
    cleanup(&mut conn, &prefix).await;
}

/// A private `redis-server` on a free port, killed when dropped.
struct ScratchRedis {
    child: tokio::process::Child,
    port: u16,
}

impl ScratchRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port).await
    }

    #[expect(clippy::panic, reason = "test helper: fail loudly with how to fix it")]
    async fn start_on(port: u16) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("these tests start `redis-server` from PATH (install redis-server): {e}")
            });
        let scratch = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if ping(&scratch.url()).await {
                return scratch;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop redis-server");
    }
}

/// Whether a Redis answers at `url`.
async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

/// Zeroes the server's command counts (`CONFIG RESETSTAT`).
async fn reset_stats(conn: &mut MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("RESETSTAT");
}

/// Calls per command since the last `CONFIG RESETSTAT`, without the bookkeeping ones.
async fn command_calls(conn: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("config") && name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

#[tokio::test]
async fn one_round_trip_per_call() {
    let scratch = ScratchRedis::start().await;
    let mut conn = raw(&scratch.url()).await;
    let c = counter(&scratch.url(), "rt");
    let a = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
    let b = bucket(Level::Project, Metric::Tokens, Window::Month);
    let d = bucket(Level::Deployment, Metric::CostMicros, Window::Week);
    // Warm up: opens the pooled connection and loads both scripts.
    let warm = admitted(c.reserve(&[ask(d, 1_000, 1)], 0).await.expect("warm-up"));
    c.settle(&warm, &[2]).await.expect("warm-up settle");
    reset_stats(&mut conn).await;
    // 40 reserves, one after another, over three buckets: `a` fills at 25, so 15 are
    // refused at the first ask. The three buckets are in three window hashes (minute,
    // month, week): the script reads each with one HMGET and writes each once with one
    // HSET when it admits; a hash that may be new gets its TTL with one PEXPIRE (`a`'s and
    // `b`'s are new, `d`'s exists since the warm-up); a refusal writes nothing.
    let mut reservations = Vec::new();
    for _ in 0..40 {
        let asks = [ask(a, 25, 1), ask(b, 1_000_000, 100), ask(d, 1_000, 1)];
        match c.reserve(&asks, 0).await.expect("reserve") {
            Decision::Admitted(r) => reservations.push(r),
            Decision::Refused(refusal) => assert_eq!(refusal.bucket, a),
        }
    }
    assert_eq!(reservations.len(), 25);
    let calls = command_calls(&mut conn).await;
    let want: HashMap<String, u64> = [
        ("evalsha", 40),
        ("time", 40),
        ("hmget", 40 * 3),
        ("pexpire", 2),
        ("hset", 25 * 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        calls, want,
        "each reserve is one EVALSHA (the rest runs inside the script), and nothing else"
    );
    // Settles: one EVALSHA each (two of three parts change, in two hashes); usage: one
    // HGET.
    reset_stats(&mut conn).await;
    for r in &reservations[..10] {
        c.settle(r, &[1, 50, 0]).await.expect("settle");
    }
    c.settle(&reservations[10], &[1, 100, 1])
        .await
        .expect("a settle changing nothing");
    let used = c
        .usage(b, scratch_now(&mut conn).await)
        .await
        .expect("usage");
    assert_eq!(used, 25 * 100 - 10 * 50);
    let calls = command_calls(&mut conn).await;
    let want: HashMap<String, u64> = [
        ("evalsha", 10),
        ("time", 1),
        ("hmget", 10 * 2),
        ("hget", 1),
        ("hset", 10 * 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        calls, want,
        "a settle is one EVALSHA, none when nothing changes; usage is one HGET"
    );
    drop(c);
    scratch.stop().await;
}

/// The proxy's settles (`settle_now`) return at once and land in one batch: one EVALSHA
/// for all of them; without a runtime to write on, `settle_now` declines (the caller then
/// settles in a task of its own).
#[tokio::test]
async fn settle_now_queues_into_the_batch_without_waiting() {
    let scratch = ScratchRedis::start().await;
    let mut conn = raw(&scratch.url()).await;
    let c = Arc::new(counter(&scratch.url(), "now"));
    let b = bucket(Level::Project, Metric::Tokens, Window::Day);
    let mut reservations = Vec::new();
    for _ in 0..10 {
        let r = c
            .reserve(&[ask(b, 1_000_000, 100)], 0)
            .await
            .expect("reserve");
        reservations.push(admitted(r));
    }
    // Loads the settle script, on another bucket.
    let d = bucket(Level::Deployment, Metric::Tokens, Window::Day);
    let warm = admitted(c.reserve(&[ask(d, 1_000, 1)], 0).await.expect("warm-up"));
    c.settle(&warm, &[2]).await.expect("warm-up settle");
    reset_stats(&mut conn).await;
    for (i, r) in reservations.iter().enumerate() {
        let actual = if i < 4 { 40 } else { 100 };
        assert!(c.settle_now(r, &[actual]), "queued");
    }
    let other = Arc::clone(&c);
    let last = reservations[9].clone();
    let declined = std::thread::spawn(move || other.settle_now(&last, &[1]))
        .join()
        .expect("thread");
    assert!(!declined, "no runtime on a plain thread: declined");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut used = 0;
    while Instant::now() < deadline {
        used = c
            .usage(b, scratch_now(&mut conn).await)
            .await
            .expect("usage");
        if used == 10 * 100 - 4 * 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        used,
        10 * 100 - 4 * 60,
        "the four settles to 40 are written"
    );
    let calls = command_calls(&mut conn).await;
    assert_eq!(calls.get("evalsha"), Some(&1), "one batch: {calls:?}");
    drop(c);
    scratch.stop().await;
}

/// A spawned reserve: its asks and its decision.
type Spawned = tokio::task::JoinHandle<(Vec<Ask>, Result<Decision, CounterError>)>;

/// Spawns a tagged reserve of each of `shapes` at once (they share script calls); each
/// task answers with its asks and decision.
fn spawn_tagged(
    c: &Arc<RedisCounter>,
    shapes: impl Iterator<Item = Vec<Ask>>,
    ticket: fn() -> Uuid,
) -> Vec<Spawned> {
    shapes
        .map(|asks| {
            let c = Arc::clone(c);
            tokio::spawn(async move {
                let decision = c.reserve_tagged(&asks, 0, ticket()).await;
                (asks, decision)
            })
        })
        .collect()
}

/// The server's time, read through the raw connection (counts as one `TIME`).
async fn scratch_now(conn: &mut MultiplexedConnection) -> i64 {
    server_now(conn).await
}

#[tokio::test]
async fn a_redis_that_is_down_fails_fast() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://user:secret@127.0.0.1:{port}");
    let c = RedisCounter::connect(&url, "down").expect("construction does not need Redis");
    assert!(
        !format!("{c:?}").contains("secret"),
        "Debug hides the password"
    );
    let b = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
    let started = Instant::now();
    let err = c
        .reserve(&[ask(b, 10, 1)], local_now())
        .await
        .expect_err("no Redis");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "reserve failed after {took:?}"
    );
    assert!(
        !err.0.contains("secret"),
        "the error hides the password: {err}"
    );
    eprintln!("reserve on a dead Redis failed in {took:?}: {err}");
    let started = Instant::now();
    assert!(c.usage(b, local_now()).await.is_err());
    let part = Part {
        bucket: b,
        window_start: 0,
        resets_at: 60_000,
        amount: 1,
        limit: 10,
        used: 1,
    };
    let reservation = Reservation {
        parts: vec![part],
        fallback: false,
    };
    assert!(c.settle(&reservation, &[0]).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The failover wrapper falls back to counting locally.
    let failover = FailoverCounter::new(
        Arc::new(c),
        FailPolicy::Open,
        Duration::from_millis(500),
        Duration::from_secs(5),
    );
    let started = Instant::now();
    match failover.reserve(&[ask(b, 10, 1)], local_now()).await {
        Ok(Decision::Admitted(r)) => assert!(r.fallback, "counted by the fallback"),
        other => unreachable!("fail-open admits locally, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn recovers_when_redis_restarts() {
    let scratch = ScratchRedis::start().await;
    let port = scratch.port;
    let c = counter(&scratch.url(), "restart");
    let b = bucket(Level::Project, Metric::Requests, Window::Day);
    admitted(c.reserve(&[ask(b, 100, 1)], 0).await.expect("reserve"));
    scratch.stop().await;
    // The pooled connection is dead: the call fails (and drops it), quickly.
    let started = Instant::now();
    assert!(c.reserve(&[ask(b, 100, 1)], 0).await.is_err());
    assert!(c.reserve(&[ask(b, 100, 1)], 0).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    // Back again (empty, without the script loaded): the counter reconnects by itself.
    let scratch = ScratchRedis::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        match c.reserve(&[ask(b, 100, 1)], 0).await {
            Ok(decision) => break admitted(decision),
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(only(&r).used, 1, "the restarted Redis starts empty");
    // Nor has it the settle and cancel scripts: each is loaded on its first call.
    c.settle(&r, &[3]).await.expect("settle after the restart");
    let ticket = Uuid::new_v4();
    let asks = [ask(b, 100, 5)];
    admitted(c.reserve_tagged(&asks, 0, ticket).await.expect("tagged"));
    assert_eq!(c.usage(b, local_now()).await.expect("usage"), 8);
    c.cancel(&asks, ticket)
        .await
        .expect("cancel after the restart");
    assert_eq!(c.usage(b, local_now()).await.expect("usage"), 3);
    drop(c);
    scratch.stop().await;
}

#[tokio::test]
async fn keys_expire_after_their_window_and_grace() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    // Server clock, default grace: the TTL runs to the window's end plus 10 minutes.
    let c = counter(&url, &prefix);
    let b = bucket(Level::Deployment, Metric::Tokens, Window::Hour);
    let before = server_now(&mut conn).await;
    let r = admitted(c.reserve(&[ask(b, 1_000, 10)], 0).await.expect("reserve"));
    let (key, _) = c.location(&b, only(&r).window_start);
    let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
    let grace = 600_000;
    let most = only(&r).resets_at + grace - before;
    assert!(
        ttl > 0 && ttl <= most && ttl > most - 5_000,
        "TTL {ttl} ms, expected about {most} ms"
    );
    c.settle(&r, &[3]).await.expect("settle");
    let ttl_after: i64 = conn.pttl(&key).await.expect("PTTL");
    assert!(ttl_after > 0, "a settle keeps the TTL ({ttl_after})");

    // Caller clock just before a window's end, no grace: the key lives ~150 ms.
    let short = RedisCounter::connect_with(
        &url,
        RedisCounterOptions {
            prefix: prefix.clone(),
            grace: Duration::ZERO,
            ..RedisCounterOptions::default()
        },
    )
    .expect("valid options")
    .with_caller_clock();
    let now = Window::Minute.end(local_now()) - 150;
    let m = bucket(Level::VirtualKey, Metric::Requests, Window::Minute);
    let r = admitted(short.reserve(&[ask(m, 5, 2)], now).await.expect("reserve"));
    let (key, _) = short.location(&m, only(&r).window_start);
    let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 150,
        "TTL {ttl} ms, expected at most 150 ms"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let exists: bool = conn.exists(&key).await.expect("EXISTS");
    assert!(!exists, "the key expired with its window");
    assert_eq!(short.usage(m, now).await.expect("usage"), 0);
    // A settle after expiry is ignored and creates no key (which would have no TTL).
    short.settle(&r, &[5]).await.expect("late settle");
    let exists: bool = conn.exists(&key).await.expect("EXISTS");
    assert!(!exists, "a late settle creates no key");
    cleanup(&mut conn, &prefix).await;
}

/// A window's hash holds a field per entity in use: hundreds in a busy tenancy. Kept as a
/// listpack (Redis's default below 128 or 512 small fields), every field lookup would scan
/// it; the reserve script creates every hash as a hash table.
#[tokio::test]
async fn window_hashes_are_hash_tables_from_the_start() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let c = counter(&url, &prefix);
    let minute = bucket(Level::Project, Metric::Requests, Window::Minute);
    let day = Bucket {
        window: Window::Day,
        ..minute
    };
    let r = admitted(
        c.reserve(&[ask(minute, 10, 1), ask(day, 10, 1)], 0)
            .await
            .expect("reserve"),
    );
    for part in &r.parts {
        let (key, field) = c.location(&part.bucket, part.window_start);
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("OBJECT ENCODING");
        assert_eq!(encoding, "hashtable", "{key}");
        let stored: Vec<u8> = conn.hget(&key, &field).await.expect("HGET");
        assert_eq!(
            RedisCounter::unpack_count(&stored, Metric::Requests),
            Some(1),
            "{key} {field}"
        );
    }
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn huge_amounts_and_limits() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let c = counter(&url, &prefix).with_caller_clock();
    let now = local_now();
    let b = bucket(Level::Connection, Metric::CostMicros, Window::Month);
    // An unlimited-looking limit works.
    let r = admitted(
        c.reserve(&[ask(b, u64::MAX, 1_000_000_000_000)], now)
            .await
            .expect("reserve"),
    );
    assert_eq!(only(&r).used, 1_000_000_000_000);
    // 2^53 is past what the script compares exactly: an error, nothing added.
    assert!(c.reserve(&[ask(b, u64::MAX, 1 << 53)], now).await.is_err());
    assert_eq!(c.usage(b, now).await.expect("usage"), 1_000_000_000_000);
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn the_scripts_windows_match_window_everywhere() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let c = counter(&url, &prefix).with_caller_clock();
    let buckets: Vec<Bucket> = Window::ALL
        .iter()
        .map(|&w| bucket(Level::VirtualKey, Metric::Tokens, w))
        .collect();
    let asks: Vec<Ask> = buckets.iter().map(|&b| ask(b, 0, 0)).collect();
    // Every month boundary from 1969 to 2101 (and the instant before it), then spread
    // instants from 1900 to 2400, negative ones included.
    let mut instants = Vec::new();
    let mut t = Window::Month.start(-400 * 86_400_000);
    while t < 4_133_980_800_000 {
        instants.extend([t - 1, t, t + 1]);
        t = Window::Month.end(t);
    }
    let (from, to) = (-2_208_988_800_000_i64, 13_569_465_600_000_i64);
    let step = (to - from) / 1_500;
    instants.extend((0..1_500).map(|i| from + i * step + (i * 7_919_993) % 86_400_000));
    for &now in &instants {
        let r = admitted(c.reserve(&asks, now).await.expect("reserve"));
        for (p, w) in r.parts.iter().zip(Window::ALL) {
            assert_eq!(
                (p.window_start, p.resets_at),
                (w.start(now), w.end(now)),
                "{w:?} window of {now}"
            );
        }
    }
    cleanup(&mut conn, &prefix).await;
}

/// The key that holds `ticket`: for a version 7 ticket the hash of its tenth of a second
/// (the ticket's 16 bytes are a field there), for any other one a key of its own.
fn ticket_key(prefix: &str, ticket: Uuid) -> (String, bool) {
    match ticket.get_timestamp() {
        Some(at) if ticket.get_version() == Some(uuid::Version::SortRand) => {
            let (secs, nanos) = at.to_unix();
            let tenth = secs * 10 + u64::from(nanos / 100_000_000);
            (format!("{prefix}:tickets:{tenth}"), true)
        }
        _ => (format!("{prefix}:ticket:{ticket}"), false),
    }
}

/// Whether a reserve or cancel left anything under `ticket`.
async fn ticket_recorded(conn: &mut MultiplexedConnection, prefix: &str, ticket: Uuid) -> bool {
    match ticket_key(prefix, ticket) {
        (hash, true) => conn
            .hexists(&hash, ticket.as_bytes().as_slice())
            .await
            .expect("HEXISTS"),
        (key, false) => conn.exists(&key).await.expect("EXISTS"),
    }
}

#[tokio::test]
async fn a_cancelled_ticket_is_undone_or_never_applies() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    // Both kinds of ticket: time-ordered ones (the failover counter's) share a hash per
    // tenth of a second, others get a key each.
    for (kind, new_ticket) in [("v7", Uuid::now_v7 as fn() -> Uuid), ("v4", Uuid::new_v4)] {
        let prefix = fresh_prefix();
        let c = counter(&url, &prefix);
        let tokens = bucket(Level::Project, Metric::Tokens, Window::Day);
        let asks = [ask(tokens, 1_000, 300)];
        let now = local_now();

        // Applied, then cancelled: the amount comes back out; a second cancel changes
        // nothing.
        let kept = admitted(
            c.reserve(&[ask(tokens, 1_000, 100)], now)
                .await
                .expect("reserve"),
        );
        let ticket = new_ticket();
        admitted(
            c.reserve_tagged(&asks, now, ticket)
                .await
                .expect("tagged reserve"),
        );
        assert!(ticket_recorded(&mut conn, &prefix, ticket).await, "{kind}");
        // A ticket lives about a minute (its hash a second more: later tickets share it).
        let ttl: i64 = conn
            .pttl(ticket_key(&prefix, ticket).0)
            .await
            .expect("PTTL");
        assert!(
            (58_000..=61_000).contains(&ttl),
            "{kind}: ticket TTL {ttl} ms"
        );
        assert_eq!(c.usage(tokens, now).await.expect("usage"), 400, "{kind}");
        c.cancel(&asks, ticket).await.expect("cancel");
        assert_eq!(c.usage(tokens, now).await.expect("usage"), 100, "{kind}");
        c.cancel(&asks, ticket).await.expect("cancel again");
        assert_eq!(c.usage(tokens, now).await.expect("usage"), 100, "{kind}");
        assert_eq!(only(&kept).amount, 100);

        // Cancelled before it ran (the cancel overtook it): the reserve never applies.
        let late = new_ticket();
        c.cancel(&asks, late).await.expect("cancel first");
        assert!(c.reserve_tagged(&asks, now, late).await.is_err(), "{kind}");
        assert_eq!(c.usage(tokens, now).await.expect("usage"), 100, "{kind}");

        // Refused: no ticket is written, so its cancel takes nothing back out.
        let refused = new_ticket();
        let too_much = [ask(tokens, 1_000, 901)];
        assert!(matches!(
            c.reserve_tagged(&too_much, now, refused)
                .await
                .expect("refused reserve"),
            Decision::Refused(_)
        ));
        assert!(
            !ticket_recorded(&mut conn, &prefix, refused).await,
            "{kind}: a refused reservation leaves no ticket"
        );
        c.cancel(&too_much, refused).await.expect("cancel refused");
        assert_eq!(c.usage(tokens, now).await.expect("usage"), 100, "{kind}");
        // Tombstones expire, after 10 minutes: a ticket hash that holds one lives that long.
        for t in [ticket, late] {
            let (key, _) = ticket_key(&prefix, t);
            let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
            assert!(
                (590_000..=600_000).contains(&ttl),
                "{kind}: {key} expires in {ttl} ms"
            );
        }
        cleanup(&mut conn, &prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_share_script_calls_and_stay_exact() {
    let scratch = ScratchRedis::start().await;
    let mut conn = raw(&scratch.url()).await;
    let c = Arc::new(counter(&scratch.url(), "batch"));
    let requests = bucket(Level::VirtualKey, Metric::Requests, Window::Day);
    let tokens = bucket(Level::Project, Metric::Tokens, Window::Minute);
    admitted(
        c.reserve(&[ask(tokens, 1, 0)], 0)
            .await
            .expect("warm-up loads the script"),
    );
    reset_stats(&mut conn).await;
    // 400 reserves at once, 150 fit; half of them carry a ticket (the failover's path).
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let asks = [ask(requests, 150, 1), ask(tokens, 1_000_000, 7)];
                let tagged = i % 2 == 0;
                let decision = if tagged {
                    c.reserve_tagged(&asks, 0, Uuid::new_v4()).await
                } else {
                    c.reserve(&asks, 0).await
                };
                (tagged, decision)
            })
        })
        .collect();
    let (mut used, mut refused, mut tickets) = (Vec::new(), 0, 0);
    for task in tasks {
        let (tagged, decision) = task.await.expect("task");
        match decision.expect("reserve") {
            Decision::Admitted(r) => {
                used.push(r.parts[0].used);
                tickets += u64::from(tagged);
            }
            Decision::Refused(refusal) => {
                assert_eq!(refusal.bucket, requests);
                assert_eq!(refusal.used, 150);
                refused += 1;
            }
        }
    }
    used.sort_unstable();
    assert_eq!(
        used,
        (1..=150).collect::<Vec<_>>(),
        "each admitted reserve saw its own count"
    );
    assert_eq!(refused, 250);
    let now = scratch_now(&mut conn).await;
    assert_eq!(c.usage(requests, now).await.expect("usage"), 150);
    assert_eq!(c.usage(tokens, now).await.expect("usage"), 150 * 7);
    let calls = command_calls(&mut conn).await;
    let evalsha = calls.get("evalsha").copied().unwrap_or(0);
    assert!(
        (1..400).contains(&evalsha),
        "400 concurrent reserves went out in fewer script calls: {calls:?}"
    );
    // One write per bucket per call, not per reservation (plus a ticket per admitted
    // tagged reserve).
    let writes = calls.get("incrby").copied().unwrap_or(0) + calls.get("set").copied().unwrap_or(0)
        - tickets;
    assert!(writes <= 2 * evalsha, "{calls:?}");
    drop(c);
    scratch.stop().await;
}

/// A batched call sends a reservation that asks on the same buckets with the same limits
/// as the one before it, one amount per metric, as just its amounts. Reservations of every
/// shape, interleaved in batches: the same buckets with other amounts, other limits,
/// another order, two amounts for one metric. Every one is decided and counted as if sent
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_reserves_of_every_shape_count_exactly() {
    let scratch = ScratchRedis::start().await;
    let mut conn = raw(&scratch.url()).await;
    let c = Arc::new(counter(&scratch.url(), "shapes"));
    let requests = bucket(Level::VirtualKey, Metric::Requests, Window::Day);
    let minute = bucket(Level::Project, Metric::Tokens, Window::Minute);
    let day = Bucket {
        window: Window::Day,
        ..minute
    };
    let shape = |i: u64| -> Vec<Ask> {
        let big = 1 << 40;
        match i % 5 {
            0 => vec![ask(requests, 200, 1), ask(minute, big, 5), ask(day, big, 5)],
            1 => vec![ask(requests, 200, 1), ask(minute, big, 9), ask(day, big, 9)],
            2 => vec![ask(requests, 200, 1), ask(minute, big, 5), ask(day, big, 7)],
            3 => vec![ask(requests, 201, 1), ask(minute, big, 5), ask(day, big, 5)],
            _ => vec![ask(minute, big, 3), ask(requests, 200, 1), ask(day, big, 3)],
        }
    };
    admitted(
        c.reserve(&[ask(day, 1 << 40, 0)], 0)
            .await
            .expect("warm-up"),
    );
    reset_stats(&mut conn).await;
    let tasks = spawn_tagged(&c, (0..400u64).map(shape), Uuid::new_v4);
    let (mut seen, mut refused) = (Vec::new(), 0);
    let (mut minute_sum, mut day_sum) = (0, 0);
    for task in tasks {
        let (asks, decision) = task.await.expect("task");
        match decision.expect("reserve") {
            Decision::Admitted(r) => {
                for (ask, part) in asks.iter().zip(&r.parts) {
                    assert_eq!(
                        (part.bucket, part.amount, part.limit),
                        (ask.bucket, ask.amount, ask.limit)
                    );
                    if ask.bucket == requests {
                        seen.push(part.used);
                    } else if ask.bucket == minute {
                        minute_sum += ask.amount;
                    } else {
                        day_sum += ask.amount;
                    }
                }
            }
            Decision::Refused(refusal) => {
                assert_eq!(refusal.bucket, requests);
                refused += 1;
            }
        }
    }
    seen.sort_unstable();
    let admitted_count = seen.len() as u64;
    assert_eq!(
        seen,
        (1..=admitted_count).collect::<Vec<_>>(),
        "each saw its own count"
    );
    assert!(
        (200..=201).contains(&admitted_count),
        "{admitted_count} admitted"
    );
    assert_eq!(refused, 400 - admitted_count);
    let now = scratch_now(&mut conn).await;
    assert_eq!(c.usage(requests, now).await.expect("usage"), admitted_count);
    assert_eq!(c.usage(minute, now).await.expect("usage"), minute_sum);
    assert_eq!(c.usage(day, now).await.expect("usage"), day_sum);
    let calls = command_calls(&mut conn).await;
    let evalsha = calls.get("evalsha").copied().unwrap_or(0);
    assert!((1..400).contains(&evalsha), "batched: {calls:?}");
    drop(c);
    scratch.stop().await;
}

/// Reservations like a request's (every metric of every entity, one amount per metric)
/// go to the script in its dense form (every slot's limit, the amounts by metric), alone
/// and first in a batch, mixed with ones that are not; admitted, refused and cancelled
/// ones come out exact. (Mutating the dense check or the dense take-back fails it.)
#[tokio::test]
async fn dense_reservations_count_exactly() {
    let scratch = ScratchRedis::start().await;
    let mut conn = raw(&scratch.url()).await;
    let c = Arc::new(counter(&scratch.url(), "dense"));
    let key = Uuid::new_v4();
    let project = Uuid::new_v4();
    let mut buckets = Vec::new();
    for (level, id) in [(Level::VirtualKey, key), (Level::Project, project)] {
        for window in [Window::Minute, Window::Day] {
            for metric in [Metric::Requests, Metric::Tokens, Metric::CostMicros] {
                buckets.push(Bucket {
                    level,
                    id,
                    metric,
                    window,
                });
            }
        }
    }
    // The key's requests per day run out at 150; a request asks 1 request, 5 tokens and
    // 2 µUSD everywhere; every third asks 7 tokens on the day windows (not dense).
    let limit = |b: &Bucket| {
        if b.level == Level::VirtualKey && b.window == Window::Day && b.metric == Metric::Requests {
            150
        } else {
            1 << 40
        }
    };
    let shape = move |i: u64| -> Vec<Ask> {
        buckets
            .iter()
            .map(|b| {
                let amount = match b.metric {
                    Metric::Requests => 1,
                    Metric::Tokens if i % 3 == 2 && b.window == Window::Day => 7,
                    Metric::Tokens => 5,
                    Metric::CostMicros => 2,
                };
                ask(*b, limit(b), amount)
            })
            .collect()
    };
    let (mut seen, mut sums) = (Vec::new(), HashMap::<Bucket, u64>::new());
    let mut tally = |asks: &[Ask], decision: Decision, seen: &mut Vec<u64>| match decision {
        Decision::Admitted(r) => {
            for (ask, part) in asks.iter().zip(&r.parts) {
                assert_eq!((part.bucket, part.amount), (ask.bucket, ask.amount));
                *sums.entry(ask.bucket).or_default() += ask.amount;
            }
            seen.push(r.parts[3].used);
        }
        Decision::Refused(refusal) => {
            assert_eq!(refusal.bucket, asks[3].bucket, "the key's requests per day");
            assert_eq!(refusal.used, 150);
        }
    };
    // Alone (one per call): dense, dense, then not.
    for i in 0..3 {
        let asks = shape(i);
        let decision = c
            .reserve_tagged(&asks, 0, Uuid::now_v7())
            .await
            .expect("reserve");
        tally(&asks, decision, &mut seen);
    }
    // A dense one cancelled before it ran never applies, alone or first in a batch that
    // writes (`a` is in flight while `late` and `b` queue; they go as one call).
    let late = Uuid::now_v7();
    let asks = shape(0);
    c.cancel(&asks, late).await.expect("cancel first");
    assert!(c.reserve_tagged(&asks, 0, late).await.is_err());
    let later = Uuid::now_v7();
    c.cancel(&asks, later).await.expect("cancel first");
    let calls: Vec<_> = [(0, Uuid::now_v7()), (0, later), (1, Uuid::now_v7())]
        .into_iter()
        .map(|(i, ticket)| {
            let c = Arc::clone(&c);
            let asks = shape(i);
            tokio::spawn(async move {
                let decision = c.reserve_tagged(&asks, 0, ticket).await;
                (asks, ticket, decision)
            })
        })
        .collect();
    for call in calls {
        let (asks, ticket, decision) = call.await.expect("task");
        if ticket == later {
            assert!(decision.is_err(), "cancelled");
        } else {
            tally(&asks, decision.expect("reserve"), &mut seen);
        }
    }
    // Batched: 140 at once, all admitted (145 in all).
    let tasks = spawn_tagged(&c, (0..140u64).map(&shape), Uuid::now_v7);
    for task in tasks {
        let (asks, decision) = task.await.expect("task");
        tally(&asks, decision.expect("reserve"), &mut seen);
    }
    assert_eq!(seen.len(), 145);
    // Alone again, dense, up to the limit and one over it.
    for _ in 0..6 {
        let asks = shape(0);
        let decision = c
            .reserve_tagged(&asks, 0, Uuid::now_v7())
            .await
            .expect("reserve");
        tally(&asks, decision, &mut seen);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=150).collect::<Vec<_>>(),
        "each saw its own count"
    );
    let now = scratch_now(&mut conn).await;
    for (bucket, sum) in &sums {
        assert_eq!(
            c.usage(*bucket, now).await.expect("usage"),
            *sum,
            "{bucket:?}"
        );
    }
    assert_eq!(sums.len(), 12);
    drop(c);
    scratch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_reserves_on_different_clocks_in_one_window_share_its_hash() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let c = Arc::new(counter(&url, &prefix).with_caller_clock());
    let b = bucket(Level::Connection, Metric::Tokens, Window::Hour);
    // 200 reserves at once, on 200 different clocks inside one hour: batched together,
    // they read and write the same window hash, so exactly 60 fit.
    let start = Window::Hour.start(local_now());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.reserve(&[ask(b, 300, 5)], start + i * 1_000).await })
        })
        .collect();
    let mut used = Vec::new();
    for task in tasks {
        if let Decision::Admitted(r) = task.await.expect("task").expect("reserve") {
            assert_eq!(only(&r).window_start, start);
            used.push(only(&r).used);
        }
    }
    used.sort_unstable();
    assert_eq!(used, (1..=60).map(|n| n * 5).collect::<Vec<_>>());
    let (hash, field) = c.location(&b, start);
    let stored: Vec<u8> = conn.hget(&hash, &field).await.expect("HGET");
    assert_eq!(RedisCounter::unpack_count(&stored, b.metric), Some(300));
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn leases_on_three_instances_admit_exactly_the_limit() {
    let url = redis_url();
    let mut conn = raw(&url).await;
    let prefix = fresh_prefix();
    let options = LeaseOptions {
        ttl: Duration::from_millis(20),
        ..LeaseOptions::default()
    };
    let instances: Vec<LeasingCounter> = (0..3)
        .map(|_| LeasingCounter::new(Arc::new(counter(&url, &prefix)), options))
        .collect();
    let key = bucket(Level::VirtualKey, Metric::Requests, Window::Month);
    let project = bucket(Level::Project, Metric::Tokens, Window::Month);
    let limit = 2_000;
    let tasks: Vec<_> = (0..9)
        .map(|i| {
            let c = instances[i % 3].clone();
            tokio::spawn(async move {
                let mut admitted: HashMap<i64, u64> = HashMap::new();
                for _ in 0..300 {
                    let asks = [ask(key, limit, 1), ask(project, 1_000_000_000, 100)];
                    if let Decision::Admitted(r) =
                        c.reserve(&asks, local_now()).await.expect("reserve")
                    {
                        *admitted.entry(r.parts[0].window_start).or_default() += 1;
                        // 40 tokens used of the 100 reserved.
                        assert!(c.settle_now(&r, &[1, 40]));
                    }
                }
                admitted
            })
        })
        .collect();
    let mut per_window: HashMap<i64, u64> = HashMap::new();
    for task in tasks {
        for (start, n) in task.await.expect("task") {
            *per_window.entry(start).or_default() += n;
        }
    }
    for c in &instances {
        c.release_all().await;
    }
    // A month boundary during the test would split the counts over two windows.
    if let [(&start, &n)] = per_window.iter().collect::<Vec<_>>()[..] {
        assert_eq!(n, limit, "exactly the limit of 2,700 asked");
        // Leases replaced during the run went back as queued settles: let them land.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let redis = counter(&url, &prefix);
        assert_eq!(redis.usage(key, start).await.expect("usage"), limit);
        assert_eq!(
            redis.usage(project, start).await.expect("usage"),
            limit * 40
        );
    }
    cleanup(&mut conn, &prefix).await;
}
