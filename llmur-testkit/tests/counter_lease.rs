//! Leases over a shared counter pass the counter conformance suite, with leases small
//! and short enough that the suite's limits take them.

use std::sync::Arc;
use std::time::Duration;

use llmur_core::counter::{LeaseOptions, LeasingCounter, MemoryCounter, UsageCounter};
use llmur_testkit::conformance::counter::run_counter_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    run_counter_suite(|| async {
        let options = LeaseOptions {
            requests: 8,
            ttl: Duration::from_millis(10),
            share: 4,
            grace: Duration::from_millis(5),
        };
        Arc::new(LeasingCounter::new(Arc::new(MemoryCounter::new()), options))
            as Arc<dyn UsageCounter>
    })
    .await;
}
