//! The crate's one public error type and its mapping to OpenAI-shaped responses.
//!
//! Owns: [`Error`], [`ErrorKind`], [`Origin`] and the JSON body every `/v1` error carries.
//! Must not touch: transport or catalog state; an error is plain data, built without side
//! effects, and turned into a response in exactly one place ([`Error::to_response`]).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request could not be understood (malformed JSON, missing field): 400.
    BadRequest,
    /// No key, an unknown key or a blocked key: 401.
    Unauthorized,
    /// The key is valid but may not do this: 403.
    Forbidden,
    /// Unknown path or a model the key cannot see: 404.
    NotFound,
    /// The path exists but not with this method: 405.
    MethodNotAllowed,
    /// The request body is larger than the configured limit: 413.
    PayloadTooLarge,
    /// The deployment has no connection to send the request to: 503.
    NoConnection,
    /// The upstream could not be reached (connect or protocol failure): 502.
    UpstreamUnreachable,
    /// The upstream did not answer in time: 504.
    UpstreamTimeout,
    /// A request or token limit was reached: 429 `rate_limit_exceeded`.
    RateLimited,
    /// A budget limit was reached: 429 `insufficient_quota`.
    QuotaExceeded,
    /// The usage counter cannot be reached and the policy is fail-closed: 503.
    LimiterUnavailable,
    /// A bug or an unexpected state inside llmur: 500.
    Internal,
}

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller sent something wrong; never answered with a 5xx.
    Client,
    /// The provider failed or could not be reached.
    Upstream,
    /// llmur itself.
    Internal,
}

/// The error type of `llmur-core`: an opaque struct with a kind, an origin, a message and
/// an optional source.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    param: Option<Cow<'static, str>>,
    code: Option<&'static str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Rarely set, so boxed to keep `Result<_, Error>` small.
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    headers: Vec<(HeaderName, HeaderValue)>,
    detail: Option<serde_json::Value>,
}

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            code: None,
            source: None,
            extra: None,
        }
    }

    /// Sets the OpenAI `param` field (the request field at fault).
    #[must_use]
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the OpenAI `code` field (a machine-readable code such as `invalid_api_key`).
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Adds a header to the error response (e.g. `retry-after`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra
            .get_or_insert_default()
            .headers
            .push((name, value));
        self
    }

    /// Adds machine-readable details, sent as `error.llmur` in the body.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.extra.get_or_insert_default().detail = Some(detail);
        self
    }

    /// The headers the error response carries besides `content-type`.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.extra.as_deref().map_or(&[], |e| e.headers.as_slice())
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable code, when there is one.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// Whose fault it is.
    pub fn origin(&self) -> Origin {
        match self.kind {
            ErrorKind::BadRequest
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge => Origin::Client,
            ErrorKind::UpstreamUnreachable | ErrorKind::UpstreamTimeout => Origin::Upstream,
            ErrorKind::RateLimited | ErrorKind::QuotaExceeded => Origin::Client,
            ErrorKind::NoConnection | ErrorKind::LimiterUnavailable | ErrorKind::Internal => {
                Origin::Internal
            }
        }
    }

    /// Whether another connection may be tried for the same request.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::UpstreamUnreachable)
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited | ErrorKind::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NoConnection | ErrorKind::LimiterUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI `type` field for this error.
    pub fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::QuotaExceeded => "insufficient_quota",
            _ => openai_type_for(self.status()),
        }
    }

    /// The OpenAI-shaped JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        if let Some(detail) = self.extra.as_ref().and_then(|e| e.detail.as_ref()) {
            return serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": self.openai_type(),
                    "param": self.param,
                    "code": self.code,
                    "llmur": detail,
                }
            });
        }
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// The complete HTTP response for this error.
    pub fn to_response(&self) -> http::Response<Bytes> {
        let body = Bytes::from(self.to_json().to_string());
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers() {
            response.headers_mut().append(name.clone(), value.clone());
        }
        response
    }
}

/// The OpenAI `type` conventionally used for an HTTP status.
pub fn openai_type_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("code", &self.code)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_never_5xx() {
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::PayloadTooLarge,
        ] {
            let e = Error::new(kind, "x");
            assert_eq!(e.origin(), Origin::Client);
            assert!(e.status().is_client_error(), "{kind:?}");
        }
    }

    #[test]
    fn body_is_openai_shaped() {
        let e = Error::new(ErrorKind::NotFound, "no such model")
            .with_param("model")
            .with_code("model_not_found");
        let v = e.to_json();
        assert_eq!(v["error"]["message"], "no such model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(e.to_response().status(), 404);
    }
}
