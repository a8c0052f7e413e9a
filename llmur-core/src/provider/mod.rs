//! Provider codecs: how one upstream's wire format is spoken.
//!
//! Owns: the [`Provider`] trait and the built-in [`OpenAi`] and [`AzureOpenAi`] codecs.
//! A provider is a pure codec — no I/O, no application state: it turns a parsed call into
//! an `http::Request` and rewrites what comes back. The default methods implement the
//! OpenAI response format, so a provider that speaks it (Azure, most self-hosted servers)
//! only says how to address and authenticate.
//! Must not touch: the HTTP client, the catalog, accounting.

mod azure;
pub mod openai;

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

pub use azure::AzureOpenAi;
pub use openai::OpenAi;

use crate::error::Error;
use crate::model::Connection;
use crate::request::RequestBody;
use crate::usage::{Endpoint, Usage};

/// Everything a provider gets to build one upstream request.
#[derive(Debug)]
pub struct Call<'a> {
    /// The operation.
    pub endpoint: Endpoint,
    /// The parsed client body.
    pub body: &'a RequestBody,
    /// The connection to address.
    pub connection: &'a Connection,
    /// Client headers safe to forward (no credentials, no hop-by-hop headers).
    pub headers: &'a HeaderMap,
}

/// A complete response body rewritten for the client, with the usage it reported.
#[derive(Debug)]
pub struct Decoded {
    /// The body for the client.
    pub body: Bytes,
    /// The usage in the body, if any.
    pub usage: Option<Usage>,
}

/// What to do with one SSE event of a streamed answer.
#[derive(Debug)]
pub enum EventAction {
    /// Send these bytes to the client (the event, possibly rewritten).
    Forward(Bytes),
    /// Send nothing (e.g. the usage chunk the client did not ask for).
    Drop,
}

/// Per-stream state a codec reads and updates event by event.
#[derive(Debug)]
pub struct StreamState {
    /// The deployment name, JSON-escaped without quotes; every chunk's `model` becomes it.
    pub model_json: String,
    /// Whether the client asked for the usage chunk.
    pub client_wants_usage: bool,
    /// Usage reported by the upstream so far.
    pub usage: Option<Usage>,
    /// Events that carried a non-empty delta (a lower bound on completion tokens).
    pub content_events: u64,
    /// `data: [DONE]` was seen.
    pub done: bool,
}

impl StreamState {
    /// Fresh state for a stream answered as `deployment`.
    pub fn new(deployment: &str, client_wants_usage: bool) -> Self {
        Self {
            model_json: json_escaped(deployment),
            client_wants_usage,
            usage: None,
            content_events: 0,
            done: false,
        }
    }
}

/// `text` as the inside of a JSON string. A name with nothing to escape (no quote,
/// backslash or control character, as every usual deployment name) is copied as it is:
/// going through `serde_json::Value`'s `Display` cost about 800 instructions a request.
fn json_escaped(text: &str) -> String {
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return text.to_owned();
    }
    let quoted = serde_json::Value::from(text).to_string();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// A provider codec. Implement [`Provider::encode`] (address, authenticate, encode the
/// body); override the `decode_*` methods only for a wire format other than OpenAI's.
pub trait Provider: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and the admin API (`"openai/v1"`, `"azure/openai"`).
    fn name(&self) -> &str;

    /// The upstream request for `call`.
    fn encode(&self, call: &Call<'_>) -> Result<http::Request<Bytes>, Error>;

    /// Rewrites a complete 2xx body for the client and reads its usage.
    fn decode_response(&self, body: Bytes, state: &StreamState) -> Decoded {
        openai::decode_response(body, state)
    }

    /// Handles one complete SSE event of a 2xx stream.
    fn decode_event(&self, event: Bytes, state: &mut StreamState) -> EventAction {
        openai::decode_event(event, state)
    }

    /// Makes an upstream error body OpenAI-shaped, keeping its fields.
    fn decode_error(&self, status: StatusCode, body: Bytes) -> Bytes {
        openai::normalize_error(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_json_is_what_serde_json_writes_inside_the_quotes() {
        for name in [
            "gpt-4o-mini",
            "",
            "my deployment/v2 ünïcode ✓",
            "say \"hi\"",
            "back\\slash",
            "tab\there",
            "nul\u{0}and\u{1f}",
            "del\u{7f}",
        ] {
            let quoted = serde_json::to_string(name).unwrap();
            let want = &quoted[1..quoted.len() - 1];
            assert_eq!(StreamState::new(name, false).model_json, want, "{name:?}");
        }
    }
}
