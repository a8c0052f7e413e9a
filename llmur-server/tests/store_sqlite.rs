//! The SQLite store on real database files: the shared conformance suite, migrations, and
//! concurrent writers.

use std::sync::{Arc, Mutex};

use llmur_core::store::types::PageRequest;
use llmur_core::{Store, StoreErrorKind};
use llmur_server::db::testing::{TempDatabaseGuard, cleanup_all, fresh_sqlite_url};
use llmur_server::db::{connect, migrate};
use llmur_testkit::conformance::fixtures::{sample_project, sample_user};
use llmur_testkit::conformance::run_store_suite;

/// A fresh file database, migrated; the guard deletes it.
#[expect(
    clippy::expect_used,
    reason = "test helper: a store that cannot open fails the test"
)]
async fn fresh_store() -> (Arc<dyn Store>, TempDatabaseGuard) {
    let (url, guard) = fresh_sqlite_url();
    let store = connect(&url).await.expect("a fresh SQLite file opens");
    (store, guard)
}

#[tokio::test]
async fn conformance_on_files() {
    let guards: Arc<Mutex<Vec<TempDatabaseGuard>>> = Arc::default();
    let kept = Arc::clone(&guards);
    run_store_suite(move || {
        let kept = Arc::clone(&kept);
        async move {
            let (store, guard) = fresh_store().await;
            kept.lock().unwrap().push(guard);
            store
        }
    })
    .await;
    let guards: Vec<_> = guards.lock().unwrap().drain(..).collect();
    cleanup_all(guards).await.expect("test databases removed");
}

#[tokio::test]
async fn conformance_in_memory() {
    run_store_suite(|| async {
        connect("sqlite::memory:")
            .await
            .expect("an in-memory SQLite opens")
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_reconnects() {
    let (url, guard) = fresh_sqlite_url();
    migrate(&url).await.expect("first migrate");
    migrate(&url).await.expect("second migrate is a no-op");

    let first = connect(&url).await.expect("first connect");
    let user = sample_user("ann@example.com");
    first.create_user(user.clone()).await.expect("create");
    first
        .create_project(sample_project("p"))
        .await
        .expect("project");
    let version = first.catalog_version().await.expect("version");
    drop(first);

    let second = connect(&url)
        .await
        .expect("connect again to a migrated file");
    assert_eq!(second.get_user(user.id).await.expect("user kept"), user);
    assert_eq!(second.catalog_version().await.expect("version"), version);
    drop(second);
    guard.cleanup().await.expect("removed");
}

/// Two stores on one file act like two processes: 2 × 20 concurrent user creations from
/// spawned tasks all succeed (writers queue; nothing fails with SQLITE_BUSY), with reads
/// running alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_see_busy() {
    let (url, guard) = fresh_sqlite_url();
    let a = connect(&url).await.expect("store a");
    let b = connect(&url).await.expect("store b");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.push(tokio::spawn(async move {
            store
                .create_user(sample_user(&format!("user{i}@example.com")))
                .await?;
            store.list_users(PageRequest::default()).await.map(|_| ())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("write and read succeed");
    }
    assert_eq!(a.count_users().await.expect("count"), 40);
    assert_eq!(b.count_users().await.expect("count"), 40);
    drop((a, b));
    guard.cleanup().await.expect("removed");
}

#[tokio::test]
async fn urls_are_checked() {
    let err = connect("mysql://localhost/llmur")
        .await
        .expect_err("unknown scheme");
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
    assert!(err.message().contains("mysql"), "{err}");

    let err = connect("sqlite:///nonexistent-dir-llmur/sub/x.db")
        .await
        .expect_err("a file in a missing directory");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
}
