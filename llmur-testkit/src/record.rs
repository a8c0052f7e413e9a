//! Requests as the mock saw them.

use bytes::Bytes;

/// One request received by a [`crate::MockServer`], recorded (with its body fully read)
/// before the reply is produced — including requests that were answered with an error.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: http::Method,
    /// Request path, without the query string.
    pub path: String,
    /// Raw query string (without the `?`), if any.
    pub query: Option<String>,
    /// All request headers.
    pub headers: http::HeaderMap,
    /// The full request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON, or `Value::Null` if it is not valid JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Value of query parameter `name` (not percent-decoded), if present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref(), name)
    }
}

/// Finds `name` in a raw query string.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_owned())
    })
}
