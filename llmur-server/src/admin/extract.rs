//! Request extractors that answer in the admin error format: a JSON body, an id in the
//! path, a query string.
//!
//! Owns: [`JsonBody`] (no or blank body → 400, a body that does not deserialize or holds
//! a NUL character in any string → 422; the `Content-Type` is not required), [`IdPath`]
//! (an id that is not a UUID cannot name anything → 404) and [`Query`] (a bad query
//! string → 400), plus the `double_option` helper for PATCH fields that can be cleared
//! with `null`. Must not touch: authorization.

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// A JSON request body.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Parses a body: blank → 400, not the expected shape → 422, a NUL character in any
/// string → 422. PostgreSQL's `text` cannot hold NUL, so without the last check the same
/// request would be stored by one backend and refused by another.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON request body is required"));
    }
    let value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    if has_nul_escape(bytes) {
        return Err(ApiError::invalid(
            "invalid request body: text must not contain NUL (\\u0000) characters",
        ));
    }
    Ok(value)
}

/// Whether valid JSON `bytes` hold a NUL character. JSON can only write one as the escape
/// `\u0000` inside a string, and in valid JSON every backslash starts an escape, so
/// stepping over each escape's backslash and the byte after it finds every `\u0000`
/// and nothing else (`\\u0000` is a backslash followed by the text `u0000`).
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        let escape = rest.get(at + 1..).unwrap_or_default();
        if escape.starts_with(b"u0000") {
            return true;
        }
        rest = escape.get(1..).unwrap_or_default();
    }
    false
}

/// The `{id}` of a path. Anything that is not a UUID names nothing: 404.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("resource"))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::not_found(format!("id {raw}")))
    }
}

/// A query string; unknown or malformed parameters answer 400.
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(t)| Query(t))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// For PATCH fields where absent means "keep" and `null` means "clear": use with
/// `#[serde(default, deserialize_with = "double_option")]` on an `Option<Option<T>>`.
pub(crate) fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "double_option")]
        note: Option<Option<String>>,
    }

    #[test]
    fn bodies() {
        assert!(matches!(parse_body::<Body>(b"{}"), Ok(Body { note: None })));
        assert!(matches!(
            parse_body::<Body>(br#"{"note": null}"#),
            Ok(Body { note: Some(None) })
        ));
        assert!(matches!(
            parse_body::<Body>(br#"{"note": "x"}"#),
            Ok(Body {
                note: Some(Some(_))
            })
        ));
        let status = |r: ApiResult<Body>| r.err().map(|e| e.status());
        assert_eq!(status(parse_body(b"")), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(parse_body(b" \n")), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(parse_body(b"{")),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            status(parse_body(br#"{"x": 1}"#)),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
    }

    #[test]
    fn a_nul_in_any_string_is_refused() {
        let status = |r: ApiResult<Body>| r.err().map(|e| e.status());
        for body in [
            &br#"{"note": "a\u0000b"}"#[..],
            br#"{"note": "\u0000"}"#,
            // After an escaped backslash, an escaped NUL.
            br#"{"note": "\\\u0000"}"#,
        ] {
            assert_eq!(
                status(parse_body(body)),
                Some(StatusCode::UNPROCESSABLE_ENTITY),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An escaped backslash followed by the text `u0000`, and other escapes: no NUL.
        for body in [
            &br#"{"note": "\\u0000"}"#[..],
            br#"{"note": "\u0001 \n \"u0000\" \\"}"#,
            br#"{"note": "\u00e9 \ud83d\ude00"}"#,
        ] {
            let parsed = parse_body::<Body>(body);
            assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(body));
        }
    }
}
