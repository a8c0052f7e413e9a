//! llmur's own pool of upstream connections, one list per upstream host, in place of
//! hyper-util's legacy client.
//!
//! Owns: [`Pool`] and [`PooledBody`]: connecting (hyper-rustls: TLS with HTTP/2 by ALPN,
//! or plain TCP), keeping HTTP/1.1 connections idle between requests and one HTTP/2
//! connection per host, and giving an HTTP/1.1 connection back once its response body has
//! ended. Must not touch: what is sent (the providers encode it) or how failures read (the
//! client module maps them).
//!
//! Why not hyper-util's legacy client: its pool hashes every request's scheme and host
//! with SipHash, a byte at a time, three times a request, and spawns a task per request to
//! hand the connection back: about 5,000 instructions a request (sixteenth round of
//! `benches/HISTORY.md`). Here the hosts are hashed with Fx (nothing a client sends picks
//! them: they are the catalog's upstream URLs) once per request and the connection goes
//! back when the body ends. What the legacy client did that matters is kept: a pooled
//! connection that turns out closed before the request was written gives the request
//! back, and it goes out on the next connection; idle connections are dropped after
//! [`IDLE`], by the next request to their host or else by a sweep every [`SWEEP`] (so a
//! host no longer used does not keep its connections open); `Host` is set on HTTP/1.1
//! requests (not on HTTP/2, which carries the authority in the request's URI).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustc_hash::FxHashMap;
use tower::ServiceExt as _;

/// The connector: TLS (HTTP/2 or HTTP/1.1 by ALPN) for `https`, plain TCP for `http`.
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Idle upstream connections are closed after this long.
pub(crate) const IDLE: Duration = Duration::from_secs(90);
/// At most this many idle HTTP/1.1 connections are kept per upstream host.
pub(crate) const MAX_IDLE_PER_HOST: usize = 256;
/// How often a background task drops the connections idle past [`IDLE`] (and closed ones)
/// from every host; it runs from the pool's first connection until the pool is dropped.
pub(crate) const SWEEP: Duration = Duration::from_secs(30);

type Key = (Scheme, Authority);
type Sender1 = http1::SendRequest<Full<Bytes>>;
type Sender2 = http2::SendRequest<Full<Bytes>>;
/// A failure's cause, for the client module to word.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The upstream could not be reached (nothing was sent).
    Connect(Cause),
    /// The connection failed once the request was on its way.
    Send(Cause),
}

/// Upstream connections by host; cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    hosts: Mutex<FxHashMap<Key, Host>>,
    /// Starts the sweeping task, once, with the first connection.
    sweeper: Once,
}

struct Host {
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Vec<(Sender1, Instant)>,
    /// The host's HTTP/2 connection, shared by every request.
    h2: Option<Sender2>,
    /// The `Host` header of its HTTP/1.1 requests, written once.
    header: Option<HeaderValue>,
}

impl Host {
    /// The host, and the port unless it is the scheme's default, as hyper-util's client
    /// writes it.
    fn new((scheme, authority): &Key) -> Host {
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let header = match authority.port_u16() {
            Some(port) if port != default_port => {
                HeaderValue::from_str(&format!("{}:{port}", authority.host()))
            }
            _ => HeaderValue::from_str(authority.host()),
        };
        Host {
            idle: Vec::new(),
            h2: None,
            header: header.ok(),
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

enum Checked {
    H1(Sender1, Option<HeaderValue>),
    H2(Sender2),
}

impl Pool {
    /// An empty pool connecting through `connector`.
    pub(crate) fn new(connector: Connector) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                connector,
                hosts: Mutex::new(FxHashMap::default()),
                sweeper: Once::new(),
            }),
        }
    }

    /// Sends `request` (an absolute URI) on a pooled connection to its host, or a new one,
    /// and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<PooledBody>, Failure> {
        let uri = request.uri().clone();
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => (scheme.clone(), authority.clone()),
            _ => {
                return Err(Failure::Connect(
                    "the upstream URL has no scheme or host".into(),
                ));
            }
        };
        let had_host = request.headers().contains_key(http::header::HOST);
        let mut request = request.map(Full::new);
        while let Some(checked) = self.inner.checkout(&key) {
            let tried = match checked {
                Checked::H1(sender, host) => self.send_h1(sender, request, &key, host).await,
                Checked::H2(sender) => {
                    let tried = send_h2(sender, request).await;
                    if matches!(tried, Err(Tried::Unsent(_))) {
                        // Checked out again it would give the request back again.
                        self.inner.drop_h2(&key);
                    }
                    tried
                }
            };
            match tried {
                Ok(response) => return Ok(response),
                Err(Tried::Failed(failure)) => return Err(failure),
                // Closed before the request was written: the next connection takes it,
                // with its URI as given.
                Err(Tried::Unsent(mut back)) => {
                    *back.uri_mut() = uri.clone();
                    if !had_host {
                        back.headers_mut().remove(http::header::HOST);
                    }
                    request = back;
                }
            }
        }
        // Boxed: connecting is rare, and its futures (TLS, the handshakes) would make every
        // request's future larger, which each request then copies.
        Box::pin(self.send_new(request, uri, key)).await
    }

    /// Sends `request` on a new connection to its host, kept in the pool after.
    async fn send_new(
        &self,
        request: Request<Full<Bytes>>,
        uri: Uri,
        key: Key,
    ) -> Result<Response<PooledBody>, Failure> {
        self.inner.sweeper.call_once(|| {
            tokio::spawn(sweep_every(SWEEP, Arc::downgrade(&self.inner)));
        });
        let io = self
            .inner
            .connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(Failure::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| Failure::Connect(e.into()))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            self.inner.host(&key, |host| host.h2 = Some(sender.clone()));
            return send_h2(sender, request).await.map_err(Tried::into_failure);
        }
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| Failure::Connect(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        let host = self.inner.host(&key, |host| host.header.clone());
        self.send_h1(sender, request, &key, host)
            .await
            .map_err(Tried::into_failure)
    }

    async fn send_h1(
        &self,
        mut sender: Sender1,
        mut request: Request<Full<Bytes>>,
        key: &Key,
        host: Option<HeaderValue>,
    ) -> Result<Response<PooledBody>, Tried> {
        if sender.ready().await.is_err() {
            return Err(Tried::Unsent(request));
        }
        origin_form(&mut request, host);
        match sender.try_send_request(request).await {
            Ok(response) => {
                let back = Back {
                    pool: self.inner.clone(),
                    key: key.clone(),
                    sender,
                };
                Ok(response.map(|body| PooledBody::new(body, Some(back))))
            }
            Err(e) => Err(Tried::from(e)),
        }
    }
}

async fn send_h2(
    mut sender: Sender2,
    request: Request<Full<Bytes>>,
) -> Result<Response<PooledBody>, Tried> {
    if sender.ready().await.is_err() {
        return Err(Tried::Unsent(request));
    }
    sender
        .try_send_request(request)
        .await
        .map(|response| response.map(|body| PooledBody::new(body, None)))
        .map_err(Tried::from)
}

/// How a try on one connection ended without a response.
#[expect(
    clippy::large_enum_variant,
    reason = "returned beside a response head as large; boxing would allocate on a retry"
)]
enum Tried {
    /// Not written: the request, to send on another connection.
    Unsent(Request<Full<Bytes>>),
    Failed(Failure),
}

impl From<hyper::client::conn::TrySendError<Request<Full<Bytes>>>> for Tried {
    fn from(mut e: hyper::client::conn::TrySendError<Request<Full<Bytes>>>) -> Tried {
        match e.take_message() {
            Some(request) => Tried::Unsent(request),
            None => Tried::Failed(Failure::Send(e.into_error().into())),
        }
    }
}

impl Tried {
    /// On a new connection there is no other to try.
    fn into_failure(self) -> Failure {
        match self {
            Tried::Unsent(_) => Failure::Send("the new upstream connection closed".into()),
            Tried::Failed(failure) => failure,
        }
    }
}

/// An HTTP/1.1 request goes out in origin form (`/path?query`) with a `Host` header, as
/// hyper-util's client sends it. A `Host` already set is kept.
fn origin_form(request: &mut Request<Full<Bytes>>, host: Option<HeaderValue>) {
    if let Some(host) = host {
        request
            .headers_mut()
            .entry(http::header::HOST)
            .or_insert(host);
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, FxHashMap<Key, Host>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to `key`'s entry, made if there is none.
    fn host<T>(&self, key: &Key, f: impl FnOnce(&mut Host) -> T) -> T {
        let mut hosts = self.lock();
        if let Some(host) = hosts.get_mut(key) {
            return f(host);
        }
        f(hosts.entry(key.clone()).or_insert_with(|| Host::new(key)))
    }

    /// The host's HTTP/2 connection if open, else its most recently used idle HTTP/1.1
    /// connection that is open and not past [`IDLE`].
    fn checkout(&self, key: &Key) -> Option<Checked> {
        let mut hosts = self.lock();
        let host = hosts.get_mut(key)?;
        if let Some(h2) = &host.h2 {
            if !h2.is_closed() {
                return Some(Checked::H2(h2.clone()));
            }
            host.h2 = None;
        }
        let now = Instant::now();
        while let Some((sender, since)) = host.idle.pop() {
            if sender.is_closed() {
                continue;
            }
            if now.duration_since(since) >= IDLE {
                // The rest are older still.
                host.idle.clear();
                break;
            }
            return Some(Checked::H1(sender, host.header.clone()));
        }
        None
    }

    /// Forgets the host's HTTP/2 connection (the next request opens another).
    fn drop_h2(&self, key: &Key) {
        if let Some(host) = self.lock().get_mut(key) {
            host.h2 = None;
        }
    }

    /// Drops every connection idle past [`IDLE`] at `now` or closed, and the hosts left
    /// with none.
    fn sweep(&self, now: Instant) {
        self.lock().retain(|_, host| {
            host.idle
                .retain(|(sender, since)| !sender.is_closed() && now.duration_since(*since) < IDLE);
            if host.h2.as_ref().is_some_and(Sender2::is_closed) {
                host.h2 = None;
            }
            !host.idle.is_empty() || host.h2.is_some()
        });
    }

    fn put(&self, key: &Key, sender: Sender1) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        self.host(key, |host| {
            // The oldest first: those idle past `IDLE` go (and their connections close),
            // and one more if the list is full.
            let expired = host
                .idle
                .iter()
                .take_while(|(_, since)| now.duration_since(*since) >= IDLE)
                .count();
            let over = (host.idle.len() - expired + 1).saturating_sub(MAX_IDLE_PER_HOST);
            host.idle.drain(..expired + over);
            host.idle.push((sender, now));
        });
    }
}

/// Sweeps the pool every `period` until it is dropped.
async fn sweep_every(period: Duration, pool: Weak<Inner>) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        inner.sweep(Instant::now());
    }
}

/// An HTTP/1.1 connection to hand back once its response has been read to the end.
struct Back {
    pool: Arc<Inner>,
    key: Key,
    sender: Sender1,
}

/// An upstream response body; an HTTP/1.1 connection goes back to its pool when the body
/// has ended (a body dropped before its end closes the connection).
pub(crate) struct PooledBody {
    body: Incoming,
    back: Option<Back>,
}

impl PooledBody {
    fn new(body: Incoming, back: Option<Back>) -> PooledBody {
        let mut pooled = PooledBody { body, back };
        if pooled.body.is_end_stream() {
            pooled.give_back();
        }
        pooled
    }

    fn give_back(&mut self) {
        if let Some(back) = self.back.take() {
            back.pool.put(&back.key, back.sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// The upstream's body: more than one read.
    const BODY: usize = 200_000;

    /// A bare HTTP/1.1 upstream on a free port: answers `ok` to every request, records each
    /// request's line and `Host`, counts connections, and (with `close`) drops each
    /// connection right after its response, without saying so.
    struct Upstream {
        port: u16,
        accepted: Arc<AtomicUsize>,
        /// Connections llmur closed.
        closed: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<String>>>,
    }

    async fn upstream(close: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, ended, log) = (accepted.clone(), closed.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (log, ended) = (log.clone(), ended.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            ended.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + 4 + length {
                            let n = socket.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        buf.drain(..end + 4 + length);
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        let host = head
                            .lines()
                            .find_map(|l| l.strip_prefix("host: "))
                            .unwrap_or("-")
                            .to_owned();
                        log.lock().unwrap().push(format!("{line} | {host}"));
                        let body = "ok".repeat(BODY / 2);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        socket.write_all(response.as_bytes()).await.unwrap();
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            port,
            accepted,
            closed,
            seen,
        }
    }

    fn pool() -> Pool {
        super::super::client::hyper_client(Duration::from_secs(5)).unwrap()
    }

    fn request(port: u16) -> Request<Bytes> {
        let mut request = Request::new(Bytes::from_static(b"{}"));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = format!("http://127.0.0.1:{port}/v1/chat?x=1")
            .parse()
            .unwrap();
        request
    }

    async fn read_all(response: Response<PooledBody>) -> usize {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    }

    #[tokio::test]
    async fn one_connection_serves_requests_in_turn_in_origin_form_with_host() {
        let up = upstream(false).await;
        let pool = pool();
        for _ in 0..5 {
            let response = pool.send(request(up.port)).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(read_all(response).await, BODY);
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "reused");
        let seen = up.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        let expected = format!("POST /v1/chat?x=1 HTTP/1.1 | 127.0.0.1:{}", up.port);
        assert!(seen.iter().all(|s| *s == expected), "{seen:?}");
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_them() {
        let up = upstream(false).await;
        let pool = pool();
        let first: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| pool.send(request(up.port)))).await;
        for response in first {
            read_all(response.unwrap()).await;
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
        let again: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| pool.send(request(up.port)))).await;
        for response in again {
            read_all(response.unwrap()).await;
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "all three reused");
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        let up = upstream(true).await;
        let pool = pool();
        for _ in 0..3 {
            let response = pool.send(request(up.port)).await.unwrap();
            assert_eq!(read_all(response).await, BODY);
            // Time for the connection's task to see the close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_go_back() {
        let up = upstream(false).await;
        let pool = pool();
        let mut response = pool.send(request(up.port)).await.unwrap();
        // One frame, then the body is dropped unread.
        let _ = response.body_mut().frame().await;
        drop(response);
        let response = pool.send(request(up.port)).await.unwrap();
        assert_eq!(read_all(response).await, BODY);
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_connect_failure() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let failure = pool().send(request(port)).await.err().unwrap();
        assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_idle_too_long_and_forgets_their_host() {
        let up = upstream(false).await;
        let pool = pool();
        read_all(pool.send(request(up.port)).await.unwrap()).await;
        pool.inner.sweep(Instant::now());
        assert_eq!(pool.inner.lock().len(), 1, "a fresh connection stays");
        pool.inner.sweep(Instant::now() + IDLE);
        assert!(
            pool.inner.lock().is_empty(),
            "an expired one goes, and its host"
        );
        for _ in 0..100 {
            if up.closed.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            up.closed.load(Ordering::SeqCst),
            1,
            "the upstream saw it close"
        );
        // The host comes back with the next request.
        read_all(pool.send(request(up.port)).await.unwrap()).await;
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.inner.lock().len(), 1);
    }

    #[tokio::test]
    async fn the_sweeping_task_ends_with_its_pool() {
        let pool = pool();
        let weak = Arc::downgrade(&pool.inner);
        let sweeping = tokio::spawn(sweep_every(Duration::from_millis(10), weak));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sweeping.is_finished());
        drop(pool);
        tokio::time::timeout(Duration::from_secs(5), sweeping)
            .await
            .expect("ended")
            .unwrap();
    }

    #[test]
    fn host_headers_leave_out_default_ports() {
        let host = |uri: &str| {
            let uri: Uri = uri.parse().unwrap();
            let key = (
                uri.scheme().unwrap().clone(),
                uri.authority().unwrap().clone(),
            );
            Host::new(&key).header.unwrap()
        };
        assert_eq!(host("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(
            host("https://x.openai.azure.com:443/"),
            "x.openai.azure.com"
        );
        assert_eq!(host("https://x.example:8443/"), "x.example:8443");
        assert_eq!(host("http://h:80/"), "h");
        assert_eq!(host("http://h:443/"), "h:443");
        assert_eq!(host("http://user:pw@h:8080/"), "h:8080");
        assert_eq!(host("http://[::1]:8080/"), "[::1]:8080");
    }
}
