//! The upstream HTTP client: hyper's connections in llmur's pool by default, or a reqwest
//! client.
//!
//! Owns: [`HttpClient`] and [`UpstreamResponse`], and how their failures become llmur
//! errors. llmur's own client is hyper's HTTP/1.1 and HTTP/2 connections over rustls (the
//! platform's certificate verifier, HTTP/2 by ALPN), pooled in [`Pool`]: a provider's
//! `http::Request` goes out as it is,
//! with nothing printed and parsed again. reqwest costs about 35,000 more instructions
//! per request (two URL parses, its redirect and retry layers), so it is used only where
//! it does something llmur's client does not: when the embedder gives one
//! ([`ProxyBuilder::http_client`](super::ProxyBuilder::http_client)), and when the
//! environment names a proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`), which reqwest
//! honours.
//! Must not touch: what is sent (the providers encode it) or how answers are read (the
//! forwarder).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyDataStream, BodyExt};
use hyper_util::client::legacy::connect::HttpConnector;

use super::pool::{Failure, Pool, PooledBody};
use super::urls::UrlCache;
use crate::error::{Error, ErrorKind};

/// An upstream body, chunk by chunk, as it arrives.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// The environment variables through which reqwest (and curl) take a proxy.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The client that sends upstream calls.
#[derive(Clone)]
pub(crate) enum HttpClient {
    /// llmur's own: hyper's connections in llmur's pool.
    Hyper(Pool),
    /// A reqwest client, with its upstream URLs parsed once.
    Reqwest(reqwest::Client, Arc<UrlCache>),
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpClient::Hyper(_) => "HttpClient::Hyper",
            HttpClient::Reqwest(..) => "HttpClient::Reqwest",
        })
    }
}

impl HttpClient {
    /// llmur's own client, or reqwest's when the environment names a proxy.
    pub(crate) fn build(connect_timeout: Duration) -> Result<HttpClient, Error> {
        if names_a_proxy(|name| std::env::var_os(name)) {
            return reqwest_client(connect_timeout)
                .map(|client| HttpClient::Reqwest(client, Arc::default()));
        }
        hyper_client(connect_timeout).map(HttpClient::Hyper)
    }

    /// A reqwest client given by the embedder.
    pub(crate) fn reqwest(client: reqwest::Client) -> HttpClient {
        HttpClient::Reqwest(client, Arc::default())
    }

    /// Sends `request` (an absolute URI) and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<UpstreamResponse, Error> {
        match self {
            HttpClient::Hyper(pool) => {
                let response = pool.send(request).await.map_err(|failure| match failure {
                    Failure::Connect(cause) => transport_error(true, &*cause),
                    Failure::Send(cause) => transport_error(false, &*cause),
                })?;
                let (parts, body) = response.into_parts();
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Body::Hyper(body),
                })
            }
            HttpClient::Reqwest(client, urls) => {
                let request = reqwest_request(urls, request)?;
                let mut response = client.execute(request).await.map_err(reqwest_error)?;
                Ok(UpstreamResponse {
                    status: response.status(),
                    headers: std::mem::take(response.headers_mut()),
                    body: Body::Reqwest(response),
                })
            }
        }
    }
}

/// An upstream's response head, its body still to come.
pub(crate) struct UpstreamResponse {
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers, as the upstream sent them.
    pub(crate) headers: HeaderMap,
    body: Body,
}

enum Body {
    Hyper(PooledBody),
    Reqwest(reqwest::Response),
}

impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl UpstreamResponse {
    /// The whole body.
    pub(crate) async fn bytes(self) -> Result<Bytes, Error> {
        match self.body {
            Body::Hyper(body) => body
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| transport_error(false, &e)),
            Body::Reqwest(response) => response.bytes().await.map_err(reqwest_error),
        }
    }

    /// The body chunk by chunk, as each arrives.
    pub(crate) fn into_stream(self) -> ByteStream {
        match self.body {
            Body::Hyper(body) => {
                Box::pin(BodyDataStream::new(body).map_err(|e| transport_error(false, &e)))
            }
            Body::Reqwest(response) => Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(reqwest_error)),
            ),
        }
    }
}

/// Whether an environment (`var`) names a proxy for upstream calls.
fn names_a_proxy(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

pub(super) fn hyper_client(connect_timeout: Duration) -> Result<Pool, Error> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = tls_config().map_err(|e| {
        Error::new(ErrorKind::Internal, "could not set up TLS for upstreams").with_source(e)
    })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Pool::new(https))
}

/// rustls with the platform's certificate verifier, as reqwest sets it up: the process's
/// default crypto provider if one was installed, else aws-lc-rs.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth())
}

fn reqwest_client(connect_timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(super::pool::IDLE)
        .pool_max_idle_per_host(super::pool::MAX_IDLE_PER_HOST)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "could not build the HTTP client").with_source(e)
        })
}

/// `request` as reqwest's, with its URL from the cache: what `reqwest::Request::try_from`
/// gives, without printing and parsing the URI again.
fn reqwest_request(
    urls: &UrlCache,
    request: http::Request<Bytes>,
) -> Result<reqwest::Request, Error> {
    let (parts, body) = request.into_parts();
    let url = match urls.get(&parts.uri) {
        // reqwest's request has no public way to take extensions; a request with some
        // (none of llmur's providers sets any) goes the long way and keeps them.
        Some(url) if parts.extensions.is_empty() => url,
        _ => {
            return reqwest::Request::try_from(http::Request::from_parts(parts, body)).map_err(
                |e| {
                    Error::new(ErrorKind::Internal, "could not build the upstream request")
                        .with_source(e)
                },
            );
        }
    };
    let mut out = reqwest::Request::new(parts.method, url);
    *out.headers_mut() = parts.headers;
    *out.version_mut() = parts.version;
    *out.body_mut() = Some(body.into());
    Ok(out)
}

/// The upstream did not answer within the time allowed: 504, not retried.
pub(crate) fn timeout_error() -> Error {
    Error::new(
        ErrorKind::UpstreamTimeout,
        "the upstream did not answer in time",
    )
    .with_code("upstream_timeout")
}

fn reqwest_error(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return timeout_error().with_source(e);
    }
    let connect = e.is_connect();
    transport_error(connect, &e)
}

/// A failure to reach the upstream (`connect`) or of the connection afterwards; a connect
/// that timed out is a timeout. The message carries the whole chain of causes (hyper's
/// own message is only the outermost, e.g. "client error (Connect)").
fn transport_error(connect: bool, e: &(dyn std::error::Error + 'static)) -> Error {
    let mut causes = e.to_string();
    let mut timed_out = false;
    let mut source = e.source();
    while let Some(cause) = source {
        timed_out |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        source = cause.source();
    }
    let cause = Cause(causes);
    if timed_out {
        return timeout_error().with_source(cause);
    }
    let message = if connect {
        "the upstream could not be reached"
    } else {
        "the upstream connection failed"
    };
    Error::new(ErrorKind::UpstreamUnreachable, message)
        .with_code("upstream_unreachable")
        .with_source(cause)
}

/// A transport failure's chain of causes, as text.
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_not_retryable() {
        let e = timeout_error();
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_proxy_in_the_environment_is_left_to_reqwest() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(!names_a_proxy(env(&[])));
        assert!(!names_a_proxy(env(&[
            ("HTTPS_PROXY", ""),
            ("NO_PROXY", "*")
        ])));
        for name in PROXY_VARIABLES {
            let set: &'static [(&'static str, &'static str)] = match name {
                "HTTPS_PROXY" => &[("HTTPS_PROXY", "http://proxy:3128")],
                "https_proxy" => &[("https_proxy", "http://proxy:3128")],
                "HTTP_PROXY" => &[("HTTP_PROXY", "http://proxy:3128")],
                "http_proxy" => &[("http_proxy", "http://proxy:3128")],
                "ALL_PROXY" => &[("ALL_PROXY", "socks5://proxy:1080")],
                _ => &[("all_proxy", "socks5://proxy:1080")],
            };
            assert!(names_a_proxy(env(set)), "{name}");
        }
    }

    /// llmur's own client speaks TLS to `https://` upstreams and offers HTTP/2 and
    /// HTTP/1.1 by ALPN; a handshake that fails is an unreachable upstream (502, the next
    /// connection is tried).
    #[tokio::test]
    async fn https_upstreams_get_tls_with_h2_and_http1_offered() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hello = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        });
        let client = HttpClient::Hyper(hyper_client(Duration::from_secs(5)).unwrap());
        let request = http::Request::post(format!("https://127.0.0.1:{port}/v1/chat/completions"))
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let e = client.send(request).await.unwrap_err();
        let hello = hello.await.unwrap();
        assert_eq!(&hello[..2], &[0x16, 0x03], "a TLS handshake record");
        let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\x02h2"), "ALPN offers h2");
        assert!(has(b"\x08http/1.1"), "ALPN offers http/1.1");
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY, "{e}");
        assert!(e.is_retryable(), "{e}");
    }

    #[test]
    fn a_timed_out_cause_anywhere_in_the_chain_is_a_timeout() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        let e = transport_error(true, &timed_out);
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(e.to_string().contains("connect timeout"), "{e}");

        let refused = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        let e = transport_error(true, &refused);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .ends_with("client error (Connect): connection refused"),
            "{e}"
        );
    }
}
