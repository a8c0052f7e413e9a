//! The OpenAI codec, and the OpenAI response handling every OpenAI-speaking provider shares.
//!
//! Owns: addressing (`{api_endpoint}/v1/...`, `Authorization: Bearer`), and the byte-level
//! rewrites of answers: `model` becomes the deployment name, usage is read, the usage
//! chunk the client did not ask for is dropped, error bodies get a `type`.
//! Must not touch: anything but bytes in, bytes out.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Call, Decoded, EventAction, Provider, StreamState};
use crate::error::{Error, ErrorKind, openai_type_for};
use crate::sse::{QuotedKey, event_data};
use crate::usage::Usage;

/// The OpenAI API (`provider: "openai/v1"`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAi;

impl Provider for OpenAi {
    fn name(&self) -> &str {
        "openai/v1"
    }

    fn encode(&self, call: &Call<'_>) -> Result<http::Request<Bytes>, Error> {
        let conn = call.connection;
        let base = conn.api_endpoint.as_str();
        let path = call.endpoint.path();
        // Pushed, not `format!`ed: two formats were a thousand instructions a request.
        let mut url = String::with_capacity(base.len() + 4 + path.len());
        url.push_str(base);
        url.push_str(if base.ends_with("/v1") { "/" } else { "/v1/" });
        url.push_str(path);
        let key = conn.api_key.expose_secret();
        let mut auth = String::with_capacity(7 + key.len());
        auth.push_str("Bearer ");
        auth.push_str(key);
        let body = call.body.encode(&conn.model, call.body.force_usage());
        build_request(&url, call.headers, header::AUTHORIZATION, &auth, body)
    }
}

/// A JSON `POST` to `url` with the forwarded headers and one credential header, marked
/// sensitive so it never shows in debug output.
pub fn build_request(
    url: &str,
    forwarded: &HeaderMap,
    auth_name: header::HeaderName,
    auth_value: &str,
    body: Bytes,
) -> Result<http::Request<Bytes>, Error> {
    let mut request = http::Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = parsed_uri(url).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            "the connection's api_endpoint is not a valid URL",
        )
        .with_source(e)
    })?;
    let headers = request.headers_mut();
    headers.clone_from(forwarded);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut auth = HeaderValue::from_str(auth_value).map_err(|_| {
        Error::new(
            ErrorKind::Internal,
            "the connection's api_key is not a valid header value",
        )
    })?;
    auth.set_sensitive(true);
    headers.insert(auth_name, auth);
    Ok(request)
}

/// The most upstream URIs one thread keeps parsed; when full, it starts over.
const URI_CACHE: usize = 256;

thread_local! {
    /// Upstream URIs parsed on this thread, by their text. A connection's URLs repeat on
    /// every request, and parsing one cost about 1,100 instructions, a cached clone about
    /// a tenth of that; per thread, so it takes no lock (llmur serves a thread per core).
    static URIS: std::cell::RefCell<rustc_hash::FxHashMap<Box<str>, http::Uri>> =
        std::cell::RefCell::default();
}

/// `url` parsed as a URI, from this thread's cache when it was parsed before.
fn parsed_uri(url: &str) -> Result<http::Uri, http::uri::InvalidUri> {
    let cached = URIS.with_borrow(|uris| uris.get(url).cloned());
    if let Some(uri) = cached {
        return Ok(uri);
    }
    let uri: http::Uri = url.parse()?;
    URIS.with_borrow_mut(|uris| {
        if uris.len() >= URI_CACHE {
            uris.clear();
        }
        uris.insert(url.into(), uri.clone());
    });
    Ok(uri)
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
}

/// Rewrites a complete body's `model` and reads its `usage`.
pub fn decode_response(body: Bytes, state: &StreamState) -> Decoded {
    // Only the top-level `usage` member is parsed: skipping the rest with serde cost more
    // than all else here (and an embeddings answer is mostly numbers to skip).
    let usage = crate::sse::top_level_member(&body, "usage").and_then(|at| {
        let mut value = serde_json::Deserializer::from_slice(&body[at..]);
        <Option<Usage>>::deserialize(&mut value).ok().flatten()
    });
    Decoded {
        body: rewrite_model(body, &state.model_json),
        usage,
    }
}

/// The keys every stream event is searched for, each searcher built once.
static USAGE: LazyLock<QuotedKey> = LazyLock::new(|| QuotedKey::new("usage"));
static MODEL: LazyLock<QuotedKey> = LazyLock::new(|| QuotedKey::new("model"));
static CONTENT_KEYS: LazyLock<[QuotedKey; 3]> =
    LazyLock::new(|| ["content", "refusal", "arguments"].map(QuotedKey::new));

/// Handles one SSE event of an OpenAI-format stream.
pub fn decode_event(event: Bytes, state: &mut StreamState) -> EventAction {
    let Some(data) = event_data(&event) else {
        return EventAction::Forward(event);
    };
    if data.as_ref() == b"[DONE]" {
        state.done = true;
        return EventAction::Forward(event);
    }
    if USAGE.has_object_value(&data) {
        if let Ok(chunk) = serde_json::from_slice::<ChunkUsage>(&data) {
            if let Some(usage) = chunk.usage {
                state.usage = Some(usage);
                let no_choices = chunk.choices.is_none_or(|c| c.is_empty());
                if no_choices && !state.client_wants_usage {
                    return EventAction::Drop;
                }
            }
        }
    } else if has_content(&data) {
        state.content_events += 1;
    }
    EventAction::Forward(rewrite_model(event, &state.model_json))
}

/// Whether a chunk's delta carries content (text, refusal, tool arguments).
fn has_content(data: &[u8]) -> bool {
    CONTENT_KEYS
        .iter()
        .any(|k| k.str_value(data).is_some_and(|r| !r.is_empty()))
}

/// Replaces the first `"model":"..."` value with `model_json` (already JSON-escaped);
/// returns the input untouched when it already says so or has no model.
pub fn rewrite_model(bytes: Bytes, model_json: &str) -> Bytes {
    let Some(range) = MODEL.str_value(&bytes) else {
        return bytes;
    };
    if range.is_empty() || &bytes[range.clone()] == model_json.as_bytes() {
        return bytes;
    }
    let mut out = BytesMut::with_capacity(bytes.len() + model_json.len());
    out.put_slice(&bytes[..range.start]);
    out.put_slice(model_json.as_bytes());
    out.put_slice(&bytes[range.end..]);
    out.freeze()
}

/// Makes an upstream error body OpenAI-shaped: a JSON `{"error": {...}}` keeps all its
/// fields and only gets a `type` when it has none (Azure sends `null`); anything else is
/// wrapped as the `message` of a new error object.
pub fn normalize_error(status: StatusCode, body: Bytes) -> Bytes {
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return wrap_error(status, &body),
    };
    let Some(error) = value.get_mut("error").and_then(|e| e.as_object_mut()) else {
        return wrap_error(status, &body);
    };
    if error.get("type").is_some_and(|t| !t.is_null()) {
        return body;
    }
    error.insert("type".into(), openai_type_for(status).into());
    for field in ["param", "code"] {
        error.entry(field).or_insert(serde_json::Value::Null);
    }
    Bytes::from(value.to_string())
}

fn wrap_error(status: StatusCode, body: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let message = if text.trim().is_empty() {
        format!("the upstream answered {status} with an empty body")
    } else {
        text.chars().take(2000).collect()
    };
    let value = serde_json::json!({
        "error": {"message": message, "type": openai_type_for(status), "param": null, "code": null}
    });
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_s_usage_is_its_top_level_member() {
        let state = StreamState::new("my-dep", false);
        let body = Bytes::from_static(
            br#"{"id":"x","model":"gpt-4o","choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":999}}"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#,
        );
        let decoded = decode_response(body, &state);
        assert_eq!(
            decoded.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );
        assert!(decoded.body.starts_with(br#"{"id":"x","model":"my-dep","#));
        for body in [
            &br#"{"id":"x","usage":null}"#[..],
            br#"{"id":"x","choices":[{"usage":{"prompt_tokens":1}}]}"#,
            br#"not json"#,
        ] {
            let decoded = decode_response(Bytes::from_static(body), &state);
            assert_eq!(decoded.usage, None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_cached_uri_is_the_one_parsed() {
        let urls = [
            "http://127.0.0.1:8099/v1/chat/completions",
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
            "http://[::1]:80/v1/embeddings",
        ];
        for url in urls {
            let want: http::Uri = url.parse().unwrap();
            assert_eq!(parsed_uri(url).unwrap(), want, "{url}, parsed");
            assert_eq!(parsed_uri(url).unwrap(), want, "{url}, cached");
        }
        assert!(parsed_uri("http://bad host/").is_err());
        assert!(
            parsed_uri("http://bad host/").is_err(),
            "errors are not cached"
        );
    }

    #[test]
    fn a_full_uri_cache_starts_over() {
        for port in 1000..1000 + URI_CACHE as u16 + 10 {
            let url = format!("http://127.0.0.1:{port}/v1/models");
            assert_eq!(parsed_uri(&url).unwrap().port_u16(), Some(port));
        }
        assert!(URIS.with_borrow(|uris| uris.len()) <= URI_CACHE);
    }

    #[test]
    fn rewrites_model_only_when_different() {
        let b = Bytes::from_static(br#"data: {"id":"x","model":"gpt-4o-2024-08-06","choices":[]}"#);
        assert_eq!(rewrite_model(b.clone(), "gpt-4o-2024-08-06"), b);
        assert_eq!(
            rewrite_model(b, "my-dep"),
            Bytes::from_static(br#"data: {"id":"x","model":"my-dep","choices":[]}"#)
        );
    }

    #[test]
    fn drops_unrequested_usage_chunk_but_reads_it() {
        let ev = Bytes::from_static(
            b"data: {\"id\":\"x\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\n",
        );
        let mut s = StreamState::new("m", false);
        assert!(matches!(
            decode_event(ev.clone(), &mut s),
            EventAction::Drop
        ));
        assert_eq!(s.usage.map(|u| u.total()), Some(8));
        let mut s = StreamState::new("m", true);
        assert!(matches!(decode_event(ev.clone(), &mut s), EventAction::Forward(b) if b == ev));
    }

    #[test]
    fn azure_prompt_filter_chunk_is_kept() {
        let ev = Bytes::from_static(
            b"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[]}\n\n",
        );
        let mut s = StreamState::new("dep", false);
        assert!(matches!(decode_event(ev.clone(), &mut s), EventAction::Forward(b) if b == ev));
    }

    #[test]
    fn error_bodies_get_a_type() {
        let azure = Bytes::from_static(
            br#"{"error":{"code":"429","message":"slow down","param":null,"type":null}}"#,
        );
        let v: serde_json::Value =
            serde_json::from_slice(&normalize_error(StatusCode::TOO_MANY_REQUESTS, azure))
                .unwrap_or_default();
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
        assert_eq!(v["error"]["code"], "429");
        let openai = Bytes::from_static(
            br#"{"error":{"message":"m","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        assert_eq!(
            normalize_error(StatusCode::BAD_REQUEST, openai.clone()),
            openai
        );
        let html = normalize_error(
            StatusCode::BAD_GATEWAY,
            Bytes::from_static(b"<html>bad</html>"),
        );
        let v: serde_json::Value = serde_json::from_slice(&html).unwrap_or_default();
        assert_eq!(v["error"]["message"], "<html>bad</html>");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
