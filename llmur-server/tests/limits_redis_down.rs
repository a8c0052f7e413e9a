//! The Redis usage counter failing under load, on a private `redis-server` this test
//! owns (the shared one is never touched): hung (SIGSTOP), then dead (killed), then back.
//! Fail-open keeps every request flowing with bounded latency, `/health` reports the
//! degradation, and exact shared counting returns by itself. Fail-closed refuses limited
//! requests with a quick 503 and keeps unlimited keys working.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmur_core::counter::Metric;
use llmur_server::counter_redis::RedisCounter;
use llmur_server::{Config, RunningServer};
use llmur_testkit::{Flavor, Latency, MockServer, Script};
use serde_json::{Value, json};

const APP_SECRET: &str = "limits-redis-down-secret-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-redis-down";
/// Limited, but far from its limit.
const BIG_KEY: &str = "sk-llmur-redis-down-big-0001";
/// Small limits, first used after the outage (one per burst attempt).
const SMALL_KEYS: [&str; 3] = [
    "sk-llmur-redis-down-small-0001",
    "sk-llmur-redis-down-small-0002",
    "sk-llmur-redis-down-small-0003",
];
/// No limits at all.
const FREE_KEY: &str = "sk-llmur-redis-down-free-0001";
const SMALL_LIMIT: usize = 20;
const DAY_MS: i64 = 86_400_000;
/// The most any request may take while Redis is hung or gone (timeout 50 ms + margin).
const MAX_LATENCY: Duration = Duration::from_millis(500);

/// A `redis-server` of this test's own on a free port; killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut child = Command::new("redis-server")
            .args(["--port", port.as_str(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it on PATH?): {e}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ping(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Hangs it: connections stay open, nothing is answered.
    fn freeze(&self) {
        self.signal("-STOP");
    }

    fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills it hard: connections drop, new ones are refused.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A bucket's count at its location, "{hash} {field}:{metric}" (see
    /// `RedisCounter::location`: the field holds the entity's three counts).
    async fn get(&self, location: &str) -> Option<i64> {
        let (hash, bucket) = location.split_once(' ').expect("hash and bucket");
        let (field, metric) = bucket.rsplit_once(':').expect("field and metric");
        let metric: Metric = serde_json::from_value(json!(metric)).expect("a metric");
        let client = redis::Client::open(self.url()).expect("Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("private Redis reachable");
        let stored: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(hash)
            .arg(field)
            .query_async(&mut conn)
            .await
            .expect("HGET");
        stored.map(|value| {
            let count = RedisCounter::unpack_count(&value, metric).expect("three packed counts");
            i64::try_from(count).expect("a count below 2^53")
        })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

struct Stack {
    server: RunningServer,
    mock: MockServer,
    http: reqwest::Client,
}

impl Stack {
    /// `lease_requests` 0 turns leases off (32 is the default).
    async fn start(redis: &PrivateRedis, policy: &str, lease_requests: u32) -> Self {
        let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
        mock.require_api_key(UPSTREAM_KEY);
        mock.set_script(
            Script::new()
                .usage(3, 2)
                .latency(Latency::Fixed(Duration::from_millis(5))),
        );
        let yaml = format!(
            r#"
host: 127.0.0.1
port: 0
application_secret: {APP_SECRET}
database_url: "sqlite::memory:"
redis_url: {redis}
rate_limits: {{on_redis_failure: {policy}, redis_timeout_ms: 50, redis_retry_ms: 200, lease_requests: {lease_requests}}}
connections:
  - provider: openai/v1
    name: up
    api_endpoint: {url}
    model: gpt-4o-mini
    api_key: {UPSTREAM_KEY}
deployments: [{{name: chat, connections: [up]}}]
projects: [{{name: team}}]
virtual_keys:
  - {{key: {BIG_KEY}, project: team, deployments: [chat], limits: {{requests: {{per_day: 1000000}}}}}}
{small}  - {{key: {FREE_KEY}, project: team, deployments: [chat]}}
"#,
            redis = redis.url(),
            url = mock.base_url(),
            small = SMALL_KEYS
                .iter()
                .map(|key| format!(
                    "  - {{key: {key}, project: team, deployments: [chat], \
                     limits: {{requests: {{per_day: {SMALL_LIMIT}}}}}}}\n"
                ))
                .collect::<String>(),
        );
        let config = Config::from_yaml(&yaml).expect("config");
        let server = llmur_server::start(config, std::future::pending())
            .await
            .expect("server");
        Self {
            server,
            mock,
            http: reqwest::Client::new(),
        }
    }

    async fn chat(&self, key: &str) -> reqwest::Response {
        chat(&self.http, &self.server.base_url(), key).await
    }

    async fn health(&self) -> Value {
        self.http
            .get(format!("{}/health", self.server.base_url()))
            .send()
            .await
            .expect("health answers")
            .json()
            .await
            .expect("health JSON")
    }

    /// Polls `/health` until `done` holds (returns how long it took and the answer that
    /// satisfied it) or `within` passes.
    async fn wait_health(
        &self,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (Duration, Value) {
        let started = Instant::now();
        loop {
            let health = self.health().await;
            if done(&health) {
                return (started.elapsed(), health);
            }
            assert!(
                started.elapsed() < within,
                "/health did not change as expected within {within:?}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn chat(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("llmur answers")
}

fn is_degraded(health: &Value) -> bool {
    health["status"] == "degraded" && health["counter"]["degraded"] == true
}

fn is_ok(health: &Value) -> bool {
    health["status"] == "ok" && health["counter"]["degraded"] == false
}

/// One request of the background load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was sent, since the load started.
    at: Duration,
    took: Duration,
    status: u16,
}

/// `workers` tasks sending requests with `key` back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(base: String, key: &'static str, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let http = reqwest::Client::new();
        let tasks = (0..workers)
            .map(|_| {
                let (stop, samples, http, base) =
                    (stop.clone(), samples.clone(), http.clone(), base.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let at = started.elapsed();
                        let response = chat(&http, &base, key).await;
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        let took = started.elapsed() - at;
                        samples
                            .lock()
                            .expect("lock")
                            .push(Sample { at, took, status });
                    }
                })
            })
            .collect();
        Self {
            stop,
            samples,
            tasks,
            started,
        }
    }

    /// Time since the load started (to mark phases).
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("worker");
        }
        self.samples.lock().expect("lock").clone()
    }
}

/// Requests sent in `[from, to)`: how many, how many were not 200, and the slowest.
fn window(samples: &[Sample], from: Duration, to: Duration) -> (usize, usize, Duration) {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    (
        inside.len(),
        inside.iter().filter(|s| s.status != 200).count(),
        inside.iter().map(|s| s.took).max().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_open_keeps_serving_through_a_hung_and_a_dead_redis_and_recovers() {
    fail_open_through_a_hung_and_a_dead_redis(0).await;
}

/// The same with leases on: requests admitted from a lease, lease returns and renewals
/// through the outage change none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_open_with_leases_keeps_serving_through_a_hung_and_a_dead_redis_and_recovers() {
    fail_open_through_a_hung_and_a_dead_redis(32).await;
}

async fn fail_open_through_a_hung_and_a_dead_redis(lease_requests: u32) {
    let mut redis = PrivateRedis::start();
    let s = Stack::start(&redis, "open", lease_requests).await;
    let health = s.health().await;
    assert!(is_ok(&health), "{health}");
    assert_eq!(health["counter"]["policy"], "open", "{health}");

    let load = Load::start(s.server.base_url(), BIG_KEY, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (a) Hung: SIGSTOP for 1.5 s.
    let freeze_at = load.now();
    redis.freeze();
    let hung = Instant::now();
    let (noticed_hang, _) = s.wait_health(Duration::from_secs(1), is_degraded).await;
    let remaining = Duration::from_millis(1_500).saturating_sub(hung.elapsed());
    tokio::time::sleep(remaining).await;
    let health = s.health().await;
    assert!(is_degraded(&health), "still degraded while hung: {health}");
    assert!(
        health["counter"]["degradations"].as_u64() >= Some(1),
        "{health}"
    );
    let thaw_at = load.now();
    redis.thaw();
    let (recovered_from_hang, _) = s.wait_health(Duration::from_secs(3), is_ok).await;

    // (b) Dead: killed (connections drop, new ones are refused) for 1 s.
    let kill_at = load.now();
    redis.kill();
    let (noticed_death, _) = s.wait_health(Duration::from_secs(1), is_degraded).await;
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(noticed_death)).await;
    let health = s.health().await;
    assert!(is_degraded(&health), "still degraded while dead: {health}");
    assert!(
        health["counter"]["degradations"].as_u64() >= Some(2),
        "{health}"
    );

    // Back on the same port: recovery needs nothing but time.
    let restart_at = load.now();
    redis.restart();
    let (recovered, _) = s.wait_health(Duration::from_secs(3), is_ok).await;
    let back_at = load.now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = load.finish().await;

    let (n, failed, slowest) = window(&samples, Duration::ZERO, freeze_at);
    eprintln!("before the outage: {n} requests, {failed} not 200, slowest {slowest:?}");
    let (n_hung, failed_hung, slowest_hung) = window(&samples, freeze_at, thaw_at);
    eprintln!(
        "Redis hung {:?}: {n_hung} requests, {failed_hung} not 200, slowest {slowest_hung:?}; \
         /health degraded after {noticed_hang:?}, ok again {recovered_from_hang:?} after SIGCONT",
        thaw_at - freeze_at
    );
    let (n_dead, failed_dead, slowest_dead) = window(&samples, kill_at, restart_at);
    eprintln!(
        "Redis dead {:?}: {n_dead} requests, {failed_dead} not 200, slowest {slowest_dead:?}; \
         /health degraded after {noticed_death:?}",
        restart_at - kill_at
    );
    let (n_back, failed_back, slowest_back) = window(&samples, restart_at, Duration::MAX);
    eprintln!(
        "after the restart: {n_back} requests, {failed_back} not 200, slowest {slowest_back:?}; \
         /health ok {recovered:?} after the restart (at {back_at:?})"
    );
    let health = s.health().await;
    eprintln!("health at the end: {health}");

    assert!(n_hung > 50 && n_dead > 30, "the load kept flowing");
    let not_ok: Vec<&Sample> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(not_ok.is_empty(), "fail-open refused nothing: {not_ok:?}");
    let slowest = samples.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        slowest < MAX_LATENCY,
        "no request waited on Redis for long: slowest {slowest:?} (of {})",
        samples.len()
    );

    // Exact again: a fresh key with a limit of 20, 50 requests at once. Exactness holds
    // while every reserve gets its answer within the 50 ms timeout; on a starved machine a
    // burst can exceed it, and fail-open then admits locally as designed. Such a burst is
    // recognised by the failure count and repeated on the next fresh key.
    let mut forwarded = samples.len();
    let mut exact = None;
    for (attempt, key) in SMALL_KEYS.iter().enumerate() {
        // Not paused: a failure just before (a background call timing out) pauses the
        // shared counter for `redis_retry_ms`, and a burst sent in the pause would be
        // counted partly locally, as fail-open does by design. `/health` says degraded
        // for as long as the pause lasts; the failures are read from that same answer.
        let (_, healthy) = s.wait_health(Duration::from_secs(3), is_ok).await;
        let failures_before = healthy["counter"]["failures"].clone();
        let burst = Burst::send(&s, key, 50).await;
        forwarded += burst.admitted().len();
        let health = s.health().await;
        if health["counter"]["failures"] != failures_before {
            eprintln!(
                "burst {attempt}: a Redis call exceeded the timeout during the burst \
                 ({} admitted; health {health}); again with a fresh key",
                burst.admitted().len()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        exact = Some((attempt, burst));
        break;
    }
    let (attempt, burst) = exact.expect(
        "every 50-request burst had a Redis call over the 50 ms timeout: machine too slow?",
    );
    let admitted = burst.admitted();
    eprintln!(
        "after recovery: {} of 50 admitted with a limit of {SMALL_LIMIT} (burst {attempt})",
        admitted.len()
    );
    assert_eq!(admitted.len(), SMALL_LIMIT, "exactly the limit");
    let remaining: BTreeSet<u64> = admitted.iter().filter_map(|o| o.1).collect();
    assert_eq!(
        remaining,
        (0..SMALL_LIMIT as u64).collect::<BTreeSet<_>>(),
        "each admission counted once in the shared counter"
    );
    let refused: Vec<_> = burst.0.iter().filter(|o| o.0 != 200).collect();
    let first = &refused.first().expect("refusals").2["error"]["llmur"];
    let key = format!(
        "llmur:rl:day:{} virtual_key:{}:requests",
        first["resets_at_ms"].as_i64().expect("resets_at_ms") - DAY_MS,
        first["id"].as_str().expect("id"),
    );
    for (status, _, body) in &refused {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["type"], "rate_limit_exceeded", "{body}");
        assert_eq!(body["error"]["llmur"]["used"], SMALL_LIMIT, "{body}");
    }
    assert_eq!(
        redis.get(&key).await,
        Some(SMALL_LIMIT as i64),
        "the restarted Redis holds the count in {key}"
    );
    let health = s.health().await;
    assert!(is_ok(&health), "{health}");
    if lease_requests > 0 {
        assert!(
            health["leases"]["admitted_locally"].as_u64() > Some(0),
            "the big key's requests were admitted from leases: {health}"
        );
        assert!(
            health["leases"]["renewed_ahead"].is_u64(),
            "renewals ahead are counted: {health}"
        );
    }
    assert_eq!(
        s.mock.request_count(),
        forwarded,
        "every admitted request was forwarded once, no refused one"
    );
}

/// `(status, x-ratelimit-remaining-requests, body)` of requests sent all at once.
struct Burst(Vec<(u16, Option<u64>, Value)>);

impl Burst {
    async fn send(s: &Stack, key: &str, n: usize) -> Self {
        Self(
            futures_util::future::join_all((0..n).map(|_| async {
                let r = s.chat(key).await;
                let status = r.status().as_u16();
                let remaining = r
                    .headers()
                    .get("x-ratelimit-remaining-requests")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: Value = r.json().await.expect("JSON");
                (status, remaining, body)
            }))
            .await,
        )
    }

    fn admitted(&self) -> Vec<&(u16, Option<u64>, Value)> {
        self.0.iter().filter(|o| o.0 == 200).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_closed_refuses_limited_requests_quickly_and_serves_unlimited_ones() {
    let mut redis = PrivateRedis::start();
    let s = Stack::start(&redis, "closed", 0).await;
    assert_eq!(s.chat(BIG_KEY).await.status(), 200);
    assert_eq!(s.chat(FREE_KEY).await.status(), 200);
    let health = s.health().await;
    assert!(is_ok(&health), "{health}");
    assert_eq!(health["counter"]["policy"], "closed", "{health}");

    // Hung, then dead: the same answers either way.
    let mut slowest = Duration::ZERO;
    for outage in ["hung", "dead"] {
        if outage == "hung" {
            redis.freeze();
        } else {
            redis.kill();
        }
        let forwarded_before = s.mock.request_count();
        for i in 0..10 {
            let started = Instant::now();
            let r = s.chat(BIG_KEY).await;
            let took = started.elapsed();
            slowest = slowest.max(took);
            assert_eq!(r.status(), 503, "{outage}, request {i}");
            assert_eq!(
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                Some("1")
            );
            let body: Value = r.json().await.expect("JSON");
            assert_eq!(body["error"]["code"], "rate_limiter_unavailable", "{body}");
            assert_eq!(body["error"]["type"], "api_error", "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!(took < MAX_LATENCY, "{outage}: 503 after {took:?}");

            let started = Instant::now();
            let r = s.chat(FREE_KEY).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(r.status(), 200, "{outage}: a key without limits is served");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(
            s.mock.request_count() - forwarded_before,
            10,
            "{outage}: only the unlimited key's requests were forwarded"
        );
        let health = s.health().await;
        assert!(is_degraded(&health), "{outage}: {health}");
        if outage == "hung" {
            redis.thaw();
            let back = Instant::now();
            while s.chat(BIG_KEY).await.status() != 200 {
                assert!(
                    back.elapsed() < Duration::from_secs(3),
                    "no recovery after SIGCONT"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!(
                "fail-closed: admitting again {:?} after SIGCONT",
                back.elapsed()
            );
        }
    }
    eprintln!("fail-closed: slowest answer during the outages {slowest:?}");

    redis.restart();
    let back = Instant::now();
    while s.chat(BIG_KEY).await.status() != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "limited requests refused 3 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "fail-closed: admitting again {:?} after the restart",
        back.elapsed()
    );
    let health = s.health().await;
    assert!(is_ok(&health), "{health}");
    assert!(
        health["counter"]["degradations"].as_u64() >= Some(2),
        "{health}"
    );
}

/// A reserve that times out has usually been written to Redis already, and Redis runs it
/// when it wakes up, while the request was admitted and settled by the local fallback.
/// The failover counter cancels the timed-out reservation by its ticket, so the shared
/// bucket does not keep it (it would hold the prompt estimate + 1024 completion tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timed_out_reservation_does_not_stay_in_the_shared_bucket() {
    let mut redis = PrivateRedis::start();
    let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
    mock.set_script(Script::new().usage(3, 2));
    let yaml = format!(
        r#"
host: 127.0.0.1
port: 0
application_secret: {APP_SECRET}
database_url: "sqlite::memory:"
redis_url: {redis}
rate_limits: {{redis_timeout_ms: 50, redis_retry_ms: 200}}
connections: [{{provider: openai/v1, name: up, api_endpoint: {url}, model: m, api_key: k}}]
deployments: [{{name: chat, connections: [up]}}]
projects: [{{name: team}}]
virtual_keys:
  - {{key: {BIG_KEY}, project: team, deployments: [chat], limits: {{tokens: {{per_day: 1000000}}}}}}
"#,
        redis = redis.url(),
        url = mock.base_url()
    );
    let mut config = Config::from_yaml(&yaml).expect("config");
    config.recent_request_logs = 100;
    let server = llmur_server::start(config, std::future::pending())
        .await
        .expect("server");
    let http = reqwest::Client::new();
    let base = server.base_url();
    let answered = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    };
    answered(chat(&http, &base, BIG_KEY).await).await;
    let logs = server.wait_for_logs(1, Duration::from_secs(5)).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let key = format!(
        "llmur:rl:day:{} virtual_key:{}:tokens",
        llmur_core::window::Window::Day.start(now_ms),
        logs[0].virtual_key_id.0,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.get(&key).await != Some(5) {
        assert!(
            Instant::now() < deadline,
            "first answer never settled to 5 tokens"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    redis.freeze();
    answered(chat(&http, &base, BIG_KEY).await).await;
    redis.thaw();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = redis.get(&key).await;
    redis.kill();
    assert_eq!(
        used,
        Some(5),
        "the second answer was counted locally; the shared bucket keeps only the first"
    );
}
