//! The HTTP listener: accepts connections, serves the app, shuts down gracefully.
//!
//! Owns: [`start`] and [`RunningServer`]. Accepted sockets get `TCP_NODELAY`; HTTP/1.1 and
//! HTTP/2 (h2c) are both served. On shutdown the listener closes at once, keep-alive ends,
//! and in-flight requests — streams included — get `shutdown_grace_secs` to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use llmur_core::{RequestLog, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::app::App;
use crate::config::Config;
use crate::error::ConfigError;
use crate::usage::RecentLogs;
use crate::workers::Workers;

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    logs: Option<RecentLogs>,
    store: Arc<dyn Store>,
    counter: Arc<dyn llmur_core::counter::UsageCounter>,
    counter_health: Option<Arc<llmur_core::counter::FailoverCounter>>,
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

    /// The usage counter limits are enforced with.
    pub fn counter(&self) -> &Arc<dyn llmur_core::counter::UsageCounter> {
        &self.counter
    }

    /// The Redis counter's health, when Redis is configured.
    pub fn counter_status(&self) -> Option<llmur_core::counter::FailoverStatus> {
        self.counter_health.as_ref().map(|c| c.status())
    }

    /// The store behind the admin API.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The most recent request logs (one per upstream attempt), oldest first: at most
    /// [`Config::recent_request_logs`](crate::Config::recent_request_logs) of them, and
    /// none when that is 0 (the default).
    pub fn recent_logs(&self) -> Vec<RequestLog> {
        self.logs
            .as_ref()
            .map(RecentLogs::snapshot)
            .unwrap_or_default()
    }

    /// Waits until at least `n` request logs exist or `timeout` passes; returns at once,
    /// with none, when `recent_request_logs` is 0.
    pub async fn wait_for_logs(&self, n: usize, timeout: Duration) -> Vec<RequestLog> {
        match &self.logs {
            Some(logs) => logs.wait_for(n, timeout).await,
            None => Vec::new(),
        }
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
    let addr = SocketAddr::new(config.host, config.port);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let config_workers = config.worker_threads;
    let retention_days = config.request_log_retention_days;
    let refresh = Duration::from_millis(config.catalog_refresh_ms.max(10));
    let app = App::build(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError::new(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConfigError::new(format!("cannot read the bound address: {e}")))?;
    let counts = app.sync.catalog().counts();
    tracing::info!(
        %addr,
        database = %app.database,
        catalog = "in memory, refreshed from the database",
        redis = app.invalidation.is_some(),
        rate_limits = if app.counter_health.is_some() {
            "counted in Redis (fallback: see rate_limits.on_redis_failure)"
        } else {
            "counted in memory (this instance)"
        },
        deployments = counts.0,
        virtual_keys = counts.1,
        "llmur listening"
    );

    let poller = tokio::spawn(app.sync.clone().run(refresh));
    let retention = (retention_days > 0).then(|| {
        let keep = Duration::from_secs(u64::from(retention_days) * 86_400);
        tokio::spawn(crate::retention::run(app.store.clone(), keep))
    });
    let listener_task = app
        .invalidation
        .clone()
        .map(|redis| tokio::spawn(redis.listen(app.sync.clone())));
    let (tx, rx) = oneshot::channel::<()>();
    let threads = match config_workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let (proxy, router) = (app.proxy.clone(), app.router.clone());
    let workers = Workers::start(threads, grace, move |i| {
        // Worker 0 uses the app's proxy (and its client) as is; the others fork theirs.
        let proxy = match i {
            0 => proxy.clone(),
            _ => proxy
                .fork()
                .map_err(|e| format!("cannot build the proxy: {e}"))?,
        };
        Ok(proxy.layer().layer(router.clone()))
    })
    .await
    .map_err(|e| ConfigError::new(format!("cannot start the connection workers: {e}")))?;
    let writer = app.writer.clone();
    let leases = app.leases.clone();
    let task = tokio::spawn(async move {
        accept_loop(listener, workers, async move {
            tokio::select! {
                _ = rx => {},
                () = signal => {},
            }
        })
        .await;
        poller.abort();
        if let Some(task) = retention {
            task.abort();
        }
        if let Some(task) = listener_task {
            task.abort();
        }
        if let Some(leases) = leases {
            // In-flight requests are done: their settles went into the leases.
            leases.release_all().await;
        }
        writer.shutdown().await;
        tracing::info!(
            written = writer.written(),
            dropped = writer.dropped(),
            "request logs flushed"
        );
    });
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
        logs: app.recent.clone(),
        store: app.store.clone(),
        counter: app.counter.clone(),
        counter_health: app.counter_health.clone(),
    })
}

async fn accept_loop(
    listener: TcpListener,
    workers: Workers,
    stop: impl std::future::Future<Output = ()>,
) {
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
                workers.dispatch(stream);
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down; letting in-flight requests finish");
    workers.stop().await;
    tracing::info!("all connections closed");
}
