//! The server's configuration: a YAML file, then `LLMUR_*` environment overrides.
//!
//! Owns: [`Config`] and its loading. Unknown fields are refused with a message naming them;
//! nothing falls back silently. Secrets are [`SecretString`]s and may be given indirectly as
//! `env:VAR_NAME`, so a config file can live in git (config-as-code) without credentials.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::ConfigError;
use llmur_core::store::types::Limits;

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (default `0.0.0.0`).
    #[serde(default = "default_host")]
    pub host: IpAddr,
    /// Port to listen on (default `8082`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Keys virtual keys are hashed with and secrets are encrypted with. When absent, a
    /// random one is made at start-up (fine while every key lives in this file).
    #[serde(default)]
    pub application_secret: Option<Secret>,
    /// Master keys for the admin API (`X-LLMur-Key`).
    #[serde(default)]
    pub master_keys: Vec<Secret>,
    /// A tracing filter: `info`, `debug`, `llmur=debug,info`, ...
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `human` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Largest accepted request body in bytes (default 32 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Seconds an upstream may take to connect (default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds an upstream may take to answer (head, or whole non-streamed body; default 600).
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: u64,
    /// Seconds in-flight requests and streams get to finish on shutdown (default 30).
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Connection worker threads, each with its own single-threaded runtime; every client
    /// connection is served start to finish on one of them (default 0: one per CPU core).
    #[serde(default)]
    pub worker_threads: usize,
    /// Days request logs are kept; older ones are deleted by an hourly sweep (default 0:
    /// kept forever).
    #[serde(default)]
    pub request_log_retention_days: u32,
    /// Where state lives: `sqlite://FILE` (the embedded default, `sqlite://llmur.db`) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`. Wins over `database_configuration`.
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// LLMUR-style database settings (converted to a `database_url`).
    #[serde(default)]
    pub database_configuration: Option<DatabaseConfiguration>,
    /// `redis://[USER:PASSWORD@]HOST:PORT` — optional; shares catalog changes between
    /// instances (and, later, usage counters). Wins over `cache_configuration`.
    #[serde(default)]
    pub redis_url: Option<Secret>,
    /// LLMUR-style cache settings (converted to a `redis_url`).
    #[serde(default)]
    pub cache_configuration: Option<CacheConfiguration>,
    /// OpenTelemetry settings (accepted for LLMUR compatibility).
    #[serde(default)]
    pub otel: Option<OtelConfig>,
    /// Hours a session token stays valid (default 720, i.e. 30 days).
    #[serde(default = "default_session_ttl_hours")]
    pub session_ttl_hours: u64,
    /// Refuse connection endpoints on loopback and private networks (default off, since
    /// self-hosted models often live there). Metadata and link-local addresses are always
    /// refused.
    #[serde(default)]
    pub refuse_private_endpoints: bool,
    /// How often, in milliseconds, the catalog checks the database for changes made by other
    /// instances (default 500; changes on this instance apply at once).
    #[serde(default = "default_catalog_refresh_ms")]
    pub catalog_refresh_ms: u64,
    /// Provider connections declared in the file.
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// Deployments declared in the file.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// Projects declared in the file.
    #[serde(default)]
    pub projects: Vec<ProjectConfig>,
    /// Virtual keys declared in the file.
    #[serde(default)]
    pub virtual_keys: Vec<VirtualKeyConfig>,
    /// How limits are counted and what happens when Redis is unreachable.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// How many of the latest request logs
    /// [`RunningServer::recent_logs`](crate::RunningServer::recent_logs) keeps in memory
    /// (default 0: none, and no copy of each log). Set in code only, not in the file or the
    /// environment: for programs that embed the server and read their own logs, and for
    /// tests. The database holds every log either way.
    #[serde(skip)]
    pub recent_request_logs: usize,
}

/// Rate-limit counting settings (`rate_limits:` in the file).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// When Redis cannot be reached: `open` (default: count locally per instance and keep
    /// serving) or `closed` (refuse limited requests with 503).
    pub on_redis_failure: llmur_core::counter::FailPolicy,
    /// Milliseconds one Redis counter call may take before the failure policy applies
    /// (default 100).
    pub redis_timeout_ms: u64,
    /// Milliseconds Redis is left alone after a failure before it is tried again
    /// (default 1000).
    pub redis_retry_ms: u64,
    /// Completion tokens reserved for a chat request without `max_tokens` (default 1024);
    /// the real count replaces it when the answer is in.
    pub default_completion_tokens: u64,
    /// Early forwarding (default off): when every limit a request touches had at least
    /// this share (0 to 1, e.g. 0.25) of its room left at Redis's last answer, the request
    /// goes upstream while Redis decides instead of after; a refused one's upstream call
    /// is dropped. Saves the Redis round trip on the time to first byte.
    pub early_forwarding_headroom: Option<f64>,
    /// Leases (default 32; 0 turns them off): with Redis, a reserve that finds plenty of
    /// room also takes this many requests' worth more, and the next requests are admitted
    /// from it in process, without a Redis call; what is left goes back after `lease_ms`.
    /// Never more than the limit is admitted; see the README's Rate limits.
    pub lease_requests: u64,
    /// Milliseconds a lease is drawn on before what is left goes back (default 50).
    pub lease_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            on_redis_failure: llmur_core::counter::FailPolicy::Open,
            redis_timeout_ms: 100,
            redis_retry_ms: 1_000,
            default_completion_tokens: llmur_core::DEFAULT_COMPLETION_TOKENS,
            early_forwarding_headroom: None,
            lease_requests: 32,
            lease_ms: 50,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

/// A secret value: given literally, or as `env:NAME` to read the environment variable.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// The secret, with `env:NAME` resolved.
    pub fn resolve(&self, field: &str) -> Result<SecretString, ConfigError> {
        let raw = self.0.expose_secret();
        match raw.strip_prefix("env:") {
            Some(var) => std::env::var(var).map(SecretString::from).map_err(|_| {
                ConfigError::new(format!(
                    "`{field}` says env:{var}, but the environment variable {var} is not set"
                ))
            }),
            None => Ok(self.0.clone()),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(SecretString::from(s))
    }
}

/// LLMUR's `database_configuration` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfiguration {
    /// `postgres` or `sqlite`.
    pub engine: DatabaseEngine,
    /// Server host (postgres).
    #[serde(default)]
    pub host: Option<String>,
    /// Server port (postgres, default 5432).
    #[serde(default)]
    pub port: Option<u16>,
    /// Database name (postgres) or file path (sqlite).
    pub database: String,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub min_connections: Option<u32>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// Database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// LLMUR's `cache_configuration` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfiguration {
    /// Must be `redis`.
    pub engine: CacheEngine,
    /// Host.
    pub host: String,
    /// Port (default 6379).
    #[serde(default)]
    pub port: Option<u16>,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
}

/// Cache engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheEngine {
    /// Redis.
    Redis,
}

/// LLMUR's `otel` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelConfig {
    /// OTLP endpoint.
    #[serde(default)]
    pub exporter_otlp_endpoint: Option<String>,
}

/// A provider connection, tagged by `provider` as in the admin API.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", deny_unknown_fields)]
pub enum ConnectionConfig {
    /// `provider: openai/v1`.
    #[serde(rename = "openai/v1")]
    OpenAi {
        /// Name deployments refer to.
        name: String,
        /// Base URL (`https://api.openai.com`).
        api_endpoint: String,
        /// The upstream model.
        model: String,
        /// The provider key.
        api_key: Secret,
        /// USD per million tokens (default: the built-in table for the model).
        #[serde(default)]
        price: Option<llmur_core::store::types::Price>,
        /// Limits on this connection.
        #[serde(default)]
        limits: Limits,
    },
    /// `provider: azure/openai`.
    #[serde(rename = "azure/openai")]
    Azure {
        /// Name deployments refer to.
        name: String,
        /// Base URL (`https://NAME.openai.azure.com`).
        api_endpoint: String,
        /// The Azure deployment name.
        deployment_name: String,
        /// The provider key.
        api_key: Secret,
        /// A dated `api-version`; absent or `v1` uses the `/openai/v1/` URLs.
        #[serde(default)]
        api_version: Option<String>,
        /// USD per million tokens (default: the built-in table for the model).
        #[serde(default)]
        price: Option<llmur_core::store::types::Price>,
        /// Limits on this connection.
        #[serde(default)]
        limits: Limits,
    },
}

impl ConnectionConfig {
    /// The name deployments use to refer to it.
    pub fn name(&self) -> &str {
        match self {
            ConnectionConfig::OpenAi { name, .. } | ConnectionConfig::Azure { name, .. } => name,
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        match self {
            ConnectionConfig::OpenAi { limits, .. } | ConnectionConfig::Azure { limits, .. } => {
                limits
            }
        }
    }

    /// Its price, when set.
    pub fn price(&self) -> Option<llmur_core::store::types::Price> {
        match self {
            ConnectionConfig::OpenAi { price, .. } | ConnectionConfig::Azure { price, .. } => {
                *price
            }
        }
    }
}

/// A deployment: the name clients send as `model`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The deployment name.
    pub name: String,
    /// `private` (default: only linked keys) or `public` (every key).
    #[serde(default)]
    pub access: llmur_core::Access,
    /// Balancing strategy (default `round_robin`).
    #[serde(default)]
    pub strategy: llmur_core::Strategy,
    /// Its connections, by name, with optional weights.
    pub connections: Vec<DeploymentConnection>,
    /// Limits on the deployment (all keys together).
    #[serde(default)]
    pub limits: Limits,
}

/// A connection of a deployment: a bare name, or `{connection, weight}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DeploymentConnection {
    /// Just the connection's name (weight 1).
    Name(String),
    /// Name and weight.
    Weighted {
        /// The connection's name.
        connection: String,
        /// 0..=100 (default 1).
        #[serde(default = "default_weight")]
        weight: u32,
    },
}

/// A project.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Its name, unique in the file.
    pub name: String,
    /// Limits on the project (all its keys together).
    #[serde(default)]
    pub limits: Limits,
}

/// A virtual key given in full in the file (or via `env:`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualKeyConfig {
    /// The key clients send as `Authorization: Bearer ...`.
    pub key: Secret,
    /// The project's name.
    pub project: String,
    /// A label for logs (default: a masked form of the key).
    #[serde(default)]
    pub alias: Option<String>,
    /// Blocked keys are refused with 401.
    #[serde(default)]
    pub blocked: bool,
    /// Deployments the key may use, by name.
    #[serde(default)]
    pub deployments: Vec<String>,
    /// Limits on the key.
    #[serde(default)]
    pub limits: Limits,
}

fn default_host() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
fn default_port() -> u16 {
    8082
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_max_body_bytes() -> usize {
    llmur_core::DEFAULT_MAX_BODY_BYTES
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_upstream_timeout() -> u64 {
    600
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_session_ttl_hours() -> u64 {
    720
}
fn default_catalog_refresh_ms() -> u64 {
    500
}
fn default_weight() -> u32 {
    1
}

impl Default for Config {
    fn default() -> Self {
        // An empty mapping deserializes to all defaults.
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("empty config is valid"))
    }
}

impl Config {
    /// Reads `path` (if given), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Self::from_yaml(&text)?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Parses YAML text; an empty document means all defaults.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text).map_err(|e| ConfigError::new(format!("invalid config: {e}")))
    }

    /// Applies `LLMUR_HOST`, `LLMUR_PORT`, `LLMUR_LOG_LEVEL`, `LLMUR_LOG_FORMAT`,
    /// `LLMUR_APPLICATION_SECRET`, `LLMUR_MASTER_KEYS` (comma-separated),
    /// `LLMUR_MAX_BODY_BYTES`, `LLMUR_CONNECT_TIMEOUT_SECS`, `LLMUR_UPSTREAM_TIMEOUT_SECS`
    /// `LLMUR_SHUTDOWN_GRACE_SECS`, `LLMUR_WORKER_THREADS`, `LLMUR_REQUEST_LOG_RETENTION_DAYS`, `LLMUR_DATABASE_URL`, `LLMUR_REDIS_URL`,
    /// `LLMUR_SESSION_TTL_HOURS`, `LLMUR_REFUSE_PRIVATE_ENDPOINTS`,
    /// `LLMUR_CATALOG_REFRESH_MS`, `LLMUR_RATE_LIMITS_ON_REDIS_FAILURE`,
    /// `LLMUR_RATE_LIMITS_REDIS_TIMEOUT_MS`, `LLMUR_RATE_LIMITS_REDIS_RETRY_MS`,
    /// `LLMUR_RATE_LIMITS_DEFAULT_COMPLETION_TOKENS` and
    /// `LLMUR_RATE_LIMITS_EARLY_FORWARDING_HEADROOM` (a share, or `off`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
            value
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(format!("{name}={value:?} is not valid")))
        }
        if let Some(v) = var("LLMUR_HOST") {
            self.host = parse("LLMUR_HOST", &v)?;
        }
        if let Some(v) = var("LLMUR_PORT") {
            self.port = parse("LLMUR_PORT", &v)?;
        }
        if let Some(v) = var("LLMUR_LOG_LEVEL") {
            self.log_level = v;
        }
        if let Some(v) = var("LLMUR_LOG_FORMAT") {
            self.log_format = match v.trim() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::new(format!(
                        "LLMUR_LOG_FORMAT={other:?} is not valid (human or json)"
                    )));
                }
            };
        }
        if let Some(v) = var("LLMUR_APPLICATION_SECRET") {
            self.application_secret = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = var("LLMUR_MASTER_KEYS") {
            self.master_keys = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::from)
                .collect();
        }
        if let Some(v) = var("LLMUR_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("LLMUR_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = var("LLMUR_CONNECT_TIMEOUT_SECS") {
            self.connect_timeout_secs = parse("LLMUR_CONNECT_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = var("LLMUR_UPSTREAM_TIMEOUT_SECS") {
            self.upstream_timeout_secs = parse("LLMUR_UPSTREAM_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = var("LLMUR_DATABASE_URL") {
            self.database_url = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = var("LLMUR_REDIS_URL") {
            self.redis_url = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = var("LLMUR_SESSION_TTL_HOURS") {
            self.session_ttl_hours = parse("LLMUR_SESSION_TTL_HOURS", &v)?;
        }
        if let Some(v) = var("LLMUR_REFUSE_PRIVATE_ENDPOINTS") {
            self.refuse_private_endpoints = parse("LLMUR_REFUSE_PRIVATE_ENDPOINTS", &v)?;
        }
        if let Some(v) = var("LLMUR_CATALOG_REFRESH_MS") {
            self.catalog_refresh_ms = parse("LLMUR_CATALOG_REFRESH_MS", &v)?;
        }
        if let Some(v) = var("LLMUR_SHUTDOWN_GRACE_SECS") {
            self.shutdown_grace_secs = parse("LLMUR_SHUTDOWN_GRACE_SECS", &v)?;
        }
        if let Some(v) = var("LLMUR_WORKER_THREADS") {
            self.worker_threads = parse("LLMUR_WORKER_THREADS", &v)?;
        }
        if let Some(v) = var("LLMUR_REQUEST_LOG_RETENTION_DAYS") {
            self.request_log_retention_days = parse("LLMUR_REQUEST_LOG_RETENTION_DAYS", &v)?;
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_ON_REDIS_FAILURE") {
            self.rate_limits.on_redis_failure = match v.trim() {
                "open" => llmur_core::counter::FailPolicy::Open,
                "closed" => llmur_core::counter::FailPolicy::Closed,
                other => {
                    return Err(ConfigError::new(format!(
                        "LLMUR_RATE_LIMITS_ON_REDIS_FAILURE={other:?} is not valid (open or closed)"
                    )));
                }
            };
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_REDIS_TIMEOUT_MS") {
            self.rate_limits.redis_timeout_ms = parse("LLMUR_RATE_LIMITS_REDIS_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_REDIS_RETRY_MS") {
            self.rate_limits.redis_retry_ms = parse("LLMUR_RATE_LIMITS_REDIS_RETRY_MS", &v)?;
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_DEFAULT_COMPLETION_TOKENS") {
            self.rate_limits.default_completion_tokens =
                parse("LLMUR_RATE_LIMITS_DEFAULT_COMPLETION_TOKENS", &v)?;
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_EARLY_FORWARDING_HEADROOM") {
            self.rate_limits.early_forwarding_headroom = match v.trim() {
                "" | "off" => None,
                _ => Some(parse("LLMUR_RATE_LIMITS_EARLY_FORWARDING_HEADROOM", &v)?),
            };
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_LEASE_REQUESTS") {
            self.rate_limits.lease_requests = parse("LLMUR_RATE_LIMITS_LEASE_REQUESTS", &v)?;
        }
        if let Some(v) = var("LLMUR_RATE_LIMITS_LEASE_MS") {
            self.rate_limits.lease_ms = parse("LLMUR_RATE_LIMITS_LEASE_MS", &v)?;
        }
        Ok(())
    }
}

/// The embedded default database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://llmur.db";

impl Config {
    /// The database URL: `database_url`, else one built from `database_configuration`,
    /// else the embedded default.
    pub fn database_url(&self) -> Result<SecretString, ConfigError> {
        if let Some(url) = &self.database_url {
            return url.resolve("database_url");
        }
        let Some(db) = &self.database_configuration else {
            return Ok(SecretString::from(DEFAULT_DATABASE_URL));
        };
        match db.engine {
            DatabaseEngine::Sqlite => Ok(SecretString::from(format!("sqlite://{}", db.database))),
            DatabaseEngine::Postgres => {
                let host = db.host.as_deref().unwrap_or("localhost");
                let port = db.port.unwrap_or(5432);
                let auth = userinfo(
                    db.username.as_deref(),
                    db.password.as_ref(),
                    "database_configuration.password",
                )?;
                Ok(SecretString::from(format!(
                    "postgres://{auth}{host}:{port}/{}",
                    encode_component(&db.database)
                )))
            }
        }
    }

    /// The Redis URL, if Redis is configured.
    pub fn redis_url(&self) -> Result<Option<SecretString>, ConfigError> {
        if let Some(url) = &self.redis_url {
            return url.resolve("redis_url").map(Some);
        }
        let Some(cache) = &self.cache_configuration else {
            return Ok(None);
        };
        let auth = userinfo(
            cache.username.as_deref(),
            cache.password.as_ref(),
            "cache_configuration.password",
        )?;
        Ok(Some(SecretString::from(format!(
            "redis://{auth}{}:{}",
            cache.host,
            cache.port.unwrap_or(6379)
        ))))
    }
}

fn userinfo(
    user: Option<&str>,
    password: Option<&Secret>,
    field: &str,
) -> Result<String, ConfigError> {
    let password = password.map(|p| p.resolve(field)).transpose()?;
    Ok(match (user, password) {
        (None, None) => String::new(),
        (Some(u), None) => format!("{}@", encode_component(u)),
        (u, Some(p)) => format!(
            "{}:{}@",
            encode_component(u.unwrap_or_default()),
            encode_component(p.expose_secret())
        ),
    })
}

/// Percent-encodes everything but unreserved URL characters.
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A URL with its password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c = Config::from_yaml("").ok();
        assert_eq!(c.as_ref().map(|c| c.port), Some(8082));
        let err = Config::from_yaml("prot: 1").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("prot")), "names the field");
    }

    #[test]
    fn leases_are_on_by_default_and_can_be_turned_off() {
        let c = Config::default();
        assert_eq!(c.rate_limits.lease_requests, 32);
        assert_eq!(c.rate_limits.lease_ms, 50);
        let off = Config::from_yaml("rate_limits: {lease_requests: 0}").ok();
        assert_eq!(off.map(|c| c.rate_limits.lease_requests), Some(0));
        let mut c = Config::default();
        let env = |k: &str| (k == "LLMUR_RATE_LIMITS_LEASE_REQUESTS").then(|| "0".to_owned());
        assert!(c.apply_env(env).is_ok());
        assert_eq!(c.rate_limits.lease_requests, 0);
    }

    #[test]
    fn the_in_memory_log_ring_is_off_by_default_and_set_in_code_only() {
        assert_eq!(Config::default().recent_request_logs, 0);
        let err = Config::from_yaml("recent_request_logs: 10").err();
        let err = err.map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("recent_request_logs")),
            "refused by name"
        );
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::from_yaml("port: 9000\nlog_level: warn")
            .ok()
            .unwrap_or_default();
        let env = |k: &str| match k {
            "LLMUR_PORT" => Some("9100".to_owned()),
            "LLMUR_MASTER_KEYS" => Some("a, b".to_owned()),
            _ => None,
        };
        assert!(c.apply_env(env).is_ok());
        assert_eq!(c.port, 9100);
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.master_keys.len(), 2);
        let mut c = Config::default();
        let bad = c.apply_env(|k| (k == "LLMUR_PORT").then(|| "x".to_owned()));
        assert!(bad.is_err());
    }

    #[test]
    fn llmur_config_files_start_unchanged() {
        let yaml = r#"
application_secret: 7d8fe9e9-04fc-42a8-9577-40ecc40d27d7
log_level: info
host: 0.0.0.0
port: 8082
master_keys: [my-master-key-1, my-master-key-2]
otel:
  exporter_otlp_endpoint: http://localhost:4317
database_configuration:
  engine: postgres
  host: localhost
  port: 5432
  database: llmur
  username: postgres
  password: "p@ss word"
  min_connections: 5
  max_connections: 20
cache_configuration:
  engine: redis
  host: localhost
  port: 6379
  username: default
  password: redispassword
"#;
        let c = Config::from_yaml(yaml);
        assert!(c.is_ok(), "{:?}", c.err());
        let c = c.ok().unwrap_or_default();
        let db = c.database_url().map(|u| u.expose_secret().to_owned()).ok();
        assert_eq!(
            db.as_deref(),
            Some("postgres://postgres:p%40ss%20word@localhost:5432/llmur")
        );
        assert_eq!(
            redact_url(db.as_deref().unwrap_or_default()),
            "postgres://postgres:***@localhost:5432/llmur"
        );
        let redis = c
            .redis_url()
            .ok()
            .flatten()
            .map(|u| u.expose_secret().to_owned());
        assert_eq!(
            redis.as_deref(),
            Some("redis://default:redispassword@localhost:6379")
        );
        assert_eq!(
            Config::default()
                .database_url()
                .map(|u| u.expose_secret().to_owned())
                .ok()
                .as_deref(),
            Some(DEFAULT_DATABASE_URL)
        );
    }

    #[test]
    fn declares_catalog_as_code() {
        let yaml = r#"
connections:
  - provider: openai/v1
    name: oai
    api_endpoint: https://api.openai.com
    model: gpt-4o-mini
    api_key: env:LLMUR_TEST_UNSET_VAR
  - provider: azure/openai
    name: az
    api_endpoint: https://x.openai.azure.com
    deployment_name: gpt4o
    api_key: k
    api_version: 2024-10-21
deployments:
  - name: chat
    connections: [oai, {connection: az, weight: 3}]
projects: [{name: p}]
virtual_keys:
  - key: sk-test
    project: p
    deployments: [chat]
"#;
        let c = Config::from_yaml(yaml);
        assert!(c.is_ok(), "{:?}", c.err());
        let c = c.ok().unwrap_or_default();
        assert_eq!(c.connections.len(), 2);
        let ConnectionConfig::OpenAi { api_key, .. } = &c.connections[0] else {
            unreachable!()
        };
        assert!(api_key.resolve("api_key").is_err());
    }
}
