//! Usage accounting: token counts, one [`RequestLog`] per upstream attempt, the
//! [`UsageSink`] that receives them, and the injectable [`Clock`].
//!
//! Owns: the record format and the in-memory sink. Must not touch: the request path; a
//! sink's `record` must return at once (queue, never block or do I/O inline).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::model::{ConnectionId, DeploymentId, ProjectId, VirtualKeyId};

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt (input) tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    #[serde(default)]
    pub completion_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Where a record's token counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// Reported by the upstream (response `usage` or the final stream chunk).
    Reported,
    /// Estimated by llmur: the stream ended before the usage chunk (client hang-up,
    /// upstream cut) or the client turned usage off.
    Estimated,
    /// No tokens were consumed (the attempt failed).
    None,
}

/// Which `/v1` operation a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl UsageSource {
    /// The serde name (`reported`, `estimated`, `none`), as the API and the request-log
    /// tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }
    }
}

impl Endpoint {
    /// The serde name (`chat_completions`, `embeddings`), as the API and the request-log
    /// tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// The path below `/v1/` (and below Azure's deployment path).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// One upstream attempt, as persisted in the request log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestLog {
    /// This record's id.
    pub id: Uuid,
    /// The `x-request-id` of the client request (shared by its attempts).
    pub request_id: String,
    /// The calling key.
    pub virtual_key_id: VirtualKeyId,
    /// The key's project.
    pub project_id: ProjectId,
    /// The deployment asked for.
    pub deployment_id: DeploymentId,
    /// Its name.
    pub deployment: String,
    /// The connection tried.
    pub connection_id: ConnectionId,
    /// The model the upstream was asked for.
    pub upstream_model: String,
    /// The operation.
    pub endpoint: Endpoint,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The HTTP status the upstream answered (0 when it never answered).
    pub status: u16,
    /// Token usage.
    pub usage: Usage,
    /// Where the usage comes from.
    pub usage_source: UsageSource,
    /// Cost in USD, when a price is known for the model.
    pub cost_usd: Option<f64>,
    /// When the attempt started (wall clock).
    pub started_at: SystemTime,
    /// Until the upstream's response head.
    pub time_to_first_byte: Option<Duration>,
    /// Until the last byte (or the failure).
    pub duration: Duration,
    /// The client went away before the response ended.
    pub client_disconnected: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Receives one [`RequestLog`] per attempt. Implementations queue and return at once.
pub trait UsageSink: Send + Sync + 'static {
    /// Takes one record.
    fn record(&self, log: RequestLog);
}

/// The no-op sink.
impl UsageSink for () {
    fn record(&self, _log: RequestLog) {}
}

impl<F: Fn(RequestLog) + Send + Sync + 'static> UsageSink for F {
    fn record(&self, log: RequestLog) {
        self(log);
    }
}

/// Keeps every record in memory; for tests, examples and the embedded default.
#[derive(Debug, Default, Clone)]
pub struct MemoryUsageSink {
    inner: Arc<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    logs: Mutex<Vec<RequestLog>>,
    notify: Notify,
}

impl MemoryUsageSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// All records so far, oldest first.
    pub fn logs(&self) -> Vec<RequestLog> {
        self.inner
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` records arrived or `timeout` passed; returns the records.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RequestLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.notify.notified();
            let logs = self.logs();
            if logs.len() >= n {
                return logs;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.logs();
            }
        }
    }
}

impl UsageSink for MemoryUsageSink {
    fn record(&self, log: RequestLog) {
        self.inner
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(log);
        self.inner.notify.notify_waiters();
    }
}

/// The wall clock, injectable so window and cooldown logic is testable without sleeping.
/// Elapsed times inside the proxy use `tokio::time`, which tests can pause.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: SystemTime) -> Self {
        Self {
            now: Mutex::new(at),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for source in [
            UsageSource::Reported,
            UsageSource::Estimated,
            UsageSource::None,
        ] {
            assert_eq!(
                serde_json::to_value(source).ok(),
                Some(source.as_str().into())
            );
        }
        for endpoint in [Endpoint::ChatCompletions, Endpoint::Embeddings] {
            assert_eq!(
                serde_json::to_value(endpoint).ok(),
                Some(endpoint.as_str().into())
            );
        }
    }
}
