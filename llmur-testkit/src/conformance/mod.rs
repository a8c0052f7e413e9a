//! The conformance suite every [`Store`] backend runs (memory, SQLite, PostgreSQL).
//!
//! Owns: the checks ([`store`]), the record builders they use ([`fixtures`]) and the
//! runners. Must not touch: any backend; checks see only `&dyn Store`.
//!
//! Every check gets a fresh, empty store and fails by panicking with a message that names
//! what went wrong. Run them all in one test:
//!
//! ```
//! use std::sync::Arc;
//! use llmur_core::{MemoryStore, Store};
//!
//! # async fn demo() {
//! llmur_testkit::conformance::run_store_suite(|| async {
//!     Arc::new(MemoryStore::new()) as Arc<dyn Store>
//! })
//! .await;
//! # }
//! ```
//!
//! or one `#[tokio::test]` per check with [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! [`counter`] holds the separate suite every `UsageCounter` runs (in-memory, Redis).
//!
//! # The contract, as checked
//!
//! Beyond the doc comment of `llmur_core::store`, the checks pin down:
//!
//! - **Pagination**: ascending by id (not by insertion order); `after` is exclusive and
//!   need not name an existing row; `next` is `Some(last returned id)` iff at least one more
//!   matching row follows, else `None` (a full last page has `next == None`). `limit` must
//!   be in `1..=1000`, otherwise `Invalid`. Filters apply before paging. A filter naming an
//!   unknown user/project/key/… gives an empty page, not `NotFound`.
//! - **Ids**: inserting a row whose id exists is `Conflict`.
//! - **Emails** are unique and looked up ASCII-case-insensitively; deployment names,
//!   invite codes, key hashes and session token hashes are unique and compared exactly
//!   (a duplicate session token hash is `Conflict`; a session for an unknown user is
//!   `NotFound`).
//! - **Weights** of connection↔deployment links are `0..=100`; more is `Invalid` on create
//!   and on re-weight.
//! - **Patches** change exactly the fields that are `Some`; an empty patch succeeds and
//!   changes nothing. `revoke_session` is idempotent.
//! - **Catalog version**: strictly greater after every successful create, update or delete
//!   of a project, connection, deployment, link or key; unchanged by a failed write. Its
//!   starting value is not fixed. `load_catalog` returns every row (blocked ones too), each
//!   list ascending by id, with `version == catalog_version()`.
//! - **Round trips**: every field comes back as written — secrets byte for byte, `f64`s
//!   (prices, budgets) exactly, `None` windows as `None`.
//! - **Request logs** carry no foreign keys (logs of deleted or unknown keys are kept);
//!   times and durations round-trip at millisecond precision; `list_request_logs` is
//!   newest first by `started_at` (ties: unspecified), at most `limit` (0 gives none).
//! - **Concurrency**: concurrent creates are atomic — of ten users with one email exactly
//!   one is created, the others fail with `Conflict`.

pub mod counter;
pub mod fixtures;
pub mod store;

use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use llmur_core::{Store, StoreErrorKind, StoreResult};

/// A store as the runners hand it out.
pub type DynStore = Arc<dyn Store>;

/// The list of checks, in running order; `$callback` receives `[$($args)*]` and the names.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_checks {
    ($callback:ident [$($args:tt)*]) => {
        $crate::$callback! { [$($args)*]
            users_crud,
            users_email_conflict,
            users_update_patch,
            users_delete_cascades,
            sessions_crud,
            projects_crud,
            projects_list_by_member,
            projects_delete_cascades,
            memberships_crud,
            memberships_list_filters,
            invites_crud,
            connections_crud,
            connections_update_patch,
            connections_delete_cascades_links,
            deployments_crud,
            deployments_name_conflict,
            deployments_update_patch,
            deployments_delete_cascades_links,
            connection_deployments_crud,
            virtual_keys_crud,
            virtual_keys_update_patch,
            virtual_keys_delete_cascades_links,
            virtual_key_deployments_crud,
            catalog_version_bumps,
            catalog_version_ignores_failed_writes,
            load_catalog_consistent,
            limits_round_trip,
            request_logs,
            pagination_next_semantics,
            pagination_every_list,
            pagination_limit_bounds,
            concurrent_creates_distinct_emails,
            concurrent_creates_same_email,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_check_names {
    ([] $($name:ident),* $(,)?) => {
        &[$(stringify!($name)),*]
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_check_run {
    ([$make:expr] $($name:ident),* $(,)?) => {
        $({
            let store: $crate::conformance::DynStore = ($make)().await;
            $crate::conformance::run_check(
                stringify!($name),
                $crate::conformance::store::$name(store.as_ref()),
            )
            .await;
        })*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_check_tests {
    ([$make:expr] $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $name() {
                let store: $crate::conformance::DynStore = ($make)().await;
                $crate::conformance::store::$name(store.as_ref()).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per store check, each on a fresh store from `$make`
/// (an expression callable as `$make()` returning a future of
/// [`DynStore`](crate::conformance::DynStore)). Use it inside a module of its own; the
/// calling crate needs `tokio` with the `macros` and `rt` features.
///
/// ```
/// mod memory_store {
///     use std::sync::Arc;
///     use llmur_core::{MemoryStore, Store};
///
///     llmur_testkit::store_conformance_tests!(|| async {
///         Arc::new(MemoryStore::new()) as Arc<dyn Store>
///     });
/// }
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr $(,)?) => {
        $crate::__store_checks!(__store_check_tests[$make]);
    };
}

/// The names of every check, in the order [`run_store_suite`] runs them; each is a function
/// in [`store`].
pub const STORE_CHECKS: &[&str] = __store_checks!(__store_check_names[]);

/// Runs every store check, each against a fresh store from `make`; panics with the failing
/// check's name on the first failure.
pub async fn run_store_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    __store_checks!(__store_check_run[make]);
}

/// Runs one check, turning its panic into one that names the check.
#[doc(hidden)]
#[expect(
    clippy::panic,
    reason = "a failed conformance check fails the calling test"
)]
pub async fn run_check(name: &str, check: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(check).catch_unwind().await {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("store conformance check `{name}` failed: {message}");
    }
}

/// Unwrapping for checks: a check fails by panicking with a message naming the step.
pub(crate) trait Must<T> {
    /// The value, or a panic naming `what` and the error.
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for StoreResult<T> {
    #[track_caller]
    #[expect(
        clippy::panic,
        reason = "a failed conformance check fails the calling test"
    )]
    fn must(self, what: &str) -> T {
        match self {
            Ok(value) => value,
            Err(err) => panic!("{what}: unexpected error: {err}"),
        }
    }
}

/// Fails unless `result` is an error of `kind`.
#[track_caller]
#[expect(
    clippy::panic,
    reason = "a failed conformance check fails the calling test"
)]
pub(crate) fn must_fail<T: Debug>(result: StoreResult<T>, kind: StoreErrorKind, what: &str) {
    match result {
        Err(err) if err.kind() == kind => {}
        Err(err) => panic!("{what}: expected {kind:?}, got error {err}"),
        Ok(value) => panic!("{what}: expected {kind:?}, got Ok({value:?})"),
    }
}
