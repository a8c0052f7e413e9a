//! Assembling the application from the configuration: secrets, store, catalog sync,
//! request-log writer, proxy and admin API.
//!
//! Owns: [`App`] and the application-secret rule: a configured secret is used as is; with
//! none, the embedded SQLite default keeps a generated one in a file beside the database
//! (so stored key hashes and encrypted provider keys survive restarts); a server database
//! (Postgres) refuses to start without one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use llmur_core::{MemoryCatalog, Proxy, RequestLog, Snapshot, Store, UsageSink};
use secrecy::{ExposeSecret, SecretString};

use crate::admin::{self, AdminState, CounterUsage};
use crate::catalog_sync::CatalogSync;
use crate::config::{Config, redact_url};
use crate::error::ConfigError;
use crate::invalidation::RedisInvalidation;
use crate::log_writer::{LogWriter, LogWriterOptions};
use crate::security::{Secrets, random_token};
use crate::usage::RecentLogs;
use llmur_core::counter::{
    FailoverCounter, LeaseOptions, LeasingCounter, MemoryCounter, UsageCounter,
};

/// Everything a running server holds.
#[derive(Debug)]
pub struct App {
    /// The proxy service.
    pub proxy: Proxy,
    /// `/health`, `/admin/*` and the JSON 404.
    pub router: Router,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The catalog and its sync.
    pub sync: Arc<CatalogSync>,
    /// The request-log writer.
    pub writer: LogWriter,
    /// The last request logs, in memory, when `recent_request_logs` asks for them.
    pub recent: Option<RecentLogs>,
    /// The redacted database URL, for the start-up line.
    pub database: String,
    /// Redis pub/sub for catalog changes, when Redis is configured.
    pub invalidation: Option<Arc<RedisInvalidation>>,
    /// The usage counter limits are enforced with.
    pub counter: Arc<dyn UsageCounter>,
    /// The Redis counter's health, when Redis is configured.
    pub counter_health: Option<Arc<FailoverCounter>>,
    /// The leases on Redis, when `rate_limits.lease_requests` turns them on; given back
    /// on shutdown.
    pub leases: Option<LeasingCounter>,
}

#[derive(Debug, Clone)]
struct WriteHooks {
    sync: Arc<CatalogSync>,
    invalidation: Option<Arc<RedisInvalidation>>,
}

/// Sends each record to the store writer and the in-memory ring.
#[derive(Debug, Clone)]
struct Tee(LogWriter, RecentLogs);

impl UsageSink for Tee {
    fn record(&self, log: RequestLog) {
        self.1.record(log.clone());
        self.0.record(log);
    }
}

impl App {
    /// Connects the store (running migrations), loads the catalog and builds the services.
    pub async fn build(config: Config) -> Result<Self, ConfigError> {
        let database_url = config.database_url()?;
        let database = redact_url(database_url.expose_secret());
        let secret = application_secret(&config, database_url.expose_secret())?;
        let secrets = Secrets::new(&secret);
        let store = crate::db::connect(database_url.expose_secret())
            .await
            .map_err(|e| ConfigError::new(format!("cannot open the database {database}: {e}")))?;

        let config = Arc::new(config);
        let catalog = Arc::new(MemoryCatalog::new(
            secrets.key_hasher().clone(),
            Snapshot::new(),
        ));
        let sync = Arc::new(CatalogSync::new(
            store.clone(),
            secrets.clone(),
            config.clone(),
            catalog.clone(),
        ));
        sync.refresh()
            .await
            .map_err(|e| ConfigError::new(format!("cannot load the catalog: {e}")))?;

        let writer = LogWriter::spawn(store.clone(), LogWriterOptions::default());
        let recent =
            (config.recent_request_logs > 0).then(|| RecentLogs::new(config.recent_request_logs));
        let redis_url = config.redis_url()?;
        let (counter, counter_health, leases) = build_counter(&config, redis_url.as_ref())?;
        let sink: Arc<dyn UsageSink> = match &recent {
            Some(recent) => Arc::new(Tee(writer.clone(), recent.clone())),
            None => Arc::new(writer.clone()),
        };
        let mut proxy = Proxy::builder(catalog)
            .usage_sink(sink)
            .usage_counter(counter.clone())
            .default_completion_tokens(config.rate_limits.default_completion_tokens)
            .max_body_bytes(config.max_body_bytes)
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .upstream_timeout(Duration::from_secs(config.upstream_timeout_secs));
        if let Some(headroom) = config.rate_limits.early_forwarding_headroom {
            if !(0.0..=1.0).contains(&headroom) {
                return Err(ConfigError::new(format!(
                    "rate_limits.early_forwarding_headroom is {headroom}; it must be between 0 and 1"
                )));
            }
            proxy = proxy.early_forwarding(headroom);
        }
        let proxy = proxy
            .build()
            .map_err(|e| ConfigError::new(format!("cannot build the proxy: {e}")))?;

        let master_keys = config
            .master_keys
            .iter()
            .enumerate()
            .map(|(i, k)| k.resolve(&format!("master_keys[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_state = AdminState {
            store: store.clone(),
            secrets,
            master_keys: master_keys.into(),
            session_ttl: Duration::from_secs(config.session_ttl_hours.saturating_mul(3600)),
            refuse_private_endpoints: config.refuse_private_endpoints,
            // The write middleware below refreshes (and tells other instances) itself.
            on_catalog_change: Arc::new(|| {}),
            usage: Arc::new(CounterUsage {
                counter: counter.clone(),
                clock: Arc::new(llmur_core::SystemClock),
            }),
        };
        let invalidation = match redis_url {
            Some(url) => {
                let redis = Arc::new(
                    RedisInvalidation::new(&url)
                        .map_err(|e| ConfigError::new(format!("redis_url is not valid: {e}")))?,
                );
                Some(redis)
            }
            None => None,
        };
        let hooks = WriteHooks {
            sync: sync.clone(),
            invalidation: invalidation.clone(),
        };
        let admin = admin::router(admin_state).layer(middleware::from_fn(
            move |request: Request, next: Next| {
                let hooks = hooks.clone();
                async move { refresh_after_write(hooks, request, next).await }
            },
        ));
        let health_counter = counter_health.clone();
        let health_leases = leases.clone();
        let early = config
            .rate_limits
            .early_forwarding_headroom
            .map(|_| proxy.clone());
        let router = Router::new()
            .route(
                "/health",
                axum::routing::get(move || {
                    health(health_counter.clone(), early.clone(), health_leases.clone())
                }),
            )
            .merge(admin)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);

        Ok(Self {
            proxy,
            router,
            store,
            sync,
            writer,
            recent,
            database,
            invalidation,
            counter,
            counter_health,
            leases,
        })
    }
}

/// The counter limits are enforced with: Redis behind timeouts and the configured failure
/// policy when `redis_url` is set, else the in-memory counter.
/// The counter the proxy uses, the failover wrapper when Redis is in play, and the
/// leases on it when they are on.
type Counters = (
    Arc<dyn UsageCounter>,
    Option<Arc<FailoverCounter>>,
    Option<LeasingCounter>,
);

fn build_counter(
    config: &Config,
    redis_url: Option<&SecretString>,
) -> Result<Counters, ConfigError> {
    let Some(url) = redis_url else {
        return Ok((Arc::new(MemoryCounter::new()), None, None));
    };
    let limits = &config.rate_limits;
    let timeout = Duration::from_millis(limits.redis_timeout_ms.max(1));
    let redis = crate::counter_redis::RedisCounter::connect(
        url.expose_secret(),
        crate::counter_redis::RedisCounter::DEFAULT_PREFIX,
    )
    .map_err(|e| ConfigError::new(format!("redis_url is not valid for counters: {e}")))?;
    let failover = Arc::new(FailoverCounter::new(
        Arc::new(redis),
        limits.on_redis_failure,
        timeout,
        Duration::from_millis(limits.redis_retry_ms),
    ));
    if limits.lease_requests == 0 {
        return Ok((failover.clone(), Some(failover), None));
    }
    let leases = LeasingCounter::new(
        failover.clone(),
        LeaseOptions {
            requests: limits.lease_requests,
            ttl: Duration::from_millis(limits.lease_ms.max(1)),
            ..LeaseOptions::default()
        },
    );
    Ok((Arc::new(leases.clone()), Some(failover), Some(leases)))
}

/// After a successful admin write, the catalog is rebuilt before the answer goes out, so
/// the change is visible to the proxy on this instance at once; other instances are told
/// through Redis when it is configured (they poll the change counter anyway).
async fn refresh_after_write(hooks: WriteHooks, request: Request, next: Next) -> Response {
    let write = request.method() != Method::GET && request.method() != Method::HEAD;
    let response = next.run(request).await;
    if write && response.status().is_success() {
        // Writes that do not touch the catalog (logins, users, memberships) leave the
        // change counter alone and cost one small query here, not a reload.
        match hooks.sync.refresh_if_changed().await {
            Ok(true) => {
                if let Some(redis) = &hooks.invalidation {
                    redis.publish(hooks.sync.version()).await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "catalog refresh after an admin write failed; the poller retries");
                hooks.sync.poke();
            }
        }
    }
    response
}

/// `GET /health`: `ok`, plus the Redis counter's state when Redis is configured
/// (`degraded` while it is unreachable; the status code stays 200 under fail-open) and
/// early forwarding's counts when it is on, and the leases' when they are on.
async fn health(
    counter: Option<Arc<FailoverCounter>>,
    early: Option<Proxy>,
    leases: Option<LeasingCounter>,
) -> Response {
    let mut body = match counter {
        None => serde_json::json!({"status": "ok"}),
        Some(c) => {
            let status = c.probe().await;
            serde_json::json!({
                "status": if status.degraded { "degraded" } else { "ok" },
                "counter": status,
            })
        }
    };
    if let Some(proxy) = early {
        let stats = proxy.early_forwards();
        body["early_forwarding"] =
            serde_json::json!({"sent": stats.sent(), "dropped": stats.dropped()});
    }
    if let Some(leases) = leases {
        body["leases"] = serde_json::json!({
            "held": leases.leases(),
            "admitted_locally": leases.admitted_locally(),
            "renewed_ahead": leases.renewed_ahead(),
        });
    }
    json_response(StatusCode::OK, body.to_string())
}

async fn not_found(request: Request) -> Response {
    let body = serde_json::json!({"error": {
        "message": format!("Invalid URL ({} {})", request.method(), request.uri().path()),
        "type": "invalid_request_error", "param": null, "code": "unknown_url"
    }});
    json_response(StatusCode::NOT_FOUND, body.to_string())
}

async fn method_not_allowed(request: Request) -> Response {
    let body = serde_json::json!({"error": format!(
        "{} is not allowed on {}", request.method(), request.uri().path()
    )});
    json_response(StatusCode::METHOD_NOT_ALLOWED, body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The application secret to use (see the module docs).
pub(crate) fn application_secret(
    config: &Config,
    database_url: &str,
) -> Result<SecretString, ConfigError> {
    if let Some(secret) = &config.application_secret {
        let secret = secret.resolve("application_secret")?;
        if secret.expose_secret().len() < 16 {
            tracing::warn!(
                "application_secret is shorter than 16 characters; use a long random value"
            );
        }
        return Ok(secret);
    }
    if database_url.starts_with("sqlite") && database_url.contains(":memory:") {
        tracing::warn!("in-memory database without application_secret: using a random one");
        return Ok(SecretString::from(random_token(48)));
    }
    let Some(file) = sqlite_file(database_url) else {
        return Err(ConfigError::new(
            "application_secret is required with a server database: it keys virtual-key hashes \
             and encrypts provider keys, so every instance must share the same one",
        ));
    };
    let path = secret_path(&file);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            tracing::info!(path = %path.display(), "application_secret read from its file");
            Ok(SecretString::from(text.trim().to_owned()))
        }
        _ => {
            let secret = random_token(48);
            write_private(&path, &secret).map_err(|e| {
                ConfigError::new(format!(
                    "no application_secret configured and cannot keep a generated one in {}: {e}",
                    path.display()
                ))
            })?;
            tracing::warn!(
                path = %path.display(),
                "no application_secret configured: generated one and kept it in this file \
                 (back it up with the database; set application_secret in production)"
            );
            Ok(SecretString::from(secret))
        }
    }
}

/// The file of a `sqlite://` URL; `None` for other databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(path))
}

fn secret_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".secret");
    db.with_file_name(name)
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()
}
