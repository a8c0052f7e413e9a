//! Connection workers: one thread per core, each running its own current-thread runtime.
//!
//! Owns: [`Workers`]. The listener (on the caller's runtime) hands every accepted
//! connection to the worker serving the fewest connections; the connection then lives on
//! that thread for good, with a service of the worker's own (see
//! [`Proxy::fork`](llmur_core::Proxy::fork): its own upstream connection pool).
//!
//! Why: on tokio's multi-threaded scheduler a task that wakes itself — which a hyper
//! connection does on every request whose body the service reads, as a proxy must — is
//! rescheduled as a yield, and every yield wakes an idle worker thread to look for work.
//! At low and moderate load that is a futex wake-up and a context switch on another core
//! per request. A current-thread runtime has no other worker to wake: a request is served
//! start to finish on one thread, as the bare pass-through floor does.
//!
//! Must not touch: what the service does. Tasks a request spawns run on its worker; when
//! the server stops, a worker waits (briefly) for them after its connections have ended.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a stopping worker waits, after its last connection ended, for tasks its
/// requests spawned (batched counter writes, for one) before its runtime is dropped.
const TASK_DRAIN: Duration = Duration::from_millis(200);

/// The connection workers.
#[derive(Debug)]
pub(crate) struct Workers {
    workers: Vec<Worker>,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct Worker {
    connections: mpsc::UnboundedSender<std::net::TcpStream>,
    /// Connections this worker serves now.
    open: Arc<AtomicUsize>,
    done: oneshot::Receiver<()>,
}

impl Workers {
    /// Starts `n` (at least one) worker threads; worker `i` makes its service with
    /// `make(i)` on its own thread (so the per-core HTTP clients are built in parallel,
    /// not one after another at start-up). Returns once every worker is ready, or the first
    /// error. In-flight requests get `grace` to finish when [`stop`](Self::stop) is called.
    pub(crate) async fn start<S, B, F>(n: usize, grace: Duration, make: F) -> Result<Self, String>
    where
        F: Fn(usize) -> Result<S, String> + Send + Sync + 'static,
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let make = Arc::new(make);
        let (stop, _) = watch::channel(false);
        let mut workers = Vec::with_capacity(n.max(1));
        let mut ready = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (done_tx, done) = oneshot::channel();
            let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
            let open = Arc::new(AtomicUsize::new(0));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("llmur-worker-{i}"))
                .build()
                .map_err(|e| format!("cannot start a worker runtime: {e}"))?;
            let make = Arc::clone(&make);
            let (open_in, stop_rx) = (Arc::clone(&open), stop.subscribe());
            std::thread::Builder::new()
                .name(format!("llmur-worker-{i}"))
                .spawn(move || {
                    let service = match make(i) {
                        Ok(service) => service,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    runtime.block_on(serve(rx, service, open_in, stop_rx, grace));
                    drop(runtime);
                    let _ = done_tx.send(());
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            workers.push(Worker {
                connections: tx,
                open,
                done,
            });
            ready.push(ready_rx);
        }
        let workers = Self { workers, stop };
        for ready in ready {
            let outcome = ready
                .await
                .unwrap_or_else(|_| Err("a worker thread ended at start".to_owned()));
            if let Err(e) = outcome {
                workers.stop().await;
                return Err(e);
            }
        }
        Ok(workers)
    }

    /// Hands `stream` to the worker with the fewest open connections.
    pub(crate) fn dispatch(&self, stream: tokio::net::TcpStream) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                return;
            }
        };
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker.connections.send(stream).is_err() {
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("a connection worker has stopped; connection dropped");
        }
    }

    /// Stops every worker: no new connections, keep-alive ends, in-flight requests get the
    /// grace period; returns when every worker thread has finished.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            drop(worker.connections);
            let _ = worker.done.await;
        }
    }
}

async fn serve<S, B>(
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    service: S,
    open: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            received = connections.recv() => {
                let Some(stream) = received else { break };
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        open.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cannot serve a handed-over connection");
                        continue;
                    }
                };
                let connection = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                let open = Arc::clone(&open);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    drop(connections);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    // Tasks the requests spawned (a counter's batched writes, say) finish before the
    // runtime goes; long-lived ones (a connection pool's) are cut after TASK_DRAIN.
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + TASK_DRAIN;
    while metrics.num_alive_tasks() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use bytes::Bytes;
    use http_body_util::Full;

    use super::*;

    /// Serves on a fresh listener, handing connections to `workers` as `serve` does.
    async fn listen(
        workers: Workers,
    ) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => workers.dispatch(accepted.unwrap().0),
                    _ = &mut stop_rx => break,
                }
            }
            workers.stop().await;
        });
        (base, stop_tx, task)
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("?").to_owned()
    }

    #[tokio::test]
    async fn connections_spread_over_the_workers_and_stay_on_theirs() {
        let service = |_: usize| {
            Ok(tower::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(thread_name()))))
            }))
        };
        let workers = Workers::start(2, Duration::from_secs(5), service)
            .await
            .unwrap();
        let (base, stop, task) = listen(workers).await;
        let mut seen = std::collections::BTreeSet::new();
        let mut clients = Vec::new();
        for _ in 0..4 {
            // A client of its own: a connection of its own, kept open to the end.
            let client = reqwest::Client::new();
            let first = client
                .get(&base)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for _ in 0..3 {
                let again = client
                    .get(&base)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert_eq!(again, first, "a connection stays on its worker");
            }
            assert!(first.starts_with("llmur-worker-"), "{first}");
            seen.insert(first);
            clients.push(client);
        }
        assert_eq!(seen.len(), 2, "both workers served connections: {seen:?}");
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stopping_lets_tasks_the_requests_spawned_finish() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&finished);
        let service = move |_: usize| {
            let flag = Arc::clone(&flag);
            Ok(tower::service_fn(move |_req: Request<Incoming>| {
                let flag = Arc::clone(&flag);
                async move {
                    // Like a counter's batched write: started by the request, done later.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        flag.store(true, Ordering::SeqCst);
                    });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            }))
        };
        let workers = Workers::start(1, Duration::from_secs(5), service)
            .await
            .unwrap();
        let (base, stop, task) = listen(workers).await;
        let answer = reqwest::get(&base).await.unwrap().text().await.unwrap();
        assert_eq!(answer, "ok");
        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(
            finished.load(Ordering::SeqCst),
            "the spawned task ran before the worker stopped"
        );
    }
}
