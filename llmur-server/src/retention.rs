//! Request-log retention: logs older than `request_log_retention_days` are deleted.
//!
//! Owns: [`run`] (the background sweep) and [`sweep`] (one pass). Must not touch: how logs
//! are written (`log_writer`). A failed sweep is logged and tried again at the next one;
//! nothing else depends on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use llmur_core::Store;
use llmur_core::StoreResult;
use llmur_core::store::types::Millis;

/// How often the sweep runs (the first one runs at start).
pub const EVERY: Duration = Duration::from_secs(3_600);

/// Deletes the logs that started more than `keep` before `now`; returns how many.
pub async fn sweep(store: &dyn Store, keep: Duration, now: SystemTime) -> StoreResult<u64> {
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    store
        .delete_request_logs_before(Millis::from_system(cutoff))
        .await
}

/// Sweeps every [`EVERY`], forever (the server aborts it on shutdown).
pub async fn run(store: Arc<dyn Store>, keep: Duration) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&*store, keep, SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "request logs past their retention deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "request-log retention sweep failed; retried next time")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use llmur_core::VirtualKeyId;
    use llmur_core::store::MemoryStore;
    use llmur_testkit::conformance::fixtures::sample_request_log;

    use super::*;

    #[tokio::test]
    async fn a_sweep_deletes_only_logs_older_than_the_retention() {
        let store = MemoryStore::new();
        let key = VirtualKeyId(uuid::Uuid::now_v7());
        let day = 86_400_000;
        let now_ms = 1_800_000_000_000u64;
        let logs = [
            sample_request_log(key, now_ms - 3 * day),
            sample_request_log(key, now_ms - day - 1),
            sample_request_log(key, now_ms - day + 1),
            sample_request_log(key, now_ms - 1),
        ];
        store.insert_request_logs(&logs).await.unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms);
        let deleted = sweep(&store, Duration::from_millis(day), now)
            .await
            .unwrap();
        assert_eq!(deleted, 2, "the two logs more than a day old");
        let left = store.list_request_logs(None, 10).await.unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(
            sweep(&store, Duration::from_millis(day), now)
                .await
                .unwrap(),
            0
        );
    }
}
