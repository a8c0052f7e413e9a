//! OpenAI wire bodies (field order as OpenAI sends them).

use serde::Serialize;
use serde_json::Value;

use crate::azure;

/// System fingerprint reported by the mock.
pub(crate) const FINGERPRINT: &str = "fp_mock";

/// Token usage of a chat completion.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Debug, Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<Value>,
}

#[derive(Debug, Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<CompletionChoice<'a>>,
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_filter_results: Option<Value>,
}

/// Common identity of every object in one completion, plus the flavor's extras.
#[derive(Debug, Clone)]
pub(crate) struct CompletionMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Azure: add content filter annotations and sort keys like Azure does.
    pub azure: bool,
}

impl CompletionMeta {
    fn filter_results(&self, full: bool) -> Option<Value> {
        self.azure.then(|| {
            if full {
                azure::content_filter_results()
            } else {
                Value::Object(serde_json::Map::new())
            }
        })
    }
}

/// Non-streaming `chat.completion` body with `n` identical choices.
pub(crate) fn chat_completion(
    meta: &CompletionMeta,
    content: &str,
    n: u32,
    usage: Usage,
) -> Vec<u8> {
    let body = ChatCompletion {
        id: &meta.id,
        object: "chat.completion",
        created: meta.created,
        model: &meta.model,
        system_fingerprint: FINGERPRINT,
        choices: (0..n)
            .map(|index| CompletionChoice {
                index,
                message: Message {
                    role: "assistant",
                    content,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: "stop",
                content_filter_results: meta.filter_results(true),
            })
            .collect(),
        usage,
        prompt_filter_results: meta.azure.then(azure::prompt_filter_results),
    };
    encode(meta.azure, &body)
}

/// The `delta` of a streamed choice.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// `Some(None)` serializes as `"refusal": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Option<()>>,
}

impl Delta<'_> {
    /// The opening delta: `{"role":"assistant","content":"","refusal":null}`.
    pub(crate) fn role() -> Self {
        Self {
            role: Some("assistant"),
            content: Some(""),
            refusal: Some(None),
        }
    }
}

#[derive(Debug, Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<Value>,
}

#[derive(Debug, Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    /// `None`: absent; `Some(None)`: `null`; `Some(Some(u))`: the usage object.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// A `chat.completion.chunk` with one choice. `usage_null` adds `"usage": null`.
/// On Azure, content deltas carry full content filter results, others an empty object.
pub(crate) fn chat_chunk(
    meta: &CompletionMeta,
    index: u32,
    delta: Delta<'_>,
    finish_reason: Option<&'static str>,
    usage_null: bool,
) -> Vec<u8> {
    let full_filter = delta.role.is_none() && delta.content.is_some();
    let body = ChatChunk {
        id: &meta.id,
        object: "chat.completion.chunk",
        created: meta.created,
        model: &meta.model,
        system_fingerprint: FINGERPRINT,
        choices: vec![ChunkChoice {
            index,
            delta,
            logprobs: None,
            finish_reason,
            content_filter_results: meta.filter_results(full_filter),
        }],
        usage: usage_null.then_some(None),
    };
    encode(meta.azure, &body)
}

/// The final `include_usage` chunk: no choices, the usage object.
pub(crate) fn usage_chunk(meta: &CompletionMeta, usage: Usage) -> Vec<u8> {
    let body = ChatChunk {
        id: &meta.id,
        object: "chat.completion.chunk",
        created: meta.created,
        model: &meta.model,
        system_fingerprint: FINGERPRINT,
        choices: Vec::new(),
        usage: Some(Some(usage)),
    };
    encode(meta.azure, &body)
}

/// One embedding, as floats or as base64 of little-endian `f32`s.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: EmbeddingVector,
}

#[derive(Debug, Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Debug, Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: &'a str,
    usage: EmbeddingUsage,
}

/// Embeddings response body.
pub(crate) fn embeddings(
    azure: bool,
    model: &str,
    vectors: Vec<EmbeddingVector>,
    prompt_tokens: u64,
) -> Vec<u8> {
    let body = EmbeddingList {
        object: "list",
        data: vectors
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| EmbeddingData {
                object: "embedding",
                index,
                embedding,
            })
            .collect(),
        model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    encode(azure, &body)
}

#[derive(Debug, Serialize)]
struct Model {
    id: &'static str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Debug, Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// `GET /v1/models` body.
pub(crate) fn models(azure: bool) -> Vec<u8> {
    let body = ModelList {
        object: "list",
        data: vec![Model {
            id: "gpt-4o-mini",
            object: "model",
            created: 1_700_000_000,
            owned_by: "system",
        }],
    };
    encode(azure, &body)
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// OpenAI error body `{"error":{"message","type","param","code"}}`.
pub(crate) fn error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    encode(false, &body)
}

/// Serializes a wire body: OpenAI keeps the struct's field order, Azure sorts keys
/// alphabetically at every level (as Azure OpenAI does). The wire structs contain nothing
/// that can fail to serialize.
pub(crate) fn encode<T: Serialize>(azure: bool, body: &T) -> Vec<u8> {
    if azure {
        let mut v = serde_json::to_value(body).unwrap_or(Value::Null);
        v.sort_all_objects();
        serde_json::to_vec(&v).unwrap_or_default()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    }
}

/// Standard base64 (with padding) of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET[(i & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b0 = u32::from(group[0]);
        let b1 = group.get(1).copied().map_or(0, u32::from);
        let b2 = group.get(2).copied().map_or(0, u32::from);
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if group.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if group.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn chunk_field_order_matches_openai() {
        let mut meta = CompletionMeta {
            id: "chatcmpl-mock1".into(),
            created: 1,
            model: "m".into(),
            azure: false,
        };
        let s =
            String::from_utf8(chat_chunk(&meta, 0, Delta::role(), None, true)).unwrap_or_default();
        assert_eq!(
            s,
            r#"{"id":"chatcmpl-mock1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#
        );
        meta.azure = true;
        let s =
            String::from_utf8(chat_chunk(&meta, 0, Delta::role(), None, false)).unwrap_or_default();
        assert_eq!(
            s,
            r#"{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"chatcmpl-mock1","model":"m","object":"chat.completion.chunk","system_fingerprint":"fp_mock"}"#
        );
    }
}
