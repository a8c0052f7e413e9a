//! Early forwarding against the testkit's mock, with a counter whose answers the test
//! releases one by one: what goes upstream before the counter has answered, what the
//! client gets when the counter then refuses, and how many go early at once.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use llmur_core::counter::{
    Ask, Bucket, CounterError, Decision, Level, MemoryCounter, Metric, Reservation, UsageCounter,
};
use llmur_core::limits::LimitSet;
use llmur_core::store::types::Limits;
use llmur_core::window::Window;
use llmur_core::{
    Access, Connection, ConnectionId, Deployment, DeploymentId, KeyHasher, MemoryCatalog, OpenAi,
    ProjectId, Proxy, Snapshot, Strategy, VirtualKey, VirtualKeyId, WeightedConnection,
};
use llmur_testkit::{Flavor, MockServer, Script};
use secrecy::SecretString;
use tokio::sync::Semaphore;

const KEY: &str = "sk-llmur-early-0001";

/// A memory counter whose reserves each wait for a permit the test hands out.
#[derive(Debug)]
struct Gated {
    inner: MemoryCounter,
    gate: Semaphore,
}

#[async_trait]
impl UsageCounter for Gated {
    async fn reserve(&self, asks: &[Ask], now_ms: i64) -> Result<Decision, CounterError> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| CounterError(e.to_string()))?;
        permit.forget();
        self.inner.reserve(asks, now_ms).await
    }

    async fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), CounterError> {
        self.inner.settle(reservation, actual).await
    }

    async fn usage(&self, bucket: Bucket, now_ms: i64) -> Result<u64, CounterError> {
        self.inner.usage(bucket, now_ms).await
    }

    fn settle_now(&self, reservation: &Reservation, actual: &[u64]) -> bool {
        self.inner.settle_now(reservation, actual)
    }
}

struct Setup {
    proxy: Proxy,
    counter: Arc<Gated>,
    mock: MockServer,
    key_id: uuid::Uuid,
}

/// A key limited to `per_hour` requests (an hour: no window ends during a test), early forwarding with 25 % headroom.
async fn setup(per_hour: u64) -> Setup {
    let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
    let hasher = KeyHasher::new(&SecretString::from("early-forwarding-test-secret"));
    let mut limits = Limits::default();
    limits.requests.per_hour = Some(per_hour);
    let key = VirtualKey {
        id: VirtualKeyId::new_random(),
        project_id: ProjectId::new_random(),
        alias: "early".into(),
        blocked: false,
        limits: LimitSet::from_limits(&limits),
        project_limits: None,
    };
    let key_id = key.id.0;
    let connection = Connection::new(
        ConnectionId::new_random(),
        Arc::new(OpenAi),
        mock.base_url(),
        "gpt-4o-mini",
        SecretString::from("sk-upstream"),
    );
    let deployment = Deployment::new(
        DeploymentId::new_random(),
        "chat",
        Access::Private,
        Strategy::RoundRobin,
        vec![WeightedConnection {
            connection: Arc::new(connection),
            weight: 1,
        }],
    );
    let mut snapshot = Snapshot::new();
    snapshot.link(key.id, deployment.id);
    snapshot.insert_key(hasher.hash(KEY), key);
    snapshot.insert_deployment(deployment);
    let counter = Arc::new(Gated {
        inner: MemoryCounter::new(),
        gate: Semaphore::new(0),
    });
    let proxy = Proxy::builder(Arc::new(MemoryCatalog::new(hasher, snapshot)))
        .usage_counter(counter.clone())
        .early_forwarding(0.25)
        .build()
        .expect("proxy");
    Setup {
        proxy,
        counter,
        mock,
        key_id,
    }
}

impl Setup {
    /// Starts a chat request in a task; returns its status and headers when done.
    fn chat(&self, stream: bool) -> tokio::task::JoinHandle<(u16, http::HeaderMap, Bytes)> {
        let proxy = self.proxy.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({
                "model": "chat",
                "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]
            });
            let request = http::Request::post("/v1/chat/completions")
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request");
            let response = proxy.handle(request).await;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, headers, body)
        })
    }

    /// Waits until the mock has received `n` requests; false after 5 s.
    async fn upstream_saw(&self, n: usize) -> bool {
        for _ in 0..500 {
            if self.mock.request_count() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    fn answer(&self, n: usize) {
        self.counter.gate.add_permits(n);
    }
}

#[tokio::test]
async fn a_request_goes_upstream_early_only_after_the_counter_has_said_there_is_room() {
    let s = setup(10).await;

    // Nothing known yet: the first request waits for the counter.
    let first = s.chat(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.mock.request_count(),
        0,
        "forwarded before the counter answered"
    );
    s.answer(1);
    let (status, headers, _) = first.await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-remaining-requests"], "9");
    assert_eq!(s.proxy.early_forwards().sent(), 0);

    // 9 of 10 left: the next one is upstream while its reserve is still waiting.
    let second = s.chat(false);
    assert!(s.upstream_saw(2).await, "not forwarded early");
    assert!(!second.is_finished(), "answered before the counter did");
    s.answer(1);
    let (status, headers, _) = second.await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-remaining-requests"], "8");
    assert_eq!(s.proxy.early_forwards().sent(), 1);
    assert_eq!(s.proxy.early_forwards().dropped(), 0);
}

#[tokio::test]
async fn a_refused_early_stream_is_cut_upstream_and_the_client_gets_the_429() {
    let s = setup(10).await;
    // The first stream is quick (its answer must stay fresh for the second); the rest are
    // slow enough to be cut.
    s.mock.set_script(
        Script::new()
            .content("one two three four five six")
            .chunks(6)
            .cadence(Duration::from_millis(200)),
    );
    s.mock.push_script(Script::new().content("quick"));
    let first = s.chat(true);
    s.answer(1);
    assert_eq!(first.await.expect("task").0, 200);

    // Another instance takes the rest of the hour's room behind this one's back.
    let bucket = Bucket {
        level: Level::VirtualKey,
        id: s.key_id,
        metric: Metric::Requests,
        window: Window::Hour,
    };
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let taken = s
        .counter
        .inner
        .reserve(
            &[Ask {
                bucket,
                limit: 10,
                amount: 9,
            }],
            now_ms,
        )
        .await
        .expect("reserve");
    assert!(matches!(taken, Decision::Admitted(_)));

    // This instance still believes 9 are left, so it sends early; the counter refuses.
    let refused = s.chat(true);
    assert!(s.upstream_saw(2).await, "not forwarded early");
    s.answer(1);
    let (status, headers, body) = refused.await.expect("task");
    assert_eq!(status, 429);
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    assert!(
        s.mock
            .wait_cancelled_streams(1, Duration::from_secs(5))
            .await,
        "the early upstream stream was not cut"
    );
    assert_eq!(s.proxy.early_forwards().sent(), 1);
    assert_eq!(s.proxy.early_forwards().dropped(), 1);

    // After a refusal nothing goes early on that limit.
    let after = s.chat(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.mock.request_count(), 2, "forwarded early after a refusal");
    s.answer(1);
    assert_eq!(after.await.expect("task").0, 429);
    assert_eq!(s.proxy.early_forwards().sent(), 1);
}

#[tokio::test]
async fn requests_in_flight_early_use_up_the_headroom() {
    // 10 per hour, 25 % headroom (3): after the first, 9 are left, so at most 9 − 3 = 6
    // go early before the counter has answered any of them.
    let s = setup(10).await;
    let first = s.chat(false);
    s.answer(1);
    assert_eq!(first.await.expect("task").0, 200);

    let waiting: Vec<_> = (0..8).map(|_| s.chat(false)).collect();
    assert!(
        s.upstream_saw(7).await,
        "fewer went early than the headroom allows"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.mock.request_count(),
        7,
        "more went early than the headroom allows"
    );
    s.answer(8);
    for task in waiting {
        assert_eq!(task.await.expect("task").0, 200);
    }
    assert_eq!(s.mock.request_count(), 9);
    assert_eq!(s.proxy.early_forwards().sent(), 6);
    assert_eq!(s.proxy.early_forwards().dropped(), 0);
}
