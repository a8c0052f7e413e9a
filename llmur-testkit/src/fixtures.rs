//! Real SSE streams recorded from OpenAI, for replay and parser tests.
//!
//! All were recorded from `POST /v1/chat/completions` with
//! `stream_options.include_usage = true`, so each ends with the usage chunk and
//! `data: [DONE]`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

const NAMES: [&str; 12] = [
    "length",
    "logprobs",
    "logprobs_refusal",
    "long",
    "n3",
    "parallel_tool_calls",
    "refusal",
    "stop_a",
    "stop_b",
    "tool_call_a",
    "tool_call_b",
    "tool_call_c",
];

/// Directory holding the recorded `*.sse` files.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openai-streams")
}

/// Reads the recorded stream `<dir>/<name>.sse` (see [`openai_stream_names`]).
pub fn openai_stream(name: &str) -> std::io::Result<Bytes> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid fixture name {name:?}"),
        ));
    }
    std::fs::read(dir().join(format!("{name}.sse"))).map(Bytes::from)
}

/// Names of all recorded streams, sorted.
pub fn openai_stream_names() -> Vec<&'static str> {
    NAMES.to_vec()
}
