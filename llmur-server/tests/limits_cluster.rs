//! Three `llmur` processes on one PostgreSQL and one Redis enforce a key's limit exactly
//! across the cluster: hammered concurrently through all three, exactly the limit is
//! admitted (requests), or exactly as many token reservations as fit (tokens), and the
//! shared Redis bucket ends at the real usage once the answers have settled.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod process_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llmur_core::counter::Metric;
use llmur_server::counter_redis::RedisCounter;
use llmur_server::db::testing::{TempDatabaseGuard, fresh_postgres_database};
use llmur_testkit::{Flavor, Latency, MockServer, Script};
use process_support::{Instance, spawn_llmur};
use serde_json::{Value, json};

const APP_SECRET: &str = "limits-cluster-application-secret-0123";
const UPSTREAM_KEY: &str = "sk-upstream-limits-cluster";
const DAY_MS: i64 = 86_400_000;

fn redis_url() -> String {
    std::env::var("LLMUR_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// Starts `llmur` with the config file `config` on the shared database and Redis.
fn launch(config: &Path, database_url: &str) -> Instance {
    let config = config.to_string_lossy();
    let redis = redis_url();
    spawn_llmur(&[
        ("LLMUR_CONFIG", config.as_ref()),
        ("LLMUR_DATABASE_URL", database_url),
        ("LLMUR_REDIS_URL", &redis),
        ("LLMUR_APPLICATION_SECRET", APP_SECRET),
        ("LLMUR_LOG_LEVEL", "warn,llmur_server::serve=info"),
    ])
}

/// Three instances, one mock upstream, one fresh database, one config file.
struct Cluster {
    // Declared first: the processes stop before the database and the file go.
    instances: Vec<Instance>,
    mock: MockServer,
    /// The deployment clients send as `model`.
    model: String,
    /// The virtual key.
    key: String,
    config: PathBuf,
    _db: TempDatabaseGuard,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.instances.clear();
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Cluster {
    /// `key_limits` is a YAML flow mapping. Names carry a random suffix, so the ids (UUID v5
    /// of the names) and hence the Redis keys are new on every run.
    async fn start(key_limits: &str, script: Script) -> Self {
        Self::start_with(key_limits, script, "").await
    }

    /// Like [`start`](Self::start), with more `rate_limits` settings (`key: value, `...).
    async fn start_with(key_limits: &str, script: Script, rate_limits: &str) -> Self {
        let (database_url, db) = fresh_postgres_database()
            .await
            .expect("PostgreSQL reachable");
        let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
        mock.require_api_key(UPSTREAM_KEY);
        mock.set_script(script);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let model = format!("chat-{suffix}");
        let key = format!("sk-llmur-cluster-{suffix}");
        // Fail closed with a generous timeout: this test is about exactness, and a slow
        // Redis call must show as a 503 here, never as a silent local admission.
        let yaml = format!(
            r#"
rate_limits: {{{rate_limits}on_redis_failure: closed, redis_timeout_ms: 2000}}
connections:
  - provider: openai/v1
    name: up-{suffix}
    api_endpoint: {url}
    model: gpt-4o-mini
    api_key: {UPSTREAM_KEY}
deployments:
  - {{name: {model}, connections: [up-{suffix}]}}
projects: [{{name: team-{suffix}}}]
virtual_keys:
  - key: {key}
    project: team-{suffix}
    deployments: [{model}]
    limits: {key_limits}
"#,
            url = mock.base_url()
        );
        let config = std::env::temp_dir().join(format!("llmur-limits-cluster-{suffix}.yaml"));
        std::fs::write(&config, yaml).expect("config file written");
        // The first one applies the migrations; the other two start together.
        let first = launch(&config, &database_url);
        let (b, c) = std::thread::scope(|s| {
            let b = s.spawn(|| launch(&config, &database_url));
            let c = s.spawn(|| launch(&config, &database_url));
            (
                b.join().expect("second instance"),
                c.join().expect("third instance"),
            )
        });
        Self {
            instances: vec![first, b, c],
            mock,
            model,
            key,
            config,
            _db: db,
        }
    }

    /// Sends `total` chat requests with `body`, `in_flight` at a time, spread round-robin
    /// over the three instances.
    async fn hammer(&self, total: usize, in_flight: usize, body: Value) -> Vec<Outcome> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(in_flight)
            .build()
            .expect("client");
        let started = Instant::now();
        futures_util::stream::iter(0..total)
            .map(|i| {
                let http = http.clone();
                let url = format!(
                    "{}/v1/chat/completions",
                    self.instances[i % self.instances.len()].base
                );
                let body = body.clone();
                let key = self.key.clone();
                async move {
                    let sent = started.elapsed();
                    let response = http
                        .post(url)
                        .bearer_auth(key)
                        .json(&body)
                        .send()
                        .await
                        .expect("llmur answers");
                    let status = response.status().as_u16();
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let remaining_requests = header("x-ratelimit-remaining-requests");
                    let remaining_tokens = header("x-ratelimit-remaining-tokens");
                    let limit_tokens = header("x-ratelimit-limit-tokens");
                    let retry_after = header("retry-after");
                    let body: Value = response.json().await.expect("JSON body");
                    Outcome {
                        instance: i % 3,
                        status,
                        sent,
                        done: started.elapsed(),
                        remaining_requests,
                        remaining_tokens,
                        limit_tokens,
                        retry_after,
                        body,
                    }
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await
    }

    /// Every instance counted in Redis throughout: no failed or timed-out counter call.
    async fn assert_counted_in_redis(&self) {
        for (i, health) in self.health().await.iter().enumerate() {
            assert_eq!(health["status"], "ok", "instance {i}: {health}");
            assert_eq!(health["counter"]["failures"], 0, "instance {i}: {health}");
        }
    }

    async fn health(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for instance in &self.instances {
            let health: Value = reqwest::get(format!("{}/health", instance.base))
                .await
                .expect("health answers")
                .json()
                .await
                .expect("health JSON");
            out.push(health);
        }
        out
    }
}

#[derive(Debug)]
struct Outcome {
    instance: usize,
    status: u16,
    sent: Duration,
    done: Duration,
    remaining_requests: Option<String>,
    remaining_tokens: Option<String>,
    limit_tokens: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

fn number(header: Option<&String>) -> u64 {
    header
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("numeric header expected, got {header:?}"))
}

/// Checks every refusal is a per-day `rate_limit_exceeded` on the key; returns the
/// key's id and the Redis key of its `metric` bucket for this window.
fn check_refusals(refused: &[&Outcome], metric: &str) -> String {
    let first = refused.first().expect("some requests were refused");
    let id = first.body["error"]["llmur"]["id"]
        .as_str()
        .expect("the 429 names the key's id")
        .to_owned();
    let resets_at = first.body["error"]["llmur"]["resets_at_ms"]
        .as_i64()
        .expect("the 429 names the window's end");
    for r in refused {
        assert_eq!(r.status, 429, "{:?}", r.body);
        let error = &r.body["error"];
        assert_eq!(error["type"], "rate_limit_exceeded", "{}", r.body);
        assert_eq!(error["code"], "rate_limit_exceeded", "{}", r.body);
        assert_eq!(error["llmur"]["level"], "virtual_key", "{}", r.body);
        assert_eq!(error["llmur"]["window"], "day", "{}", r.body);
        assert_eq!(error["llmur"]["metric"], metric, "{}", r.body);
        assert_eq!(error["llmur"]["id"], id.as_str(), "{}", r.body);
        assert!(r.retry_after.is_some(), "429 without Retry-After");
    }
    // The day's window hash, the key's field in it and the metric (see
    // `RedisCounter::location`), as "{hash} {field} {metric}".
    format!(
        "llmur:rl:day:{} virtual_key:{id} {metric}",
        resets_at - DAY_MS
    )
}

/// A bucket's count at its location, "{hash} {field} {metric}".
async fn redis_get(location: &str) -> Option<i64> {
    let mut parts = location.split(' ');
    let (Some(hash), Some(field), Some(metric)) = (parts.next(), parts.next(), parts.next()) else {
        unreachable!("hash, field and metric in {location}")
    };
    let metric: Metric = serde_json::from_value(serde_json::json!(metric)).expect("a metric");
    let client = redis::Client::open(redis_url()).expect("Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
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

/// Removes an entity's counts this run made (they would expire by themselves a day later).
async fn redis_del(location: &str) {
    let mut parts = location.split(' ');
    let (Some(hash), Some(field)) = (parts.next(), parts.next()) else {
        unreachable!("hash and field in {location}")
    };
    let client = redis::Client::open(redis_url()).expect("Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    let _: i64 = redis::cmd("HDEL")
        .arg(hash)
        .arg(field)
        .query_async(&mut conn)
        .await
        .expect("HDEL");
}

fn per_instance(outcomes: &[&Outcome]) -> [usize; 3] {
    let mut counts = [0; 3];
    for o in outcomes {
        counts[o.instance] += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_admit_exactly_the_request_limit() {
    admit_exactly_the_request_limit("").await;
}

/// Early forwarding changes when a request goes upstream, never what is admitted: the
/// same burst, the same exact count. Requests sent early and then refused reach the
/// upstream but not the client; each instance has at most its own requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_forwarding_early_admit_exactly_the_request_limit() {
    admit_exactly_the_request_limit("early_forwarding_headroom: 0.25, ").await;
}

/// Leases (on by default) take room ahead from Redis and admit from it in process: the
/// same exact count across three instances, the refusals confirmed, and every unused lease
/// back in Redis once they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_with_leases_admit_exactly_a_large_request_limit() {
    admit_exactly_a_large_request_limit("", true).await;
}

/// The same with leases turned off: a Redis reservation per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_without_leases_admit_exactly_a_large_request_limit() {
    admit_exactly_a_large_request_limit("lease_requests: 0, ", false).await;
}

async fn admit_exactly_a_large_request_limit(rate_limits: &str, leases: bool) {
    // Large enough to lease (a lease takes at most 1/64 of the room left).
    const LIMIT: usize = 1_000;
    const TOTAL: usize = 1_300;
    let cluster = Cluster::start_with(
        &format!("{{requests: {{per_day: {LIMIT}}}}}"),
        Script::new()
            .usage(3, 2)
            .latency(Latency::Fixed(Duration::from_millis(5))),
        rate_limits,
    )
    .await;
    let body = json!({"model": cluster.model, "messages": [{"role": "user", "content": "hi"}]});
    let outcomes = cluster.hammer(TOTAL, 36, body).await;
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    assert_eq!(admitted, LIMIT, "exactly the limit, across three instances");
    assert_eq!(refused.len(), TOTAL - LIMIT);
    assert_eq!(cluster.mock.request_count(), LIMIT);
    let redis_key = check_refusals(&refused, "requests");
    let health = cluster.health().await;
    if leases {
        let local: u64 = health
            .iter()
            .map(|h| {
                h["leases"]["admitted_locally"]
                    .as_u64()
                    .expect("lease counts")
            })
            .sum();
        eprintln!("{local} of {LIMIT} admitted from leases, without a Redis call");
        assert!(local > LIMIT as u64 / 2, "leases admitted only {local}");
    } else {
        assert!(
            health.iter().all(|h| h.get("leases").is_none()),
            "{health:?}"
        );
    }
    // The last leases go back within lease_ms and a sweep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        redis_get(&redis_key).await,
        Some(LIMIT as i64),
        "the shared bucket {redis_key} holds the limit, no leased room left"
    );
    cluster.assert_counted_in_redis().await;
    redis_del(&redis_key).await;
}

/// Leases go back to Redis when an instance shuts down. With leases that would otherwise
/// be held for a minute, Redis counts more than was admitted while the instances run, and
/// exactly what was admitted once they have stopped (SIGTERM, as a service manager sends).
#[tokio::test]
async fn leases_go_back_to_redis_when_instances_shut_down() {
    const LIMIT: usize = 10_000;
    const SENT: usize = 300;
    let mut cluster = Cluster::start_with(
        &format!("{{requests: {{per_day: {LIMIT}}}}}"),
        Script::new().usage(3, 2),
        "lease_requests: 32, lease_ms: 60000, ",
    )
    .await;
    let body = json!({"model": cluster.model, "messages": [{"role": "user", "content": "hi"}]});
    let outcomes = cluster.hammer(SENT, 12, body).await;
    assert!(outcomes.iter().all(|o| o.status == 200), "all admitted");
    let hash = llmur_core::KeyHasher::new(&secrecy::SecretString::from(APP_SECRET))
        .hash(&cluster.key)
        .to_hex();
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("llmur/virtual_key/{hash}").as_bytes(),
    );
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms fit");
    // Today's window (UTC days); a run across midnight would look in the wrong one.
    let location = format!(
        "llmur:rl:day:{} virtual_key:{id} requests",
        now_ms - now_ms % DAY_MS
    );
    let running = redis_get(&location).await.expect("the key is counted");
    eprintln!("Redis counts {running} with the instances running, {SENT} admitted");
    assert!(
        running > SENT as i64,
        "leases hold room beyond what was admitted ({running})"
    );
    for (i, instance) in cluster.instances.iter_mut().enumerate() {
        assert!(instance.terminate(), "instance {i} exits cleanly");
    }
    assert_eq!(
        redis_get(&location).await,
        Some(SENT as i64),
        "every lease went back on shutdown"
    );
    redis_del(&location).await;
}

async fn admit_exactly_the_request_limit(rate_limits: &str) {
    const LIMIT: usize = 100;
    const TOTAL: usize = 330;
    const IN_FLIGHT: usize = 36;
    let started = Instant::now();
    let cluster = Cluster::start_with(
        &format!("{{requests: {{per_day: {LIMIT}}}}}"),
        Script::new()
            .usage(3, 2)
            .latency(Latency::Fixed(Duration::from_millis(30))),
        rate_limits,
    )
    .await;
    let up = started.elapsed();
    let body = json!({"model": cluster.model, "messages": [{"role": "user", "content": "hi"}]});
    let burst = Instant::now();
    let outcomes = cluster.hammer(TOTAL, IN_FLIGHT, body).await;
    let burst = burst.elapsed();

    let admitted: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 200).collect();
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    eprintln!(
        "requests: {} admitted {:?} per instance, {} refused {:?}; cluster up in {up:?}, \
         burst took {burst:?}",
        admitted.len(),
        per_instance(&admitted),
        refused.len(),
        per_instance(&refused)
    );
    assert_eq!(
        admitted.len(),
        LIMIT,
        "exactly the limit, across three instances"
    );
    assert_eq!(refused.len(), TOTAL - LIMIT);
    let upstream = cluster.mock.request_count();
    if rate_limits.is_empty() {
        assert_eq!(
            upstream, LIMIT,
            "only admitted requests reached the upstream"
        );
    } else {
        let (mut sent, mut dropped) = (0, 0);
        for health in cluster.health().await {
            sent += health["early_forwarding"]["sent"].as_u64().expect("sent");
            dropped += health["early_forwarding"]["dropped"]
                .as_u64()
                .expect("dropped");
        }
        eprintln!("early forwarding: {sent} sent early, {dropped} of them refused");
        assert!(sent > 0, "nothing went early");
        assert_eq!(
            upstream,
            LIMIT + dropped as usize,
            "the upstream saw the admitted requests and the early ones refused"
        );
    }
    // Each admission saw the shared count one higher than the one before: every value of
    // `remaining` from limit - 1 down to 0 appears once.
    let remaining: BTreeSet<u64> = admitted
        .iter()
        .map(|o| number(o.remaining_requests.as_ref()))
        .collect();
    assert_eq!(
        remaining,
        (0..LIMIT as u64).collect::<BTreeSet<_>>(),
        "x-ratelimit-remaining-requests over the admitted requests"
    );
    let redis_key = check_refusals(&refused, "requests");
    for r in &refused {
        assert_eq!(r.body["error"]["llmur"]["used"], LIMIT, "{}", r.body);
    }
    assert_eq!(
        redis_get(&redis_key).await,
        Some(LIMIT as i64),
        "the shared bucket {redis_key} holds the limit; refusals add nothing"
    );
    cluster.assert_counted_in_redis().await;
    redis_del(&redis_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_reserve_tokens_exactly_and_settle_to_real_usage() {
    const TOTAL: usize = 240;
    const IN_FLIGHT: usize = 60;
    const MAX_TOKENS: u64 = 90;
    const PROMPT_USAGE: u64 = 7;
    const COMPLETION_USAGE: u64 = 5;
    // Long enough that every request has been reserved (or refused) before the first
    // admitted answer comes back and settles.
    const LATENCY: Duration = Duration::from_secs(3);

    let messages = json!([{"role": "user", "content": "How many tokens?"}]);
    let prompt_estimate =
        (serde_json::to_string(&messages).expect("JSON").len() as u64).div_ceil(4);
    let reservation = prompt_estimate + MAX_TOKENS;
    let fits: u64 = 25;
    // Room for 25 reservations and most of a 26th.
    let limit = fits * reservation + reservation - 1;

    let started = Instant::now();
    let cluster = Cluster::start(
        &format!("{{tokens: {{per_day: {limit}}}}}"),
        Script::new()
            .usage(PROMPT_USAGE, COMPLETION_USAGE)
            .latency(Latency::Fixed(LATENCY)),
    )
    .await;
    let up = started.elapsed();
    let body = json!({"model": cluster.model, "messages": messages, "max_tokens": MAX_TOKENS});
    let burst = Instant::now();
    let outcomes = cluster.hammer(TOTAL, IN_FLIGHT, body).await;
    let burst = burst.elapsed();

    let admitted: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 200).collect();
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    let last_refusal = refused.iter().map(|o| o.done).max().unwrap_or_default();
    let last_send = outcomes.iter().map(|o| o.sent).max().unwrap_or_default();
    eprintln!(
        "tokens: reservation {reservation} ({prompt_estimate} prompt + {MAX_TOKENS}), limit \
         {limit}: {} admitted {:?} per instance, {} refused; last request sent at {last_send:?}, \
         last refusal answered at {last_refusal:?}; cluster up in {up:?}, burst took {burst:?}",
        admitted.len(),
        per_instance(&admitted),
        refused.len()
    );
    assert!(
        last_refusal < LATENCY,
        "the test's premise: every request was decided before any answer settled \
         (last refusal at {last_refusal:?}, upstream latency {LATENCY:?})"
    );
    assert_eq!(
        admitted.len() as u64,
        limit / reservation,
        "floor(limit / reservation) admitted across three instances"
    );
    assert_eq!(cluster.mock.request_count() as u64, fits);
    // Reservations went in one after the other: remaining = limit - k * reservation.
    let remaining: BTreeSet<u64> = admitted
        .iter()
        .map(|o| {
            assert_eq!(o.limit_tokens.as_deref(), Some(limit.to_string().as_str()));
            number(o.remaining_tokens.as_ref())
        })
        .collect();
    assert_eq!(
        remaining,
        (1..=fits)
            .map(|k| limit - k * reservation)
            .collect::<BTreeSet<_>>(),
        "x-ratelimit-remaining-tokens over the admitted requests"
    );
    let redis_key = check_refusals(&refused, "tokens");
    for r in &refused {
        let llmur = &r.body["error"]["llmur"];
        assert_eq!(
            llmur["used"],
            fits * reservation,
            "refused before any settle: {llmur}"
        );
        assert_eq!(llmur["requested"], reservation, "{llmur}");
    }

    // The answers' real usage replaces the reservations in the shared bucket.
    let reported: u64 = admitted
        .iter()
        .map(|o| {
            let usage = &o.body["usage"];
            assert_eq!(usage["prompt_tokens"], PROMPT_USAGE, "{usage}");
            assert_eq!(usage["completion_tokens"], COMPLETION_USAGE, "{usage}");
            usage["total_tokens"].as_u64().expect("total_tokens")
        })
        .sum();
    assert_eq!(reported, fits * (PROMPT_USAGE + COMPLETION_USAGE));
    let deadline = Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let used = redis_get(&redis_key).await;
        if used == Some(reported as i64) || Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        settled,
        Some(reported as i64),
        "{redis_key} ends at the sum of the reported usage"
    );
    // And it stays there: no late settle or double refund moves it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis_get(&redis_key).await, Some(reported as i64));
    cluster.assert_counted_in_redis().await;
    redis_del(&redis_key).await;
}
