//! The mock HTTP server: listener, connections and shared state.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::record::RecordedRequest;
use crate::script::Script;
use crate::sse::StreamCounters;

/// Which provider's API the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI (`/v1/...`, `Authorization: Bearer`).
    OpenAi,
    /// Azure OpenAI (`/openai/deployments/{name}/...?api-version=` and `/openai/v1/...`,
    /// `api-key` header).
    Azure,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
        })
    }
}

/// State shared between the [`MockServer`] handle and the request handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub flavor: Flavor,
    api_key: Mutex<Option<String>>,
    default_script: Mutex<Script>,
    queue: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<RecordedRequest>>,
    recording: AtomicBool,
    pub counters: Arc<StreamCounters>,
    completion_ids: AtomicU64,
    request_ids: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(flavor: Flavor) -> Self {
        Self {
            flavor,
            api_key: Mutex::new(None),
            default_script: Mutex::new(Script::new()),
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            counters: Arc::new(StreamCounters::default()),
            completion_ids: AtomicU64::new(1),
            request_ids: AtomicU64::new(1),
        }
    }

    pub(crate) fn api_key(&self) -> Option<String> {
        lock(&self.api_key).clone()
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.requests).push(req);
        }
    }

    /// The next one-shot script, or the default one.
    pub(crate) fn next_script(&self) -> Script {
        if let Some(s) = lock(&self.queue).pop_front() {
            return s;
        }
        lock(&self.default_script).clone()
    }

    /// The next completion number (`chatcmpl-mockN`, N = 1, 2, ...).
    pub(crate) fn next_completion_id(&self) -> u64 {
        self.completion_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// The next request number (`x-request-id: req_mockN`).
    pub(crate) fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// A mock OpenAI / Azure OpenAI server running in a tokio task.
///
/// Dropping the handle stops the server: the listener is closed and open connections are
/// dropped (which counts still-running streams as cancelled).
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and serves in a tokio task until dropped.
    pub async fn start(flavor: Flavor) -> std::io::Result<MockServer> {
        Self::start_on(flavor, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` and serves in a tokio task until dropped.
    pub async fn start_on(flavor: Flavor, addr: SocketAddr) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(flavor));
        let (shutdown, rx) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), rx));
        Ok(MockServer {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// Stops the server and waits for the listener task to finish.
    pub async fn shutdown(self) {
        let MockServer { shutdown, task, .. } = self;
        drop(shutdown);
        if let Err(e) = task.await {
            tracing::debug!(error = %e, "mock accept loop ended abnormally");
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which API this server imitates.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// `http://HOST:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, requests lacking this key get 401 in the provider's error shape.
    /// OpenAI checks `Authorization: Bearer KEY`, Azure checks the `api-key` header.
    pub fn require_api_key(&self, key: &str) {
        *lock(&self.shared.api_key) = Some(key.to_owned());
    }

    /// Default behaviour for every following request.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.default_script) = script;
    }

    /// A one-shot script. Queued scripts are consumed in FIFO order, one per request that
    /// reaches an endpoint (valid route, valid key, well-formed JSON body), before falling
    /// back to the default script.
    pub fn push_script(&self, script: Script) {
        lock(&self.shared.queue).push_back(script);
    }

    /// Whether requests are recorded (the default). A long-running mock under load (a
    /// benchmark) turns it off so memory stays flat; [`MockServer::requests`] is then empty.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forgets all recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Streams whose body was dropped before the server wrote its last byte (the client
    /// went away). Scripted cuts are not counted.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.counters.cancelled.load(Ordering::SeqCst)
    }

    /// Streams whose body was written to the end.
    pub fn completed_streams(&self) -> usize {
        self.shared.counters.completed.load(Ordering::SeqCst)
    }

    /// Waits until [`MockServer::cancelled_streams`] reaches `n` or `timeout` passes;
    /// returns whether it was reached.
    pub async fn wait_cancelled_streams(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.counters.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.cancelled_streams() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.cancelled_streams() >= n;
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "mock server accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let shared = Arc::clone(&shared);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let service = service_fn(move |req| crate::handler::handle(Arc::clone(&shared), req));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "mock connection ended with an error");
                    }
                }
                _ = shutdown.changed() => {}
            }
        });
    }
}
