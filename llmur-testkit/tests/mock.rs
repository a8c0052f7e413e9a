//! Integration tests for the mock servers, driven by a minimal hyper client.

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llmur_testkit::{Flavor, Latency, MockServer, Script, Split, fixtures};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;
type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// A collected response.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> AnyResult<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn connect(addr: SocketAddr) -> AnyResult<(SendRequest<Full<Bytes>>, JoinHandle<()>)> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, task))
}

fn build(
    mock: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> AnyResult<Request<Full<Bytes>>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", mock.addr().to_string());
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Ok(req.body(Full::new(body))?)
}

/// Sends one request on a fresh connection and returns the response head with its
/// streaming body, plus the connection task.
async fn open(
    mock: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> AnyResult<(Response<Incoming>, JoinHandle<()>)> {
    let (mut sender, task) = connect(mock.addr()).await?;
    let resp = sender
        .send_request(build(mock, method, path, headers, body.into())?)
        .await?;
    Ok((resp, task))
}

async fn call(
    mock: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> AnyResult<Reply> {
    let (resp, _task) = open(mock, method, path, headers, body).await?;
    let (parts, body) = resp.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

async fn post(mock: &MockServer, path: &str, body: &Value) -> AnyResult<Reply> {
    call(mock, Method::POST, path, &[], serde_json::to_vec(body)?).await
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

/// The JSON payloads of `data:` events, and whether `[DONE]` was last.
fn sse_json(body: &[u8]) -> AnyResult<(Vec<Value>, bool)> {
    let text = std::str::from_utf8(body)?;
    let mut out = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        assert!(!done, "event after [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            out.push(serde_json::from_str(data)?);
        }
    }
    Ok((out, done))
}

fn streamed_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

fn b64decode(s: &str) -> AnyResult<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).ok_or("bad base64")?;
        acc = (acc << 6) | u32::try_from(v)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff)?);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn openai_chat_non_stream() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    let body = chat_body(false);
    let reply = post(&mock, "/v1/chat/completions", &body).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply.text().starts_with(r#"{"id":"chatcmpl-mock"#),
        "{}",
        reply.text()
    );
    let v = reply.json()?;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["system_fingerprint"], "fp_mock");
    assert!(v["created"].as_u64().is_some_and(|c| c > 1_700_000_000));
    let choices = v["choices"].as_array().ok_or("choices")?;
    assert_eq!(choices.len(), 1);
    assert_eq!(
        choices[0],
        json!({"index": 0, "message": {"role": "assistant", "content": "Hello from the mock", "refusal": null}, "logprobs": null, "finish_reason": "stop"})
    );
    let prompt = (serde_json::to_vec(&body)?.len() / 4) as u64;
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5})
    );
    assert!(v.get("prompt_filter_results").is_none());

    mock.set_script(Script::new().content("custom").usage(3, 4));
    let mut body = chat_body(false);
    body["n"] = json!(3);
    let v = post(&mock, "/v1/chat/completions", &body).await?.json()?;
    assert_eq!(v["id"], "chatcmpl-mock2");
    let choices = v["choices"].as_array().ok_or("choices")?;
    assert_eq!(choices.len(), 3);
    assert_eq!(choices[2]["index"], 2);
    assert_eq!(choices[2]["message"]["content"], "custom");
    assert_eq!(v["usage"]["total_tokens"], 7);
    Ok(())
}

#[tokio::test]
async fn azure_chat_non_stream_and_routes() -> TestResult {
    let mock = MockServer::start(Flavor::Azure).await?;
    let path = "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21";
    let reply = post(&mock, path, &chat_body(false)).await?;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json()?;
    assert_eq!(v["model"], "my-gpt");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"],
        json!({"filtered": false, "severity": "safe"})
    );
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from the mock");

    // v1 form: the model comes from the body.
    let v = post(&mock, "/openai/v1/chat/completions", &chat_body(false))
        .await?
        .json()?;
    assert_eq!(v["model"], "gpt-4o-mini");

    // Missing api-version on the deployments form.
    let reply = post(
        &mock,
        "/openai/deployments/my-gpt/chat/completions",
        &chat_body(false),
    )
    .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json()?,
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );
    let reply = post(&mock, "/v1/chat/completions", &chat_body(false)).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn stream_without_include_usage() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let reply = post(&mock, "/v1/chat/completions", &chat_body(true)).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let (chunks, done) = sse_json(&reply.body)?;
    assert!(done);
    assert_eq!(chunks.len(), 1 + 5 + 1);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(streamed_content(&chunks), "Hello from the mock");
    let last = &chunks[6];
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(
            c.get("usage").is_none(),
            "usage present without include_usage: {c}"
        );
    }
    assert!(!reply.text().contains("usage"));
    assert_eq!(mock.completed_streams(), 1);
    assert_eq!(mock.cancelled_streams(), 0);
    Ok(())
}

#[tokio::test]
async fn stream_with_include_usage() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(Script::new().chunks(3).usage(10, 20));
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let reply = post(&mock, "/v1/chat/completions", &body).await?;
    let (chunks, done) = sse_json(&reply.body)?;
    assert!(done);
    assert_eq!(chunks.len(), 1 + 3 + 1 + 1);
    let (usage_chunk, rest) = chunks.split_last().ok_or("no chunks")?;
    for c in rest {
        assert_eq!(c.get("usage"), Some(&Value::Null), "{c}");
    }
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30})
    );
    Ok(())
}

#[tokio::test]
async fn azure_stream_starts_with_prompt_filter_chunk() -> TestResult {
    let mock = MockServer::start(Flavor::Azure).await?;
    let path = "/openai/deployments/dep/chat/completions?api-version=2024-10-21";
    let reply = post(&mock, path, &chat_body(true)).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().starts_with(r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"#));
    let (chunks, done) = sse_json(&reply.body)?;
    assert!(done);
    assert_eq!(chunks.len(), 1 + 1 + 5 + 1);
    assert_eq!(chunks[0]["id"], "");
    assert_eq!(chunks[0]["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(chunks[1]["model"], "dep");
    for c in &chunks[2..7] {
        assert_eq!(
            c["choices"][0]["content_filter_results"]["violence"]["severity"],
            "safe"
        );
    }
    assert_eq!(streamed_content(&chunks), "Hello from the mock");
    Ok(())
}

#[tokio::test]
async fn embeddings_float_and_base64() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let req = json!({"model": "text-embedding-3-small", "input": ["a", "b"]});
    let v = post(&mock, "/v1/embeddings", &req).await?.json()?;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().ok_or("data")?;
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let floats: Vec<f32> = data[0]["embedding"]
        .as_array()
        .ok_or("embedding")?
        .iter()
        .filter_map(|x| x.as_f64().map(|f| f as f32))
        .collect();
    assert_eq!(floats.len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);

    let req = json!({"model": "m", "input": "a", "encoding_format": "base64", "dimensions": 8});
    let v = post(&mock, "/v1/embeddings", &req).await?.json()?;
    let b64 = v["data"][0]["embedding"].as_str().ok_or("not base64")?;
    let bytes = b64decode(b64)?;
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats, "same input gives the same vector");

    let req = json!({"model": "m", "input": [[1, 2], [3]], "dimensions": 3});
    let v = post(&mock, "/v1/embeddings", &req).await?.json()?;
    assert_eq!(v["data"][1]["embedding"].as_array().map(Vec::len), Some(3));

    let reply = post(&mock, "/v1/embeddings", &json!({"model": "m"})).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()?["error"]["type"], "invalid_request_error");

    let azure = MockServer::start(Flavor::Azure).await?;
    let path = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
    let v = post(&azure, path, &json!({"input": "x"})).await?.json()?;
    assert_eq!(v["model"], "emb");
    assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(8));
    Ok(())
}

#[tokio::test]
async fn models_both_flavors() -> TestResult {
    let want = json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "system"}]});
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let reply = call(&mock, Method::GET, "/v1/models", &[], Bytes::new()).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()?, want);
    let azure = MockServer::start(Flavor::Azure).await?;
    let reply = call(&azure, Method::GET, "/openai/v1/models", &[], Bytes::new()).await?;
    assert_eq!(reply.json()?, want);
    Ok(())
}

#[tokio::test]
async fn api_key_enforcement() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.require_api_key("sk-good-key-123456");
    let body = serde_json::to_vec(&chat_body(false))?;
    let path = "/v1/chat/completions";
    let reply = call(&mock, Method::POST, path, &[], body.clone()).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()?["error"]["type"], "invalid_request_error");
    let wrong = [("authorization", "Bearer sk-wrong-key-999999")];
    let reply = call(&mock, Method::POST, path, &wrong, body.clone()).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()?["error"]["code"], "invalid_api_key");
    assert!(!reply.text().contains("sk-wrong-key-999999"));
    let good = [("authorization", "Bearer sk-good-key-123456")];
    let reply = call(&mock, Method::POST, path, &good, body.clone()).await?;
    assert_eq!(reply.status, StatusCode::OK);

    let azure = MockServer::start(Flavor::Azure).await?;
    azure.require_api_key("az-key");
    let path = "/openai/deployments/d/chat/completions?api-version=2024-10-21";
    let bearer = [("authorization", "Bearer az-key")];
    let reply = call(&azure, Method::POST, path, &bearer, body.clone()).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let v = reply.json()?;
    assert_eq!(v["error"]["code"], "401");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Access denied due to invalid subscription key"))
    );
    let good = [("api-key", "az-key")];
    let reply = call(&azure, Method::POST, path, &good, body).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        azure.request_count(),
        2,
        "rejected requests are recorded too"
    );
    Ok(())
}

#[tokio::test]
async fn scripted_error_with_retry_after() -> TestResult {
    let mock = MockServer::start(Flavor::Azure).await?;
    let err = json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded call rate limit.", "param": null, "type": null}});
    mock.set_script(Script::new().error(429, err.clone()).retry_after(7));
    let path = "/openai/deployments/d/chat/completions?api-version=2024-10-21";
    let reply = post(&mock, path, &chat_body(true)).await?;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()?, err);
    Ok(())
}

#[tokio::test]
async fn push_script_is_fifo_then_default() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(Script::new().content("default"));
    mock.push_script(Script::new().error(500, json!({"error": {"message": "first"}})));
    mock.push_script(Script::new().error(429, json!({"error": {"message": "second"}})));
    mock.push_script(Script::new().content("third"));
    // Requests that never reach an endpoint do not consume scripts.
    let reply = call(&mock, Method::POST, "/v1/nope", &[], Bytes::new()).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()?["error"]["code"], "unknown_url");
    let reply = call(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[],
        "{not json",
    )
    .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()?["error"]["type"], "invalid_request_error");

    let mut seen = Vec::new();
    for _ in 0..5 {
        let reply = post(&mock, "/v1/chat/completions", &chat_body(false)).await?;
        let v = reply.json()?;
        let what = v["error"]["message"]
            .as_str()
            .or_else(|| v["choices"][0]["message"]["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        seen.push((reply.status.as_u16(), what));
    }
    let want: Vec<(u16, String)> = [
        (500, "first"),
        (429, "second"),
        (200, "third"),
        (200, "default"),
        (200, "default"),
    ]
    .into_iter()
    .map(|(s, t)| (s, t.to_owned()))
    .collect();
    assert_eq!(seen, want);
    Ok(())
}

#[tokio::test]
async fn replay_fixtures_byte_exact() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let names = fixtures::openai_stream_names();
    assert_eq!(names.len(), 12);
    for name in names {
        let raw = fixtures::openai_stream(name)?;
        assert!(raw.ends_with(b"data: [DONE]\n\n"), "{name}");
        mock.set_script(Script::new().replay(raw.clone()));
        let reply = post(&mock, "/v1/chat/completions", &chat_body(true)).await?;
        assert_eq!(reply.body, raw, "fixture {name}");
    }
    // Non-streaming requests ignore replay.
    let v = post(&mock, "/v1/chat/completions", &chat_body(false))
        .await?
        .json()?;
    assert_eq!(v["object"], "chat.completion");
    assert!(fixtures::openai_stream("does_not_exist").is_err());
    Ok(())
}

#[tokio::test]
async fn splits_reassemble_to_the_same_bytes() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let cases = [
        ("long", Split::EveryBytes(7)),
        ("long", Split::Awkward),
        ("tool_call_a", Split::EveryBytes(1)),
        ("n3", Split::EveryBytes(100_000)),
    ];
    for (name, split) in cases {
        let raw = fixtures::openai_stream(name)?;
        mock.set_script(Script::new().replay(raw.clone()).split(split));
        let reply = post(&mock, "/v1/chat/completions", &chat_body(true)).await?;
        assert_eq!(reply.body, raw, "{name} {split:?}");
    }
    // Generated streams too (with multi-byte content).
    mock.set_script(Script::new().content("héllo wörld ✓").chunks(4));
    let events = post(&mock, "/v1/chat/completions", &chat_body(true)).await?;
    mock.set_script(
        Script::new()
            .content("héllo wörld ✓")
            .chunks(4)
            .split(Split::Awkward),
    );
    let awkward = post(&mock, "/v1/chat/completions", &chat_body(true)).await?;
    let strip_ids = |b: &Bytes| -> AnyResult<Vec<Value>> {
        let (mut chunks, _) = sse_json(b)?;
        for c in &mut chunks {
            c["id"] = Value::Null;
            c["created"] = Value::Null;
        }
        Ok(chunks)
    };
    assert_eq!(strip_ids(&events.body)?, strip_ids(&awkward.body)?);
    let (chunks, _) = sse_json(&awkward.body)?;
    assert_eq!(streamed_content(&chunks), "héllo wörld ✓");
    Ok(())
}

#[tokio::test]
async fn awkward_split_really_splits_writes() -> TestResult {
    // With a cadence between events, the first write of each event (1 byte) arrives
    // separately, so the client observes frames that are not whole events.
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(
        Script::new()
            .chunks(1)
            .split(Split::Awkward)
            .cadence(Duration::from_millis(20)),
    );
    let (resp, _task) = open(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[],
        serde_json::to_vec(&chat_body(true))?,
    )
    .await?;
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            frames.push(data);
        }
    }
    assert!(frames.iter().any(|f| !f.ends_with(b"\n\n")), "{frames:?}");
    let all: BytesMut = frames.iter().fold(BytesMut::new(), |mut acc, f| {
        acc.extend_from_slice(f);
        acc
    });
    assert!(sse_json(&all)?.1);
    Ok(())
}

#[tokio::test]
async fn cut_after_aborts_the_body() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(Script::new().cut_after(2).keep_alive_comments(true));
    let (resp, _task) = open(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[],
        serde_json::to_vec(&chat_body(true))?,
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = BytesMut::new();
    let mut error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    got.extend_from_slice(&d);
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(error.is_some(), "client must see an incomplete body");
    let (chunks, done) = sse_json(&got)?;
    assert_eq!(chunks.len(), 2);
    assert!(!done);
    assert!(String::from_utf8_lossy(&got).contains(": keep-alive\n\n"));
    assert_eq!(mock.completed_streams(), 0);
    assert_eq!(mock.cancelled_streams(), 0);
    Ok(())
}

#[tokio::test]
async fn stall_then_client_drop_counts_cancelled() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(Script::new().stall_after(1));
    let (resp, task) = open(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[],
        serde_json::to_vec(&chat_body(true))?,
    )
    .await?;
    let mut body = resp.into_body();
    let first = body.frame().await.ok_or("no frame")??;
    assert!(first.into_data().is_ok_and(|d| d.starts_with(b"data: ")));
    // Nothing else arrives.
    let next = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(next.is_err(), "stalled stream produced more data");
    assert_eq!(mock.cancelled_streams(), 0);
    drop(body);
    task.abort();
    assert!(mock.wait_cancelled_streams(1, Duration::from_secs(5)).await);
    assert_eq!(mock.cancelled_streams(), 1);
    assert_eq!(mock.completed_streams(), 0);
    assert!(
        !mock
            .wait_cancelled_streams(2, Duration::from_millis(20))
            .await
    );
    Ok(())
}

#[tokio::test]
async fn latency_ttft_and_cadence() -> TestResult {
    let ms = Duration::from_millis;
    let mock = MockServer::start(Flavor::OpenAi).await?;
    mock.set_script(Script::new().latency(Latency::Fixed(ms(60))));
    let start = Instant::now();
    post(&mock, "/v1/chat/completions", &chat_body(false)).await?;
    assert!(start.elapsed() >= ms(60));

    mock.set_script(
        Script::new()
            .latency(Latency::Jitter {
                base: ms(10),
                jitter: ms(10),
            })
            .ttft(ms(50))
            .chunks(2)
            .cadence(ms(10)),
    );
    let start = Instant::now();
    let (resp, _task) = open(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[],
        serde_json::to_vec(&chat_body(true))?,
    )
    .await?;
    let head = start.elapsed();
    assert!(head <= ms(500), "head took {head:?}");
    let body = resp.into_body().collect().await?.to_bytes();
    // role + 2 content + finish + [DONE] = 5 events: ttft + 4 cadence steps.
    assert!(start.elapsed() >= ms(50 + 40), "{:?}", start.elapsed());
    assert!(sse_json(&body)?.1);
    Ok(())
}

#[tokio::test]
async fn requests_are_recorded() -> TestResult {
    let mock = MockServer::start(Flavor::Azure).await?;
    let body = serde_json::to_vec(&chat_body(false))?;
    let path = "/openai/deployments/d/chat/completions?api-version=2024-10-21";
    call(
        &mock,
        Method::POST,
        path,
        &[("api-key", "k1"), ("x-custom", "yes")],
        body.clone(),
    )
    .await?;
    call(&mock, Method::GET, "/openai/unknown", &[], Bytes::new()).await?;
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(mock.request_count(), 2);
    let r = &reqs[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/openai/deployments/d/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("API-KEY").as_deref(), Some("k1"));
    assert_eq!(r.header("x-custom").as_deref(), Some("yes"));
    assert_eq!(r.body, Bytes::from(body));
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    assert_eq!(reqs[1].method, Method::GET);
    assert_eq!(reqs[1].json(), Value::Null);
    mock.clear_requests();
    assert_eq!(mock.request_count(), 0);
    Ok(())
}

#[tokio::test]
async fn http2_prior_knowledge() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let stream = TcpStream::connect(mock.addr()).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = Bytes::from(serde_json::to_vec(&chat_body(true))?);
    let uri = format!("{}/v1/chat/completions", mock.base_url());
    let req = Request::post(uri).body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let bytes = resp.into_body().collect().await?.to_bytes();
    let (chunks, done) = sse_json(&bytes)?;
    assert!(done);
    assert_eq!(streamed_content(&chunks), "Hello from the mock");
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_listening() -> TestResult {
    let mock = MockServer::start(Flavor::OpenAi).await?;
    let addr = mock.addr();
    mock.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    Ok(())
}
