//! Azure OpenAI specifics: content filter annotations and error shapes.

use serde_json::{Value, json};

/// Message of Azure's 401 reply.
const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. \
Make sure to provide a valid key for an active subscription and use a correct regional API \
endpoint for your resource.";

/// Per-choice `content_filter_results` when nothing was filtered.
pub(crate) fn content_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "hate": safe,
        "self_harm": safe,
        "sexual": safe,
        "violence": safe,
    })
}

/// Top-level `prompt_filter_results` when nothing was filtered.
pub(crate) fn prompt_filter_results() -> Value {
    let mut results = content_filter_results();
    if let Some(map) = results.as_object_mut() {
        map.insert(
            "jailbreak".to_owned(),
            json!({"filtered": false, "detected": false}),
        );
    }
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

/// The chunk Azure sends before anything else in a chat stream.
pub(crate) fn prompt_filter_chunk() -> Vec<u8> {
    let body = json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results(),
    });
    crate::openai::encode(true, &body)
}

/// Azure error body `{"error":{"code","message","param":null,"type":null}}`.
pub(crate) fn error(code: &str, message: &str) -> Vec<u8> {
    let body = json!({"error": {"code": code, "message": message, "param": null, "type": null}});
    crate::openai::encode(true, &body)
}

/// Azure's 401 body for a missing or wrong `api-key`.
pub(crate) fn access_denied() -> Vec<u8> {
    let body = json!({"error": {"code": "401", "message": ACCESS_DENIED}});
    crate::openai::encode(true, &body)
}

/// Azure's 404 body for an unknown route or a missing `api-version`.
pub(crate) fn not_found() -> Vec<u8> {
    let body = json!({"error": {"code": "404", "message": "Resource not found"}});
    crate::openai::encode(true, &body)
}
