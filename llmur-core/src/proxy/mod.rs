//! The proxy service: `/v1` requests in, upstream answers out.
//!
//! Owns: [`Proxy`] (a `tower::Service` whose error type is `Infallible`: every failure is
//! turned into an OpenAI-shaped response here, in one place), its [`ProxyBuilder`], and
//! [`ProxyLayer`] for mounting it in front of another service. The stages run in the order
//! the crate docs list; see [`Proxy::handle`].

mod body;
mod client;
mod early;
mod forward;
pub mod headers;
mod layer;
mod limits;
mod pool;
mod read;
mod stream;
mod urls;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body::Body;

pub use body::ProxyBody;
pub use layer::{ProxyLayer, ProxyService};
pub use limits::DEFAULT_COMPLETION_TOKENS;

use crate::catalog::Catalog;
use crate::counter::{MemoryCounter, UsageCounter};
use crate::error::{Error, ErrorKind};
use crate::model::VirtualKey;
use crate::request::RequestBody;
use crate::usage::{Clock, Endpoint, SystemClock, UsageSink};
use client::HttpClient;
use forward::Upstream;
use limits::Limiter;
use read::read_body;

/// A boxed error, as bodies and services exchange them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The default request body limit: 32 MiB (room for base64 images).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The OpenAI-compatible proxy as a `tower::Service`. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    catalog: Arc<dyn Catalog>,
    sink: Arc<dyn UsageSink>,
    clock: Arc<dyn Clock>,
    upstream: Upstream,
    limiter: Limiter,
    overhead: Arc<crate::metrics::Histogram>,
    early: Arc<crate::metrics::EarlyForwards>,
    max_body_bytes: usize,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("catalog", &self.shared.catalog)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("timeout", &self.shared.upstream.timeout)
            .finish_non_exhaustive()
    }
}

/// Assembles a [`Proxy`].
#[must_use]
pub struct ProxyBuilder {
    catalog: Arc<dyn Catalog>,
    sink: Arc<dyn UsageSink>,
    clock: Arc<dyn Clock>,
    counter: Arc<dyn UsageCounter>,
    completion_default: u64,
    early_headroom: Option<f64>,
    max_body_bytes: usize,
    connect_timeout: Duration,
    timeout: Duration,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("catalog", &self.catalog)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// Where one [`RequestLog`](crate::RequestLog) per attempt goes (default: nowhere).
    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = sink;
        self
    }

    /// The wall clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The usage counter that enforces limits (default: a [`MemoryCounter`], exact within
    /// this process). Wrap a shared counter in a
    /// [`FailoverCounter`](crate::counter::FailoverCounter) for timeouts and a fallback.
    pub fn usage_counter(mut self, counter: Arc<dyn UsageCounter>) -> Self {
        self.counter = counter;
        self
    }

    /// Completion tokens reserved against token and budget limits for a chat request
    /// without `max_tokens`/`max_completion_tokens` (default
    /// [`DEFAULT_COMPLETION_TOKENS`]); the settle corrects it to the real count.
    pub fn default_completion_tokens(mut self, tokens: u64) -> Self {
        self.completion_default = tokens;
        self
    }

    /// Early forwarding (default off): a request whose every limit had, at the counter's
    /// last answer (at most a second ago), at least `headroom` of its room left — beyond
    /// what this proxy has sent early since — is sent upstream while the counter decides,
    /// instead of after. The counter still admits or refuses every request exactly; a
    /// refused one's upstream call is dropped before any of its answer reaches the client
    /// (see [`Proxy::early_forwards`]), but the upstream may have begun, and billed, the
    /// work. It saves a shared counter's round trip (Redis) on the time to first byte.
    /// `headroom` is a share of each limit, clamped to `0.0..=1.0` (NaN: off).
    pub fn early_forwarding(mut self, headroom: f64) -> Self {
        self.early_headroom = (!headroom.is_nan()).then(|| headroom.clamp(0.0, 1.0));
        self
    }

    /// The largest accepted request body; larger ones get 413 (default 32 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long connecting to an upstream may take before the next connection is tried
    /// (default 10 s). Ignored when [`http_client`](Self::http_client) is set.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an upstream may take to send its response head — and, for a non-streamed
    /// answer, its whole body — before the client gets 504 (default 600 s).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this reqwest client for every upstream instead of llmur's own.
    ///
    /// llmur's own client is hyper's pooled client over rustls, with the platform's
    /// certificate verifier and HTTP/2 where the upstream offers it. It does not follow
    /// redirects. When `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` is set, llmur builds a
    /// reqwest client instead, which honours them (and `NO_PROXY`). Give a client here
    /// for anything else reqwest offers: extra root certificates, client certificates,
    /// proxies set in code. It costs more per request than llmur's own (about 35,000
    /// instructions, its URL handling and its layers).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The proxy. Fails only if the HTTP client cannot be built.
    pub fn build(self) -> Result<Proxy, Error> {
        let own_client = self.client.is_none();
        let client = match self.client {
            Some(client) => HttpClient::reqwest(client),
            None => HttpClient::build(self.connect_timeout)?,
        };
        Ok(Proxy {
            shared: Arc::new(Shared {
                catalog: self.catalog,
                sink: self.sink,
                clock: self.clock,
                upstream: Upstream {
                    client,
                    own_client,
                    connect_timeout: self.connect_timeout,
                    timeout: self.timeout,
                },
                limiter: Limiter {
                    counter: self.counter,
                    completion_default: self.completion_default,
                    early_headroom: self.early_headroom,
                },
                overhead: Arc::new(crate::metrics::Histogram::new()),
                early: Arc::default(),
                max_body_bytes: self.max_body_bytes,
            }),
        })
    }
}

enum Route {
    Forward(Endpoint),
    Models,
}

impl Proxy {
    /// Starts a builder over `catalog`.
    pub fn builder(catalog: Arc<dyn Catalog>) -> ProxyBuilder {
        ProxyBuilder {
            catalog,
            sink: Arc::new(()),
            clock: Arc::new(SystemClock),
            counter: Arc::new(MemoryCounter::new()),
            completion_default: limits::DEFAULT_COMPLETION_TOKENS,
            early_headroom: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            client: None,
        }
    }

    /// Time spent in llmur per request, excluding the wait for upstreams (also sent to the
    /// client as `x-llmur-overhead-ms`).
    pub fn overhead(&self) -> &crate::metrics::Histogram {
        &self.shared.overhead
    }

    /// How many requests went upstream early, and how many of those the counter then
    /// refused (see [`ProxyBuilder::early_forwarding`]).
    pub fn early_forwards(&self) -> &crate::metrics::EarlyForwards {
        &self.shared.early
    }

    /// A proxy that shares everything with this one — catalog, counter, usage sink,
    /// metrics — except the upstream connection pool: it gets a new HTTP client built like
    /// this one's. A thread-per-core server forks one per core so that upstream
    /// connections stay on the thread (and runtime) that uses them. A client given with
    /// [`ProxyBuilder::http_client`] is shared, not rebuilt.
    pub fn fork(&self) -> Result<Proxy, Error> {
        let mut shared = Shared::clone(&self.shared);
        if shared.upstream.own_client {
            shared.upstream.client = HttpClient::build(shared.upstream.connect_timeout)?;
        }
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }

    /// A layer that sends `/v1/*` to this proxy and everything else to the inner service.
    pub fn layer(&self) -> ProxyLayer {
        ProxyLayer::new(self.clone())
    }

    /// Handles one request. The stages, in order: request id → route (path and method) →
    /// authenticate (virtual key) → read the body (size limit) → parse (once) → resolve the
    /// deployment → forward (connections in round-robin order) → relay the answer. Every
    /// error becomes an OpenAI-shaped response; the response always has `x-request-id`.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let started = std::time::Instant::now();
        let upstream_nanos = std::sync::atomic::AtomicU64::new(0);
        let request_id = headers::request_id(request.headers());
        let mut response = match self.dispatch(request, &request_id, &upstream_nanos).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(error = %error, status = %error.status(), "request refused");
                error.to_response().map(ProxyBody::full)
            }
        };
        let upstream = Duration::from_nanos(upstream_nanos.into_inner());
        let overhead = started.elapsed().saturating_sub(upstream);
        self.shared.overhead.record(overhead);
        let response_headers = response.headers_mut();
        response_headers.insert(headers::REQUEST_ID.clone(), request_id);
        response_headers.insert(headers::OVERHEAD_MS.clone(), overhead_value(overhead));
        response
    }

    async fn dispatch<B>(
        &self,
        request: Request<B>,
        request_id: &HeaderValue,
        upstream_nanos: &std::sync::atomic::AtomicU64,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let shared = &*self.shared;
        let route = route(request.method(), request.uri().path())?;
        let key = authenticate(shared.catalog.as_ref(), request.headers())?;
        let endpoint = match route {
            Route::Models => return Ok(models(shared.catalog.as_ref(), &key)),
            Route::Forward(endpoint) => endpoint,
        };
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body, shared.max_body_bytes).await?;
        let parsed = RequestBody::from_bytes(bytes)?;
        let deployment = shared.catalog.route(&key, parsed.model())?;
        let forwarded = headers::upstream_headers(&parts.headers);
        let cx = forward::Context {
            upstream: &shared.upstream,
            sink: &shared.sink,
            clock: &shared.clock,
            limiter: &shared.limiter,
            early: &shared.early,
            upstream_nanos,
            request_id,
            key: &key,
            endpoint,
        };
        forward::forward(&cx, &deployment, &parsed, &forwarded).await
    }
}

/// Milliseconds with microsecond precision (`0.142`).
/// Written backwards into a stack buffer: `format!` cost about five times as much, on
/// every response.
fn overhead_value(d: Duration) -> HeaderValue {
    // u128::MAX has 39 digits; with the point and three decimals, 43 bytes.
    let mut buf = [0u8; 48];
    let mut at = buf.len();
    let mut put = |byte: u8| {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = byte;
        }
    };
    let micros = d.as_micros();
    let (mut millis, mut fraction) = (micros / 1_000, micros % 1_000);
    for _ in 0..3 {
        put(b'0' + (fraction % 10) as u8);
        fraction /= 10;
    }
    put(b'.');
    loop {
        put(b'0' + (millis % 10) as u8);
        millis /= 10;
        if millis == 0 {
            break;
        }
    }
    buf.get(at..)
        .and_then(|text| HeaderValue::from_bytes(text).ok())
        .unwrap_or_else(|| HeaderValue::from_static("0"))
}

fn route(method: &Method, path: &str) -> Result<Route, Error> {
    let (route, allowed) = match path.trim_end_matches('/') {
        "/v1/chat/completions" => (Route::Forward(Endpoint::ChatCompletions), Method::POST),
        "/v1/embeddings" => (Route::Forward(Endpoint::Embeddings), Method::POST),
        "/v1/models" => (Route::Models, Method::GET),
        _ => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("Invalid URL ({method} {path})"),
            )
            .with_code("unknown_url"));
        }
    };
    if *method != allowed {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not allowed on {path}; use {allowed}"),
        )
        .with_code("method_not_allowed"));
    }
    Ok(route)
}

fn authenticate(catalog: &dyn Catalog, headers: &HeaderMap) -> Result<Arc<VirtualKey>, Error> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(presented) = presented else {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
        )
        .with_code("missing_api_key"));
    };
    match catalog.authenticate(presented) {
        Some(key) if !key.blocked => Ok(key),
        Some(_) => Err(
            Error::new(ErrorKind::Unauthorized, "This API key is blocked.")
                .with_code("api_key_blocked"),
        ),
        None => Err(
            Error::new(ErrorKind::Unauthorized, "Incorrect API key provided.")
                .with_code("invalid_api_key"),
        ),
    }
}

fn models(catalog: &dyn Catalog, key: &VirtualKey) -> Response<ProxyBody> {
    let data: Vec<_> = catalog
        .models(key)
        .iter()
        .map(|d| {
            serde_json::json!({"id": &*d.name, "object": "model", "created": 0, "owned_by": "llmur"})
        })
        .collect();
    let body = serde_json::json!({"object": "list", "data": data}).to_string();
    let mut response = Response::new(ProxyBody::full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl<B> tower::Service<Request<B>> for Proxy
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{KeyHasher, MemoryCatalog, Snapshot};

    #[test]
    fn a_fork_shares_everything_but_the_upstream_pool() {
        let catalog = Arc::new(MemoryCatalog::new(
            KeyHasher::new(&secrecy::SecretString::from("fork-test-secret")),
            Snapshot::new(),
        ));
        let proxy = Proxy::builder(catalog).build().unwrap();
        let fork = proxy.fork().unwrap();
        assert!(Arc::ptr_eq(&proxy.shared.overhead, &fork.shared.overhead));
        assert!(Arc::ptr_eq(&proxy.shared.early, &fork.shared.early));
        assert!(Arc::ptr_eq(&proxy.shared.catalog, &fork.shared.catalog));
        assert!(Arc::ptr_eq(
            &proxy.shared.limiter.counter,
            &fork.shared.limiter.counter
        ));
        assert!(Arc::ptr_eq(&proxy.shared.sink, &fork.shared.sink));
        assert!(fork.shared.upstream.own_client);
        fork.overhead().record(Duration::from_micros(70));
        assert_eq!(proxy.overhead().snapshot().count, 1);
    }

    #[test]
    fn the_overhead_header_is_milliseconds_with_three_decimals() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (142, "0.142"),
            (1_000, "1.000"),
            (12_345, "12.345"),
            (3_600_000_001, "3600000.001"),
        ] {
            let value = overhead_value(Duration::from_micros(micros));
            assert_eq!(value.to_str().unwrap(), text, "{micros} µs");
        }
        let max = overhead_value(Duration::MAX);
        assert_eq!(
            max.to_str().unwrap(),
            format!(
                "{}.{:03}",
                Duration::MAX.as_micros() / 1_000,
                Duration::MAX.as_micros() % 1_000
            )
        );
    }
}
