//! Reading a request body whole, under a size limit.
//!
//! Owns: [`read_body`]. It stops as soon as the body says it has ended
//! ([`Body::is_end_stream`]), without waiting for the end-of-stream frame: hyper's HTTP/1
//! body knows it is complete once `Content-Length` bytes have arrived, and waiting for the
//! end frame as well costs the connection task an extra wake-up (a reschedule that, on the
//! multi-threaded runtime, also wakes an idle worker) on every request.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::Body;
use http_body_util::BodyExt;

use super::BoxError;
use crate::error::{Error, ErrorKind};

/// Reads `body` whole. Refuses it (413 `request_too_large`) when `Content-Length` or the
/// bytes received exceed `limit`; a body that fails mid-way is a 400.
pub(super) async fn read_body<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut body = std::pin::pin!(body);
    // One data frame (the usual case for small bodies) is kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while !body.is_end_stream() {
        let Some(frame) = body.as_mut().frame().await else {
            break;
        };
        let frame = frame.map_err(|e| {
            let e: BoxError = e.into();
            Error::new(
                ErrorKind::BadRequest,
                format!("could not read the request body: {e}"),
            )
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: nothing of the JSON body
        };
        let chunk = data.copy_to_bytes(data.remaining());
        total += chunk.len();
        if total > limit {
            return Err(too_large(limit));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let capacity = declared.map_or(total, |n| n as usize).max(total);
                let mut joined = BytesMut::with_capacity(capacity);
                joined.extend_from_slice(head);
                joined.extend_from_slice(&chunk);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(only), None) => only,
        (None, None) => Bytes::new(),
    })
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
    .with_code("request_too_large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn length(n: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, n.into());
        headers
    }

    #[tokio::test]
    async fn joins_chunks_and_keeps_a_single_one_as_is() {
        let whole = read_body(&HeaderMap::new(), chunks(&[b"ab", b"cd", b"e"]), 10)
            .await
            .unwrap();
        assert_eq!(&whole[..], b"abcde");
        let one = read_body(&length(3), Full::new(Bytes::from_static(b"xyz")), 10)
            .await
            .unwrap();
        assert_eq!(&one[..], b"xyz");
        let empty = read_body(&HeaderMap::new(), chunks(&[]), 10).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit_declared_or_received() {
        let declared = read_body(&length(11), chunks(&[b"x"]), 10)
            .await
            .unwrap_err();
        assert_eq!(declared.kind(), ErrorKind::PayloadTooLarge);
        let received = read_body(&HeaderMap::new(), chunks(&[b"123456", b"78901"]), 10)
            .await
            .unwrap_err();
        assert_eq!(received.kind(), ErrorKind::PayloadTooLarge);
        assert_eq!(received.code(), Some("request_too_large"));
    }

    #[tokio::test]
    async fn a_failing_body_is_a_bad_request() {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"{"))),
            Err(std::io::Error::other("connection reset")),
        ];
        let e = read_body(
            &HeaderMap::new(),
            StreamBody::new(futures_util::stream::iter(frames)),
            10,
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert!(e.to_string().contains("connection reset"), "{e}");
    }
}
