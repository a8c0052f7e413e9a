//! The Azure OpenAI codec: OpenAI's format, Azure's addressing and `api-key` header.
//!
//! Owns: the two URL shapes —
//! `{api_endpoint}/openai/deployments/{deployment}/{path}?api-version={version}` when the
//! connection has a dated `api_version`, and the newer `{api_endpoint}/openai/v1/{path}`
//! when it has none, `"v1"`, or `"preview"` (sent as `?api-version=preview`).
//! Everything else is the OpenAI codec's, through the trait's default methods.

use bytes::Bytes;
use http::HeaderName;
use secrecy::ExposeSecret;

use super::openai::build_request;
use super::{Call, Provider};
use crate::error::{Error, ErrorKind};

/// Azure OpenAI (`provider: "azure/openai"`). The connection's `model` is the Azure
/// deployment name.
#[derive(Debug, Default, Clone, Copy)]
pub struct AzureOpenAi;

static API_KEY: HeaderName = HeaderName::from_static("api-key");

impl Provider for AzureOpenAi {
    fn name(&self) -> &str {
        "azure/openai"
    }

    fn encode(&self, call: &Call<'_>) -> Result<http::Request<Bytes>, Error> {
        let conn = call.connection;
        let base = conn.api_endpoint.as_str();
        let deployment = conn.model.as_str();
        let path = call.endpoint.path();
        let url = match conn.api_version.as_deref() {
            None | Some("v1") => format!("{base}/openai/v1/{path}"),
            Some("preview") => format!("{base}/openai/v1/{path}?api-version=preview"),
            Some(version) => {
                if !is_url_safe(deployment) || !is_url_safe(version) {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        "the Azure deployment name or api_version has characters not allowed in a URL",
                    ));
                }
                format!("{base}/openai/deployments/{deployment}/{path}?api-version={version}")
            }
        };
        let body = call.body.encode(deployment, call.body.force_usage());
        build_request(
            &url,
            call.headers,
            API_KEY.clone(),
            conn.api_key.expose_secret(),
            body,
        )
    }
}

fn is_url_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderMap;
    use secrecy::SecretString;

    use super::*;
    use crate::model::{Connection, ConnectionId};
    use crate::request::RequestBody;
    use crate::usage::Endpoint;

    fn encode(version: Option<&str>) -> http::Request<Bytes> {
        let mut conn = Connection::new(
            ConnectionId::new_random(),
            Arc::new(AzureOpenAi),
            "https://r.openai.azure.com/",
            "my-gpt4o",
            SecretString::from("azkey"),
        );
        conn.api_version = version.map(str::to_owned);
        let body = RequestBody::parse(br#"{"model":"dep","messages":[]}"#)
            .ok()
            .unwrap_or_else(|| unreachable!());
        let call = Call {
            endpoint: Endpoint::ChatCompletions,
            body: &body,
            connection: &conn,
            headers: &HeaderMap::new(),
        };
        AzureOpenAi
            .encode(&call)
            .ok()
            .unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn both_url_shapes_and_api_key_header() {
        let r = encode(Some("2024-10-21"));
        assert_eq!(
            r.uri().to_string(),
            "https://r.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(r.headers()["api-key"], "azkey");
        assert!(r.headers().get("authorization").is_none());
        let r = encode(None);
        assert_eq!(
            r.uri().to_string(),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap_or_default();
        assert_eq!(body["model"], "my-gpt4o");
    }
}
