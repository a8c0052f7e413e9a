//! The [`MemoryStore`] runs the shared store conformance suite from `llmur-testkit`.

use std::sync::Arc;

use llmur_core::{MemoryStore, Store};

#[tokio::test]
async fn memory_store_conforms() {
    llmur_testkit::conformance::run_store_suite(|| async {
        Arc::new(MemoryStore::new()) as Arc<dyn Store>
    })
    .await
}

/// The same checks, one test each (exercises the per-check macro backends may use).
mod each_check {
    use std::sync::Arc;

    use llmur_core::{MemoryStore, Store};

    llmur_testkit::store_conformance_tests!(|| async {
        Arc::new(MemoryStore::new()) as Arc<dyn Store>
    });
}
