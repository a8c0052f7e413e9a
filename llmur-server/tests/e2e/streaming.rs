//! Streaming: usage handling, byte-exact relay of recorded OpenAI streams, awkward splits,
//! mid-stream failures, client hang-ups and graceful shutdown.

use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs, CreateChatCompletionStreamResponse,
};
use futures_util::StreamExt;
use llmur_core::UsageSource;
use llmur_testkit::{Script, Split, fixtures};
use serde_json::json;

use crate::common::*;

async fn sdk_stream(
    s: &Stack,
    model: &str,
    include_usage: Option<bool>,
) -> Vec<CreateChatCompletionStreamResponse> {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(model)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Count to five")
            .build()
            .expect("message")
            .into()]);
    if let Some(include_usage) = include_usage {
        args.stream_options(ChatCompletionStreamOptions {
            include_usage: Some(include_usage),
            include_obfuscation: None,
        });
    }
    let request = args.build().expect("request");
    let mut stream = s
        .client(KEY)
        .chat()
        .create_stream(request)
        .await
        .expect("stream starts");
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("chunk parses"));
    }
    chunks
}

#[tokio::test]
async fn usage_chunk_is_forced_upstream_and_hidden_unless_asked() {
    let s = stack("").await;
    s.openai.set_script(Script::new().chunks(4).usage(11, 4));

    let chunks = sdk_stream(&s, "gpt-4o-mini", None).await;
    assert!(
        chunks.iter().all(|c| !c.choices.is_empty()),
        "no empty-choices chunk"
    );
    assert!(chunks.iter().all(|c| c.model == "gpt-4o-mini"));
    assert_eq!(
        s.openai.requests()[0].json()["stream_options"]["include_usage"],
        true,
        "usage forced upstream"
    );

    let chunks = sdk_stream(&s, "gpt-4o-mini", Some(true)).await;
    let last = chunks.last().expect("chunks");
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.as_ref().map(|u| u.total_tokens), Some(15));

    let logs = s.server.wait_for_logs(2, WAIT).await;
    for log in &logs {
        assert_eq!(log.usage_source, UsageSource::Reported);
        assert_eq!(
            (log.usage.prompt_tokens, log.usage.completion_tokens),
            (11, 4)
        );
    }
}

#[tokio::test]
async fn explicit_include_usage_false_hides_usage_but_counts_it_exactly() {
    let s = stack("").await;
    s.openai.set_script(Script::new().chunks(3).usage(7, 3));
    let chunks = sdk_stream(&s, "gpt-4o-mini", Some(false)).await;
    assert!(chunks.iter().all(|c| c.usage.is_none()));
    assert_eq!(
        s.openai.requests()[0].json()["stream_options"]["include_usage"],
        true,
        "the upstream is always asked, so tokens are exact"
    );
    let logs = s.server.wait_for_logs(1, WAIT).await;
    assert_eq!(logs[0].usage_source, UsageSource::Reported);
    assert_eq!(
        (logs[0].usage.prompt_tokens, logs[0].usage.completion_tokens),
        (7, 3)
    );
}

#[tokio::test]
async fn azure_stream_with_empty_id_chunk() {
    let s = stack("").await;
    s.azure.set_script(Script::new().chunks(3).usage(5, 3));
    let chunks = sdk_stream(&s, "azure-chat", None).await;
    assert!(
        chunks.iter().any(|c| c.id.is_empty()),
        "Azure's prompt-filter chunk passes"
    );
    let logs = s.server.wait_for_logs(1, WAIT).await;
    assert_eq!(logs[0].usage.total(), 8);
}

async fn raw_stream(s: &Stack, model: &str) -> bytes::Bytes {
    let response = s
        .post_chat(json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    response.bytes().await.expect("body")
}

#[tokio::test]
async fn recorded_openai_streams_reach_the_client_byte_for_byte() {
    let s = stack("").await;
    let names = fixtures::openai_stream_names();
    assert_eq!(names.len(), 12);
    for name in names {
        let recorded = fixtures::openai_stream(name).expect("fixture");
        s.openai.set_script(Script::new().replay(recorded.clone()));
        let got = raw_stream(&s, "gpt-4o-2024-08-06").await;
        assert_eq!(got, recorded, "fixture {name} changed in transit");
    }
    let logs = s.server.wait_for_logs(12, WAIT).await;
    assert!(
        logs.iter()
            .all(|l| l.usage_source == UsageSource::Reported && l.error.is_none())
    );
}

#[tokio::test]
async fn awkward_splits_and_keep_alives_do_not_change_the_stream() {
    let s = stack("").await;
    let recorded = fixtures::openai_stream("n3").expect("fixture");
    for split in [Split::Awkward, Split::EveryBytes(1), Split::EveryBytes(7)] {
        s.openai
            .set_script(Script::new().replay(recorded.clone()).split(split));
        assert_eq!(
            raw_stream(&s, "gpt-4o-2024-08-06").await,
            recorded,
            "{split:?}"
        );
    }
    s.openai.set_script(
        Script::new()
            .chunks(3)
            .keep_alive_comments(true)
            .split(Split::Awkward),
    );
    let body = raw_stream(&s, "gpt-4o-mini").await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(": keep-alive"), "comments pass through");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn upstream_failure_mid_stream_reaches_the_client_as_an_error_event() {
    let s = stack("").await;
    s.openai.set_script(Script::new().chunks(10).cut_after(3));
    let body = raw_stream(&s, "gpt-4o-mini").await;
    let text = String::from_utf8_lossy(&body);
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let error: serde_json::Value =
        serde_json::from_str(last.trim_start_matches("data: ")).expect("last event is JSON");
    assert_eq!(error["error"]["code"], "upstream_stream_error", "{text}");
    let logs = s.server.wait_for_logs(1, WAIT).await;
    assert!(logs[0].error.is_some());
    assert_eq!(logs[0].usage_source, UsageSource::Estimated);
}

#[tokio::test]
async fn client_hang_up_cancels_upstream_and_records_usage() {
    let s = stack("").await;
    s.openai
        .set_script(Script::new().chunks(50).cadence(Duration::from_millis(20)));
    let mut response = s
        .post_chat(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .await;
    let mut seen = 0;
    while seen < 3 {
        let chunk = response.chunk().await.expect("chunk").expect("more data");
        seen += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    drop(response);
    assert!(
        s.openai.wait_cancelled_streams(1, WAIT).await,
        "upstream request cancelled"
    );
    let logs = s.server.wait_for_logs(1, WAIT).await;
    let log = &logs[0];
    assert!(log.client_disconnected);
    assert_eq!(log.usage_source, UsageSource::Estimated);
    assert!(log.usage.completion_tokens >= 2, "{:?}", log.usage);
    assert!(log.usage.prompt_tokens >= 1);
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish() {
    let s = stack("").await;
    s.openai
        .set_script(Script::new().chunks(10).cadence(Duration::from_millis(30)));
    let response = s
        .post_chat(json!({"model": "gpt-4o-mini", "messages": [], "stream": true}))
        .await;
    let base = s.server.base_url();
    let shutdown = tokio::spawn(s.server.shutdown());
    let body = response
        .bytes()
        .await
        .expect("stream completes during shutdown");
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "no longer accepting"
    );
}
