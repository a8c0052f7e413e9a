//! The in-memory usage counter passes the shared counter conformance suite.

use std::sync::Arc;

use llmur_core::counter::{MemoryCounter, UsageCounter};
use llmur_testkit::conformance::counter::run_counter_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    run_counter_suite(|| async { Arc::new(MemoryCounter::new()) as Arc<dyn UsageCounter> }).await;
}
