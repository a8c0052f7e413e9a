//! Reserves queued while one script call is in flight, sent together as the next call.
//!
//! Owns: [`ReserveBatch`] and its dispatcher task. Every reserve goes through one queue;
//! the dispatcher sends whatever is queued as one `reserve.lua` call, waits for its reply,
//! and repeats. When Redis is idle a reserve goes out at once, alone (no timer, no added
//! wait); under load the reserves that arrive during one call's round trip share the next
//! call, and the script reads and writes each bucket key once per call instead of once per
//! request. A batch decides exactly what the same reserves sent one by one in queue order
//! would. Reserves whose caller stopped waiting before their batch was sent are dropped
//! unsent; one that was already sent is taken back by its ticket (see `cancel.lua`).

use std::collections::HashMap;
use std::time::Duration;

use bb8_redis::bb8::Pool;
use bb8_redis::redis::Script;
use llmur_core::counter::{Ask, Bucket, CounterError};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_EXACT, Manager};

/// Most reservations in one script call.
const MAX_BATCH: usize = 128;

/// Longest wait for one script call; a connection that does not answer in time is dropped
/// so the next batch does not queue behind it (callers give up long before, by policy).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One reservation's raw reply (see `reserve.lua`).
pub(super) type Reply = Result<Vec<i64>, CounterError>;

/// A queued reserve.
struct Job {
    asks: Vec<Ask>,
    /// The caller's clock, or `None` for the server's.
    now_ms: Option<i64>,
    /// The ticket key, if cancellable.
    ticket: Option<String>,
    reply: oneshot::Sender<Reply>,
}

/// The queue of reserves and its dispatcher; the dispatcher ends when this is dropped.
pub(super) struct ReserveBatch {
    tx: mpsc::UnboundedSender<Job>,
}

/// What the dispatcher needs to send a batch.
pub(super) struct Sender {
    pub(super) pool: Pool<Manager>,
    pub(super) script: Script,
    pub(super) target: String,
    pub(super) prefix: String,
    pub(super) grace_ms: u64,
}

impl ReserveBatch {
    /// Starts the dispatcher (on the current Tokio runtime).
    pub(super) fn start(sender: Sender) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(rx, sender));
        Self { tx }
    }

    /// Queues a reserve and waits for its reply.
    pub(super) async fn reserve(
        &self,
        asks: &[Ask],
        now_ms: Option<i64>,
        ticket: Option<String>,
    ) -> Reply {
        if let Some(ask) = asks.iter().find(|a| a.amount > MAX_EXACT) {
            return Err(CounterError(format!(
                "amount {} for {} {} is above what the Redis counter handles ({MAX_EXACT})",
                ask.amount,
                ask.bucket.level.as_str(),
                ask.bucket.metric.as_str()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            asks: asks.to_vec(),
            now_ms,
            ticket,
            reply,
        };
        if self.tx.send(job).is_err() {
            return Err(CounterError(
                "the Redis reserve queue has stopped".to_owned(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(CounterError(
                "the Redis reserve batch was dropped before it answered".to_owned(),
            ))
        })
    }
}

async fn dispatch(mut rx: mpsc::UnboundedReceiver<Job>, sender: Sender) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        // A caller that gave up (a timeout) must not have its reserve applied.
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            match sender.send(&jobs).await {
                Ok(replies) => {
                    for (job, reply) in jobs.drain(..).zip(replies) {
                        let _ = job.reply.send(Ok(reply));
                    }
                }
                Err(e) => {
                    for job in jobs.drain(..) {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
        jobs.clear();
    }
}

impl Sender {
    /// One script call for `jobs`: a reply per job, in order.
    async fn send(&self, jobs: &[Job]) -> Result<Vec<Vec<i64>>, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(self.grace_ms).arg(jobs.len());
        let mut keys: HashMap<String, usize> = HashMap::new();
        for job in jobs {
            match job.now_ms {
                Some(now) => invocation.arg(now),
                None => invocation.arg(""),
            };
            invocation
                .arg(job.ticket.as_deref().unwrap_or(""))
                .arg(job.asks.len());
            for ask in &job.asks {
                let base = bucket_base(&self.prefix, &ask.bucket);
                let next = keys.len() + 1;
                let index = *keys.entry(base).or_insert_with_key(|base| {
                    invocation.key(base);
                    next
                });
                invocation
                    .arg(index)
                    .arg(ask.bucket.window.as_str())
                    .arg(ask.limit.min(MAX_EXACT))
                    .arg(ask.amount);
            }
        }
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| CounterError(format!("Redis at {}: {e}", self.target)))?;
        let call = invocation.invoke_async::<Vec<Vec<i64>>>(&mut conn.conn);
        let replies = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                conn.note_error(&e);
                return Err(CounterError(format!("Redis at {}: {e}", self.target)));
            }
            Err(_) => {
                conn.broken = true;
                return Err(CounterError(format!(
                    "Redis at {} did not answer within {} ms",
                    self.target,
                    CALL_TIMEOUT.as_millis()
                )));
            }
        };
        if replies.len() != jobs.len() {
            return Err(CounterError(format!(
                "unexpected reply from the reserve script at {}: {} replies for {} reservations",
                self.target,
                replies.len(),
                jobs.len()
            )));
        }
        Ok(replies)
    }
}

/// `{prefix}:{level}:{id}:{metric}:{window}`: a bucket's key without its window start.
pub(super) fn bucket_base(prefix: &str, bucket: &Bucket) -> String {
    format!(
        "{prefix}:{}:{}:{}:{}",
        bucket.level.as_str(),
        bucket.id,
        bucket.metric.as_str(),
        bucket.window.as_str()
    )
}
