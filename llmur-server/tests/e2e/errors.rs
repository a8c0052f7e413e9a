//! Every error case, as a real OpenAI client and raw HTTP see it.

use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use llmur_testkit::{Latency, Script};
use serde_json::json;

use crate::common::*;

async fn sdk_error(s: &Stack, key: &str, model: &str) -> (u16, Option<String>, Option<String>) {
    let request = CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hi")
            .build()
            .expect("message")
            .into()])
        .build()
        .expect("request");
    match s.client(key).chat().create(request).await {
        Err(OpenAIError::ApiError(e)) => {
            (e.status_code.as_u16(), e.api_error.r#type, e.api_error.code)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request; returns status, headers and the parsed body, asserting the body is
/// OpenAI-shaped.
async fn raw(
    request: reqwest::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: serde_json::Value = response.json().await.expect("json body");
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(
        error.get("type").is_some() && error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    (status, headers, body)
}

#[tokio::test]
async fn auth_errors_are_401_and_openai_shaped() {
    let s = stack("").await;
    assert_eq!(
        sdk_error(&s, "sk-nope-nope-nope", "gpt-4o-mini").await,
        (
            401,
            Some("authentication_error".into()),
            Some("invalid_api_key".into())
        )
    );
    assert_eq!(sdk_error(&s, BLOCKED_KEY, "gpt-4o-mini").await.0, 401);
    let (status, _, body) = raw(s
        .http()
        .post(format!("{}/chat/completions", s.v1()))
        .json(&json!({})))
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert_eq!(s.openai.request_count(), 0);
}

#[tokio::test]
async fn unknown_and_foreign_models_are_404() {
    let s = stack("").await;
    assert_eq!(
        sdk_error(&s, KEY, "no-such-model").await,
        (
            404,
            Some("invalid_request_error".into()),
            Some("model_not_found".into())
        )
    );
    // `unlinked` exists but belongs to another project's key.
    assert_eq!(sdk_error(&s, KEY, "unlinked").await.0, 404);
    assert_eq!(s.openai.request_count(), 0);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_never_5xx() {
    let s = stack("").await;
    let url = format!("{}/chat/completions", s.v1());
    for body in [
        "{not json",
        "[]",
        r#"{"messages": []}"#,
        r#"{"model": 5}"#,
        "",
    ] {
        let (status, _, _) = raw(s
            .http()
            .post(&url)
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body))
        .await;
        assert_eq!(status, 400, "body {body:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = stack("max_body_bytes: 1024").await;
    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (status, _, body) = raw(s
        .http()
        .post(format!("{}/chat/completions", s.v1()))
        .bearer_auth(KEY)
        .json(&big))
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn wrong_path_and_method() {
    let s = stack("").await;
    let (status, _, _) = raw(s
        .http()
        .get(format!("{}/chat/completions", s.v1()))
        .bearer_auth(KEY))
    .await;
    assert_eq!(status, 405);
    let (status, _, _) = raw(s.http().post(format!("{}/nope", s.v1())).bearer_auth(KEY)).await;
    assert_eq!(status, 404);
    let (status, _, _) = raw(s.http().get(format!("{}/admin/nope", s.server.base_url()))).await;
    assert_eq!(status, 404);
    let response = s
        .http()
        .put(format!("{}/admin/user", s.server.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.expect("JSON 405 body");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let s = stack("connect_timeout_secs: 2").await;
    assert_eq!(sdk_error(&s, KEY, "unreachable").await.0, 502);
    let (status, _, body) = raw(s
        .http()
        .post(format!("{}/chat/completions", s.v1()))
        .bearer_auth(KEY)
        .json(&json!({"model": "unreachable", "messages": []})))
    .await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(body["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let s = stack("upstream_timeout_secs: 1").await;
    s.openai
        .set_script(Script::new().latency(Latency::Fixed(Duration::from_secs(3))));
    assert_eq!(sdk_error(&s, KEY, "gpt-4o-mini").await.0, 504);
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_and_retry_after() {
    let s = stack("").await;
    let upstream_body = json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
    s.openai.push_script(
        Script::new()
            .error(429, upstream_body.clone())
            .retry_after(7),
    );
    let (status, headers, body) = raw(s
        .http()
        .post(format!("{}/chat/completions", s.v1()))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-4o-mini", "messages": []})))
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body, upstream_body);
    let logs = s.server.wait_for_logs(1, WAIT).await;
    assert_eq!(logs[0].status, 429);
    assert_eq!(logs[0].usage.total(), 0);
}

#[tokio::test]
async fn azure_errors_keep_fields_and_get_a_type() {
    let s = stack("").await;
    s.azure.push_script(Script::new().error(
        400,
        json!({"error": {"code": "content_filter", "message": "filtered", "param": "prompt", "type": null, "innererror": {"code": "ResponsibleAIPolicyViolation"}}}),
    ));
    let (status, _, body) = raw(s
        .http()
        .post(format!("{}/chat/completions", s.v1()))
        .bearer_auth(KEY)
        .json(&json!({"model": "azure-chat", "messages": []})))
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(
        body["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
}
