//! Two `llmur` processes on one PostgreSQL: a key blocked through one is refused by the
//! other within one second. Also checks that no secret reaches either process's log.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod process_support;

use std::time::{Duration, Instant};

use llmur_server::db::testing::fresh_postgres_database;
use llmur_testkit::{Flavor, MockServer};
use process_support::{Instance, spawn_llmur};
use serde_json::{Value, json};

const MASTER: &str = "multi-instance-master-key";
const APP_SECRET: &str = "multi-instance-application-secret-0123";
const UPSTREAM_KEY: &str = "sk-upstream-multi-instance-secret";

fn spawn(database_url: &str, extra: &[(&str, &str)]) -> Instance {
    let mut env = vec![
        ("LLMUR_DATABASE_URL", database_url),
        ("LLMUR_APPLICATION_SECRET", APP_SECRET),
        ("LLMUR_MASTER_KEYS", MASTER),
        ("LLMUR_LOG_LEVEL", "debug"),
    ];
    env.extend_from_slice(extra);
    spawn_llmur(&env)
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http
        .post(url)
        .header("X-LLMur-Key", MASTER)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_key_blocked_on_one_instance_is_refused_by_the_other_within_a_second() {
    // Without Redis: the other instance polls the change counter.
    blocked_key_propagates(&[("LLMUR_CATALOG_REFRESH_MS", "200")]).await;
}

#[tokio::test]
async fn with_redis_changes_arrive_by_pub_sub() {
    // Polling every minute: only the Redis message can deliver the change in time.
    let redis = std::env::var("LLMUR_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    blocked_key_propagates(&[
        ("LLMUR_CATALOG_REFRESH_MS", "60000"),
        ("LLMUR_REDIS_URL", redis.as_str()),
    ])
    .await;
}

async fn blocked_key_propagates(extra: &[(&str, &str)]) {
    let (url, _db) = fresh_postgres_database()
        .await
        .expect("PostgreSQL reachable");
    let mock = MockServer::start(Flavor::OpenAi).await.expect("mock");
    let a = spawn(&url, extra);
    let b = spawn(&url, extra);
    let http = reqwest::Client::new();

    let project = post(
        &http,
        format!("{}/admin/project", a.base),
        json!({"name": "p"}),
    )
    .await;
    let connection = post(
        &http,
        format!("{}/admin/connection", a.base),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": mock.base_url(), "api_key": UPSTREAM_KEY}),
    )
    .await;
    let deployment = post(
        &http,
        format!("{}/admin/deployment", a.base),
        json!({"name": "chat"}),
    )
    .await;
    post(
        &http,
        format!("{}/admin/connection-deployment", a.base),
        json!({"connection_id": connection["id"], "deployment_id": deployment["id"]}),
    )
    .await;
    let key = post(
        &http,
        format!("{}/admin/virtual-key", a.base),
        json!({"project_id": project["id"]}),
    )
    .await;
    let secret = key["key"].as_str().expect("key").to_owned();
    post(
        &http,
        format!("{}/admin/virtual-key-deployment", a.base),
        json!({"virtual_key_id": key["id"], "deployment_id": deployment["id"]}),
    )
    .await;

    let chat = |base: &str| {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    // B learns about the new key by itself.
    let started = Instant::now();
    loop {
        let status = chat(&b.base).await.expect("send").status();
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B never saw the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let blocked = http
        .patch(format!(
            "{}/admin/virtual-key/{}",
            a.base,
            key["id"].as_str().expect("id")
        ))
        .header("X-LLMur-Key", MASTER)
        .json(&json!({"blocked": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(blocked.status(), 200);
    let started = Instant::now();
    assert_eq!(
        chat(&a.base).await.expect("send").status(),
        401,
        "A refuses at once"
    );
    loop {
        let status = chat(&b.base).await.expect("send").status();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still accepted the blocked key after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    eprintln!("blocked key refused by the other instance after {took:?}");

    for instance in [&a, &b] {
        let output = instance.output.lock().expect("lock").join("\n");
        for secret_text in [MASTER, APP_SECRET, UPSTREAM_KEY, secret.as_str()] {
            assert!(!output.contains(secret_text), "a secret reached the log");
        }
    }
}
