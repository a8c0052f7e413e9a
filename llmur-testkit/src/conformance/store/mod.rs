//! The store checks, one public async function each, every one taking a fresh, empty
//! store. [`run_store_suite`](super::run_store_suite) runs them all in the order of
//! [`STORE_CHECKS`](super::STORE_CHECKS).

mod accounts;
mod catalog;
mod keys;
mod misc;
mod projects;
mod routing;

pub use accounts::{
    sessions_crud, users_crud, users_delete_cascades, users_email_conflict, users_update_patch,
};
pub use catalog::{
    catalog_version_bumps, catalog_version_ignores_failed_writes, limits_round_trip,
    load_catalog_consistent,
};
pub use keys::{
    virtual_key_deployments_crud, virtual_keys_crud, virtual_keys_delete_cascades_links,
    virtual_keys_update_patch,
};
pub use misc::{
    concurrent_creates_distinct_emails, concurrent_creates_same_email, pagination_every_list,
    pagination_limit_bounds, pagination_next_semantics, request_logs,
};
pub use projects::{
    invites_crud, memberships_crud, memberships_list_filters, projects_crud,
    projects_delete_cascades, projects_list_by_member,
};
pub use routing::{
    connection_deployments_crud, connections_crud, connections_delete_cascades_links,
    connections_update_patch, deployments_crud, deployments_delete_cascades_links,
    deployments_name_conflict, deployments_update_patch,
};

use llmur_core::Store;
use uuid::Uuid;

use super::Must;

/// One step of a patch check: the field's name, a patch changing only it, and the same
/// change applied to the expected row.
type Step<P, R> = (&'static str, P, fn(&mut R));

/// The ids of `items`, in order.
fn ids<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    items.iter().map(id).collect()
}

/// `ids`, ascending.
fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

/// The current catalog version.
async fn version(s: &dyn Store) -> i64 {
    s.catalog_version().await.must("catalog_version")
}
