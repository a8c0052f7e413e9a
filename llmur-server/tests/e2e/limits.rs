//! Rate limits and budgets end to end on the embedded default (in-memory counter): 429s
//! that are not forwarded, `x-ratelimit-*` headers, exact token settles for every kind of
//! answer, failed attempts that cost nothing, and `/admin/graph` usage.

use std::time::Duration;

use llmur_core::counter::{Bucket, Level, Metric};
use llmur_core::window::Window;
use llmur_server::{Config, RunningServer};
use llmur_testkit::{Flavor, MockServer, Script};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "sk-llmur-limits-key-0001";
const UPSTREAM_KEY: &str = "sk-upstream";

struct Limited {
    server: RunningServer,
    mock: MockServer,
    http: reqwest::Client,
}

impl Limited {
    /// `key_limits`, `project_limits`, ... are YAML flow mappings (`{}` for none).
    async fn start(key: &str, project: &str, deployment: &str, connection: &str) -> Self {
        Self::keeping(key, project, deployment, connection, 1_000).await
    }

    /// `start`, keeping the last `recent` request logs in memory.
    async fn keeping(
        key: &str,
        project: &str,
        deployment: &str,
        connection: &str,
        recent: usize,
    ) -> Self {
        let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
        let yaml = format!(
            r#"
host: 127.0.0.1
port: 0
application_secret: limits-secret-0123456789abcdef
database_url: "sqlite::memory:"
connections:
  - provider: openai/v1
    name: a
    api_endpoint: {url}
    model: gpt-4o-mini
    api_key: {UPSTREAM_KEY}
    price: {{input_per_million: 1000000.0, output_per_million: 2000000.0}}
    limits: {connection}
  - provider: openai/v1
    name: b
    api_endpoint: {url}
    model: gpt-4o-mini
    api_key: {UPSTREAM_KEY}
  - provider: openai/v1
    name: dead
    api_endpoint: http://127.0.0.1:9
    model: gpt-4o-mini
    api_key: {UPSTREAM_KEY}
deployments:
  - {{name: chat, connections: [a], limits: {deployment}}}
  - {{name: pair, connections: [a, b]}}
  - {{name: down, connections: [dead]}}
  - {{name: failover, connections: [dead, b]}}
projects: [{{name: team, limits: {project}}}]
virtual_keys:
  - key: {KEY}
    project: team
    deployments: [chat, pair, down, failover]
    limits: {key}
"#,
            url = mock.base_url()
        );
        let mut config = Config::from_yaml(&yaml).expect("config");
        config.recent_request_logs = recent;
        let server = llmur_server::start(config, std::future::pending())
            .await
            .expect("server");
        Self {
            server,
            mock,
            http: reqwest::Client::new(),
        }
    }

    async fn chat(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.server.base_url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("llmur answers")
    }

    /// The counter's figure for one bucket of the current window.
    async fn used(&self, level: Level, id: Uuid, metric: Metric) -> u64 {
        let bucket = Bucket {
            level,
            id,
            metric,
            window: Window::Day,
        };
        self.server
            .counter()
            .usage(bucket, now_ms())
            .await
            .expect("memory counter")
    }

    /// Waits until the background settle has landed (`want` reached, or 5 s).
    async fn wait_used(&self, level: Level, id: Uuid, metric: Metric, want: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let used = self.used(level, id, metric).await;
            if used == want || tokio::time::Instant::now() > deadline {
                return used;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hello(extra: Value) -> Value {
    let mut body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn exactly_the_limit_is_admitted_and_the_rest_is_not_forwarded() {
    let s = Limited::start("{requests: {per_day: 3}}", "{}", "{}", "{}").await;
    for i in 0..3 {
        let r = s.chat(hello(json!({}))).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            (2 - i).to_string()
        );
        assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let r = s.chat(hello(json!({}))).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "retry-after").parse().expect("Retry-After");
    assert!((1..=86_400).contains(&retry_after));
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("virtual_key") && message.contains("per day"),
        "{message}"
    );
    assert_eq!(body["error"]["llmur"]["level"], "virtual_key");
    assert_eq!(body["error"]["llmur"]["window"], "day");
    assert_eq!(
        s.mock.request_count(),
        3,
        "the refused request was not forwarded"
    );
}

#[tokio::test]
async fn tokens_settle_to_the_reported_usage_for_every_kind_of_answer() {
    let s = Limited::start("{tokens: {per_day: 1000000}}", "{}", "{}", "{}").await;
    s.mock.set_script(Script::new().chunks(3).usage(11, 4));
    let bodies = [
        json!({}),
        json!({"stream": true}),
        json!({"stream": true, "stream_options": {"include_usage": true}}),
        json!({"stream": true, "stream_options": {"include_usage": false}}),
        json!({"max_tokens": 500}),
    ];
    for (i, extra) in bodies.iter().enumerate() {
        let r = s.chat(hello(extra.clone())).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "1000000");
        assert!(!header(&r, "x-ratelimit-remaining-tokens").is_empty());
        let _ = r.bytes().await.expect("body");
        let expected = 15 * (i as u64 + 1);
        let logs = s.server.wait_for_logs(i + 1, Duration::from_secs(5)).await;
        let key = logs[0].virtual_key_id.0;
        assert_eq!(
            s.wait_used(Level::VirtualKey, key, Metric::Tokens, expected)
                .await,
            expected,
            "after answer {i} ({extra}) the key has counted exactly 15 tokens per answer"
        );
    }
}

#[tokio::test]
async fn the_token_reservation_refuses_requests_that_cannot_fit() {
    let s = Limited::start("{}", "{tokens: {per_day: 600}}", "{}", "{}").await;
    s.mock.set_script(Script::new().usage(10, 10));
    // Alone larger than the limit: refused at once, not forwarded.
    let r = s.chat(hello(json!({"max_tokens": 700}))).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("alone exceeds"), "{message}");
    assert_eq!(body["error"]["llmur"]["level"], "project");
    assert_eq!(s.mock.request_count(), 0);
    // Fits: admitted, then settled down to the 20 real tokens, so more fit afterwards.
    for _ in 0..5 {
        let r = s.chat(hello(json!({"max_tokens": 500}))).await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = s.server.wait_for_logs(5, Duration::from_secs(5)).await;
    let project = logs[0].project_id.0;
    assert_eq!(
        s.wait_used(Level::Project, project, Metric::Tokens, 100)
            .await,
        100
    );
}

#[tokio::test]
async fn budgets_answer_insufficient_quota() {
    // $1 per input token, $2 per output token; $50 a day on the deployment.
    let s = Limited::start("{}", "{}", "{budget: {per_day: 50.0}}", "{}").await;
    s.mock.set_script(Script::new().usage(10, 10));
    // The prompt is estimated at 8 tokens ($8); 30 completion tokens ($60) do not fit.
    let r = s.chat(hello(json!({"max_tokens": 30}))).await;
    assert_eq!(r.status(), 429, "the estimate alone is over $50");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["llmur"]["level"], "deployment");
    assert!(r_has_no_token_headers(&body));
    let r = s.chat(hello(json!({"max_tokens": 1}))).await;
    assert_eq!(r.status(), 200, "a small request fits");
    let _ = r.bytes().await;
    let logs = s.server.wait_for_logs(1, Duration::from_secs(5)).await;
    assert_eq!(logs[0].cost_usd, Some(30.0));
    let deployment = logs[0].deployment_id.0;
    assert_eq!(
        s.wait_used(
            Level::Deployment,
            deployment,
            Metric::CostMicros,
            30_000_000
        )
        .await,
        30_000_000
    );
    let r = s.chat(hello(json!({"max_tokens": 10}))).await;
    assert_eq!(
        r.status(),
        429,
        "$30 used; the next estimate ($28) does not fit in $50"
    );
}

fn r_has_no_token_headers(body: &Value) -> bool {
    body["error"]["llmur"]["metric"] == "cost_micros"
}

#[tokio::test]
async fn failed_attempts_cost_no_tokens_but_count_the_request() {
    let s = Limited::start(
        "{requests: {per_day: 100}, tokens: {per_day: 100000}}",
        "{}",
        "{}",
        "{}",
    )
    .await;
    s.mock.set_script(Script::new().usage(5, 5));
    let r = s.chat(hello(json!({"model": "down"}))).await;
    assert_eq!(r.status(), 502);
    let r = s.chat(hello(json!({"model": "failover"}))).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let logs = s.server.wait_for_logs(3, Duration::from_secs(5)).await;
    let key = logs[0].virtual_key_id.0;
    assert_eq!(
        s.wait_used(Level::VirtualKey, key, Metric::Tokens, 10)
            .await,
        10,
        "only the answered attempt's tokens"
    );
    assert_eq!(
        s.used(Level::VirtualKey, key, Metric::Requests).await,
        2,
        "each client request counts once"
    );
}

#[tokio::test]
async fn a_full_connection_sends_the_request_to_the_next_one() {
    let s = Limited::start("{}", "{}", "{}", "{requests: {per_day: 1}}").await;
    for _ in 0..4 {
        let r = s.chat(hello(json!({"model": "pair"}))).await;
        assert_eq!(r.status(), 200);
    }
    let r = s.chat(hello(json!({}))).await;
    assert_eq!(r.status(), 429, "`chat` has only the full connection");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["llmur"]["level"], "connection");
}

#[tokio::test]
async fn streams_carry_the_headers_too() {
    let s = Limited::start(
        "{requests: {per_minute: 50, per_day: 10}, tokens: {per_hour: 100000}}",
        "{}",
        "{}",
        "{}",
    )
    .await;
    let r = s.chat(hello(json!({"stream": true}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-ratelimit-limit-requests"),
        "10",
        "the tightest bucket"
    );
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "9");
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "100000");
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
}

#[tokio::test]
async fn by_default_request_logs_go_to_the_database_only() {
    let s = Limited::keeping("{}", "{}", "{}", "{}", 0).await;
    let r = s.chat(hello(json!({}))).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let asked = tokio::time::Instant::now();
    let kept = s.server.wait_for_logs(1, Duration::from_secs(60)).await;
    assert!(kept.is_empty(), "no ring: {kept:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "did not wait for a ring"
    );
    assert!(s.server.recent_logs().is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = s.server.store().list_request_logs(None, 10).await;
        let stored = stored.expect("the store lists logs");
        if !stored.is_empty() || tokio::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored.len(), 1, "the log reached the database");
    assert_eq!(stored[0].status, 200);
}

#[tokio::test]
async fn unlimited_requests_carry_no_ratelimit_headers() {
    let s = Limited::start("{}", "{}", "{}", "{}").await;
    let r = s.chat(hello(json!({}))).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn early_forwarding_is_set_in_the_file_or_the_environment_and_checked_at_start() {
    let yaml = r#"
database_url: "sqlite::memory:"
application_secret: limits-secret-0123456789abcdef
rate_limits: {early_forwarding_headroom: 0.2}
"#;
    let mut config = Config::from_yaml(yaml).expect("config");
    assert_eq!(config.rate_limits.early_forwarding_headroom, Some(0.2));
    config
        .apply_env(|k| (k == "LLMUR_RATE_LIMITS_EARLY_FORWARDING_HEADROOM").then(|| "off".into()))
        .expect("off");
    assert_eq!(config.rate_limits.early_forwarding_headroom, None);
    config
        .apply_env(|k| (k == "LLMUR_RATE_LIMITS_EARLY_FORWARDING_HEADROOM").then(|| "1.5".into()))
        .expect("a number");
    let Err(e) = llmur_server::start(config, std::future::pending()).await else {
        panic!("a headroom of 1.5 was accepted");
    };
    assert!(e.to_string().contains("early_forwarding_headroom"), "{e}");

    let mut config = Config::from_yaml(yaml).expect("config");
    config.port = 0;
    config.host = "127.0.0.1".parse().expect("host");
    let server = llmur_server::start(config, std::future::pending())
        .await
        .expect("server");
    let health: Value = reqwest::get(format!("{}/health", server.base_url()))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["early_forwarding"], json!({"sent": 0, "dropped": 0}));
}
