//! Non-streaming chat, embeddings and models through a real OpenAI client.

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
    CreateChatCompletionRequestArgs,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use llmur_core::UsageSource;
use serde_json::json;

use crate::common::*;

fn chat_request(model: &str) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Say hello")
            .build()
            .expect("message")
            .into()])
        .build()
        .expect("request")
}

#[tokio::test]
async fn openai_chat_through_a_real_client() {
    let s = stack("").await;
    let response = s
        .client(KEY)
        .chat()
        .create(chat_request("gpt-4o-mini"))
        .await
        .expect("chat succeeds");
    assert_eq!(response.model, "gpt-4o-mini", "answer names the deployment");
    assert!(response.choices[0].message.content.is_some());
    let usage = response.usage.expect("usage");

    let requests = s.openai.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(format!("Bearer {OPENAI_UPSTREAM_KEY}").as_str())
    );
    assert_no_virtual_key(r);
    assert_eq!(
        r.json()["model"],
        OPENAI_MODEL,
        "model replaced by the connection's"
    );

    let logs = s.server.wait_for_logs(1, WAIT).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, 200);
    assert_eq!(logs[0].usage_source, UsageSource::Reported);
    assert_eq!(logs[0].usage.prompt_tokens, u64::from(usage.prompt_tokens));
    assert_eq!(logs[0].deployment, "gpt-4o-mini");
    // gpt-4o-mini family from the default price table: $0.15 / $0.60 per 1M tokens.
    let expected =
        (f64::from(usage.prompt_tokens) * 0.15 + f64::from(usage.completion_tokens) * 0.60) / 1e6;
    let cost = logs[0].cost_usd.expect("cost known for gpt-4o-mini");
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
}

#[tokio::test]
async fn unknown_fields_pass_through_untouched() {
    let s = stack("").await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hé 😀"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "top_logprobs": 2,
        "some_future_field": {"nested": [1, 2.5, null]}
    });
    let response = s.post_chat(body.clone()).await;
    assert_eq!(response.status(), 200);
    let forwarded = s.openai.requests()[0].json();
    let mut expected = body;
    expected["model"] = json!(OPENAI_MODEL);
    assert_eq!(forwarded, expected, "only `model` changed");
}

#[tokio::test]
async fn azure_dated_api_version_and_passthrough_fields() {
    let s = stack("").await;
    let response = s
        .post_chat(json!({"model": "azure-chat", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 200);
    let v: serde_json::Value = response.json().await.expect("json");
    assert_eq!(v["model"], "azure-chat");
    assert!(
        v["prompt_filter_results"].is_array(),
        "Azure-only field kept: {v}"
    );
    assert!(v["choices"][0]["content_filter_results"].is_object());

    let r = &s.azure.requests()[0];
    assert_eq!(r.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key").as_deref(), Some(AZURE_UPSTREAM_KEY));
    assert!(r.header("authorization").is_none());
    assert_no_virtual_key(r);
}

#[tokio::test]
async fn azure_v1_form_through_a_real_client() {
    let s = stack("").await;
    let response = s
        .client(KEY)
        .chat()
        .create(chat_request("azure-v1"))
        .await
        .expect("chat succeeds");
    assert_eq!(response.model, "azure-v1");
    let r = &s.azure.requests()[0];
    assert_eq!(r.path, "/openai/v1/chat/completions");
    assert_eq!(r.json()["model"], "my-gpt4o");
}

#[tokio::test]
async fn embeddings_on_both_providers() {
    let s = stack("").await;
    for model in ["gpt-4o-mini", "azure-chat"] {
        let request = CreateEmbeddingRequestArgs::default()
            .model(model)
            .input(["one", "two"])
            .build()
            .expect("request");
        let response = s
            .client(KEY)
            .embeddings()
            .create(request)
            .await
            .expect("embeddings succeed");
        assert_eq!(response.model, model);
        assert_eq!(response.data.len(), 2);
    }
    assert_eq!(s.openai.requests()[0].path, "/v1/embeddings");
    assert_eq!(
        s.azure.requests()[0].path,
        "/openai/deployments/my-gpt4o/embeddings"
    );
    let logs = s.server.wait_for_logs(2, WAIT).await;
    assert!(logs.iter().all(|l| l.usage.prompt_tokens > 0));
}

#[tokio::test]
async fn models_lists_what_the_key_may_use() {
    let s = stack("").await;
    let list = s.client(KEY).models().list().await.expect("models");
    let ids: Vec<_> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "azure-chat",
            "azure-v1",
            "failover",
            "gpt-4o-2024-08-06",
            "gpt-4o-mini",
            "unreachable"
        ]
    );
    let other = s.client(OTHER_KEY).models().list().await.expect("models");
    let ids: Vec<_> = other.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["unlinked"]);
}

#[tokio::test]
async fn failover_tries_the_next_connection() {
    let s = stack("").await;
    for _ in 0..2 {
        let response = s
            .client(KEY)
            .chat()
            .create(chat_request("failover"))
            .await
            .expect("the live connection serves");
        assert_eq!(response.model, "failover");
    }
    let logs = s.server.wait_for_logs(3, WAIT).await;
    assert_eq!(
        logs.len(),
        3,
        "one failed attempt on the dead connection, two served"
    );
    assert_eq!(logs.iter().filter(|l| l.status == 0).count(), 1);
}

#[tokio::test]
async fn request_id_is_kept_or_made() {
    let s = stack("").await;
    let response = s
        .http()
        .get(format!("{}/models", s.v1()))
        .bearer_auth(KEY)
        .header("x-request-id", "trace-abc-1")
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"], "trace-abc-1");
    let response = s
        .http()
        .get(format!("{}/models", s.v1()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn health() {
    let s = stack("").await;
    let response = s
        .http()
        .get(format!("{}/health", s.server.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("text"), r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn overhead_header_excludes_the_upstream_wait() {
    let s = stack("").await;
    s.openai.set_script(
        llmur_testkit::Script::new().latency(llmur_testkit::Latency::Fixed(
            std::time::Duration::from_millis(300),
        )),
    );
    let response = s
        .post_chat(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 200);
    let overhead: f64 = response.headers()["x-llmur-overhead-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("milliseconds");
    // The upstream took 300 ms; llmur's own share is a small fraction of it.
    assert!((0.0..250.0).contains(&overhead), "overhead {overhead} ms");
    // Refusals carry it too.
    let refused = s
        .http()
        .get(format!("{}/models", s.v1()))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("x-llmur-overhead-ms"));
}
