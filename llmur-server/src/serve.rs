//! The HTTP listener: accepts connections, serves the app, shuts down gracefully.
//!
//! Owns: [`start`] and [`RunningServer`]. Accepted sockets get `TCP_NODELAY`; HTTP/1.1 and
//! HTTP/2 (h2c) are both served. On shutdown the listener closes at once, keep-alive ends,
//! and in-flight requests — streams included — get `shutdown_grace_secs` to finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use llmur_core::{KeyHasher, MemoryCatalog, Proxy, RequestLog};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, service_fn};

use crate::catalog::{CatalogCounts, snapshot_from_config};
use crate::config::Config;
use crate::error::ConfigError;
use crate::usage::RecentLogs;

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    logs: RecentLogs,
    counts: CatalogCounts,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the catalog holds.
    pub fn counts(&self) -> CatalogCounts {
        self.counts
    }

    /// The most recent request logs (one per upstream attempt), oldest first.
    pub fn recent_logs(&self) -> Vec<RequestLog> {
        self.logs.snapshot()
    }

    /// Waits until at least `n` request logs exist or `timeout` passes.
    pub async fn wait_for_logs(&self, n: usize, timeout: Duration) -> Vec<RequestLog> {
        self.logs.wait_for(n, timeout).await
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and
    /// returns when the server is down.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Runs until the server stops by itself (it does not, unless `signal` resolves).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Builds the app from `config`, binds, and serves until `signal` resolves or
/// [`RunningServer::shutdown`] is called.
pub async fn start(
    config: Config,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ConfigError> {
    let secret = match &config.application_secret {
        Some(secret) => secret.resolve("application_secret")?,
        None => {
            tracing::warn!(
                "no application_secret configured: using a random one for this run \
                 (fine for keys declared in the config file)"
            );
            SecretString::from(uuid::Uuid::new_v4().simple().to_string())
        }
    };
    let hasher = KeyHasher::new(&secret);
    let (snapshot, counts) = snapshot_from_config(&config, &hasher)?;
    let catalog = Arc::new(MemoryCatalog::new(hasher, snapshot));
    let logs = RecentLogs::new(10_000);
    let proxy = Proxy::builder(catalog)
        .usage_sink(Arc::new(logs.clone()))
        .max_body_bytes(config.max_body_bytes)
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .upstream_timeout(Duration::from_secs(config.upstream_timeout_secs))
        .build()
        .map_err(|e| ConfigError::new(format!("cannot build the proxy: {e}")))?;

    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError::new(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConfigError::new(format!("cannot read the bound address: {e}")))?;
    tracing::info!(
        %addr,
        catalog = "config file (in memory)",
        usage_log = "in memory (last 10000 attempts)",
        rate_limits = "none",
        connections = counts.connections,
        deployments = counts.deployments,
        virtual_keys = counts.virtual_keys,
        "llmur listening"
    );

    let (tx, rx) = oneshot::channel::<()>();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let task = tokio::spawn(accept_loop(listener, proxy, grace, async move {
        tokio::select! {
            _ = rx => {},
            () = signal => {},
        }
    }));
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
        logs,
        counts,
    })
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Proxy,
    grace: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let app = proxy.layer().layer(service_fn(routes));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down; letting in-flight requests finish"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Everything that is not `/v1`: `/health`, and a JSON 404 for the rest.
async fn routes(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/health" => (StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        path => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": {"message": format!("Invalid URL ({} {path})", request.method()), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}).to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
