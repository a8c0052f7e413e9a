//! The PostgreSQL store on a real server (`LLMUR_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): the shared conformance suite, migrations and
//! concurrent writers. Every store gets a fresh namespace. Without a reachable server these
//! tests fail with a message saying how to start one; they never skip.

use std::sync::{Arc, Mutex};

use llmur_core::{Store, StoreErrorKind};
use llmur_server::db::testing::{
    TempDatabaseGuard, cleanup_all, fresh_postgres_database, postgres_admin_url,
};
use llmur_server::db::{connect, migrate};
use llmur_testkit::conformance::fixtures::{sample_project, sample_user};
use llmur_testkit::conformance::run_store_suite;

/// A fresh, migrated database; panics (failing the test) when PostgreSQL is unreachable.
#[expect(
    clippy::panic,
    reason = "test helper: fail loudly with the store's message"
)]
async fn fresh_store() -> (Arc<dyn Store>, TempDatabaseGuard) {
    let (url, guard) = fresh_database().await;
    let store = connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to a fresh PostgreSQL database: {e}"));
    (store, guard)
}

/// A fresh, empty database; panics with how to start PostgreSQL when it is unreachable.
#[expect(
    clippy::panic,
    reason = "test helper: fail loudly with the store's message"
)]
async fn fresh_database() -> (String, TempDatabaseGuard) {
    fresh_postgres_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn conformance() {
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
async fn migrations_are_idempotent_and_data_survives_reconnects() {
    let (url, guard) = fresh_database().await;
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

    let second = connect(&url).await.expect("connect again");
    assert_eq!(second.get_user(user.id).await.expect("user kept"), user);
    assert_eq!(second.catalog_version().await.expect("version"), version);
    drop(second);
    guard.cleanup().await.expect("removed");
}

/// Replicas starting together: concurrent `connect`s to one empty database all succeed
/// (the advisory lock serializes the migrations).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_migrate_once() {
    let (url, guard) = fresh_database().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for c in connects {
        stores.push(c.await.expect("task").expect("connect"));
    }
    assert_eq!(stores[0].count_users().await.expect("count"), 0);
    drop(stores);
    guard.cleanup().await.expect("removed");
}

/// 20 concurrent user creations from spawned tasks on a multi-thread runtime all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers() {
    let (store, guard) = fresh_store().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create_user(sample_user(&format!("user{i}@example.com")))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("create succeeds");
    }
    assert_eq!(store.count_users().await.expect("count"), 20);
    drop(store);
    guard.cleanup().await.expect("removed");
}

#[tokio::test]
async fn unreachable_server_is_unavailable_without_the_password() {
    let err = connect("postgres://llmur:hunter2@127.0.0.1:1/llmur")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert!(!err.message().contains("hunter2"), "{err}");
    assert!(err.message().contains("127.0.0.1:1"), "{err}");
}

/// Dropping the guard (not calling `cleanup`) inside a runtime removes the namespace too.
#[tokio::test]
async fn dropping_the_guard_removes_the_database() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let (url, guard) = fresh_database().await;
    let schema = url
        .rsplit("search_path%3D")
        .next()
        .expect("the URL names its schema")
        .to_owned();
    let store = connect(&url).await.expect("connect");
    store
        .create_user(sample_user("ann@example.com"))
        .await
        .expect("create");
    drop(store);
    drop(guard);

    let mut admin = AsyncPgConnection::establish(&postgres_admin_url())
        .await
        .expect("admin connection");
    let left: i64 = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{schema}'"
    ))
    .get_result::<Count>(&mut admin)
    .await
    .expect("query")
    .n;
    assert_eq!(left, 0, "schema {schema} is gone");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Request-log batches go through a connection of their own (`COPY`). When PostgreSQL
/// closes it (here: `pg_terminate_backend`), the next batch opens a new one; at most the
/// batch that finds it broken fails, as `Unavailable`, for the log writer to retry.
#[tokio::test]
async fn request_logs_reconnect_after_their_connection_is_terminated() {
    use llmur_core::VirtualKeyId;
    use llmur_testkit::conformance::fixtures::sample_request_log;

    let (url, guard) = fresh_database().await;
    // A name no other test's connections carry, to terminate this store's alone.
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let store = connect(&format!("{url}&application_name={name}"))
        .await
        .expect("connect");
    let key = VirtualKeyId(uuid::Uuid::now_v7());
    let logs: Vec<_> = (0..3)
        .map(|i| sample_request_log(key, 1_700_000_000_000 + i))
        .collect();
    store
        .insert_request_logs(&logs[..2])
        .await
        .expect("first batch");

    let terminate = |name: String| async move {
        let (admin, connection) =
            tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls)
                .await
                .expect("admin connection");
        tokio::spawn(connection);
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&format!("{name} request logs")],
            )
            .await
            .expect("terminate");
        row.get::<_, i64>(0)
    };
    assert_eq!(terminate(name.clone()).await, 1, "one log connection");

    match store.insert_request_logs(&logs[2..]).await {
        Ok(()) => {}
        Err(e) => {
            assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
            store
                .insert_request_logs(&logs[2..])
                .await
                .expect("the retry reconnects");
        }
    }
    let listed = store.list_request_logs(Some(key), 10).await.expect("list");
    assert_eq!(listed.len(), 3);
    // Newest first, every field kept (`RequestLog` has no `PartialEq`; its `Debug` shows
    // every field).
    assert_eq!(format!("{:?}", listed[0]), format!("{:?}", logs[2]));
    assert_eq!(terminate(name).await, 1, "a new log connection");
    drop(store);
    guard.cleanup().await.expect("removed");
}

/// PostgreSQL's `text` cannot hold NUL; a log row carrying one (in an upstream's error
/// message, say) is written with U+FFFD in its place instead of failing its whole batch.
#[tokio::test]
async fn request_logs_with_a_nul_are_written_with_a_replacement_character() {
    use llmur_core::VirtualKeyId;
    use llmur_testkit::conformance::fixtures::sample_request_log;

    let (store, guard) = fresh_store().await;
    let key = VirtualKeyId(uuid::Uuid::now_v7());
    let mut with_nul = sample_request_log(key, 1_700_000_000_001);
    with_nul.error = Some("upstream said \0 here".to_owned());
    with_nul.request_id = "req\0".to_owned();
    let plain = sample_request_log(key, 1_700_000_000_000);
    store
        .insert_request_logs(&[plain, with_nul])
        .await
        .expect("the batch is written");
    let listed = store.list_request_logs(Some(key), 10).await.expect("list");
    assert_eq!(listed.len(), 2, "no row of the batch is lost");
    assert_eq!(
        listed[0].error.as_deref(),
        Some("upstream said \u{FFFD} here")
    );
    assert_eq!(listed[0].request_id, "req\u{FFFD}");
    drop(store);
    guard.cleanup().await.expect("removed");
}

/// A NUL in any text (here a user's name, written past the admin API's checks) is the
/// caller's error, `Invalid`, not an internal one: PostgreSQL's `text` cannot hold it.
#[tokio::test]
async fn a_nul_in_a_value_is_invalid() {
    let (store, guard) = fresh_store().await;
    let mut user = sample_user("nul@example.com");
    user.name = "a\0b".to_owned();
    let err = store.create_user(user).await.expect_err("refused");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    drop(store);
    guard.cleanup().await.expect("removed");
}
