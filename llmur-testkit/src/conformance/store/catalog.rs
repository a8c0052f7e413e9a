//! Checks for the catalog version, `load_catalog` and limits round-trips.

use llmur_core::store::types::*;
use llmur_core::{ConnectionId, DeploymentId, ProjectId, Store, StoreErrorKind, VirtualKeyId};
use uuid::Uuid;

use super::version;
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// Tracks the catalog version across writes.
struct Versions<'a> {
    store: &'a dyn Store,
    last: i64,
}

impl<'a> Versions<'a> {
    async fn new(store: &'a dyn Store) -> Self {
        let last = version(store).await;
        Self { store, last }
    }

    /// Fails unless the version increased since the last call.
    async fn bumped(&mut self, after: &str) {
        let now = version(self.store).await;
        assert!(
            now > self.last,
            "the catalog version must increase after {after} (was {}, is {now})",
            self.last
        );
        self.last = now;
    }

    /// Fails unless the version is unchanged since the last call.
    async fn unchanged(&mut self, after: &str) {
        let now = version(self.store).await;
        assert_eq!(
            now, self.last,
            "the catalog version must not change after {after}"
        );
    }
}

/// The catalog version strictly increases after every create, update and delete of a
/// project, connection, deployment, link or key (cascading deletes included).
pub async fn catalog_version_bumps(s: &dyn Store) {
    let mut v = Versions::new(s).await;
    let project = s.create_project(sample_project("p")).await.must("project");
    v.bumped("create_project").await;
    s.update_project(project.id, Some("p2".into()), None)
        .await
        .must("update project");
    v.bumped("update_project").await;
    let connection = s
        .create_connection(sample_connection())
        .await
        .must("connection");
    v.bumped("create_connection").await;
    s.update_connection(
        connection.id,
        ConnectionPatch {
            model: Some("gpt-4o".into()),
            ..ConnectionPatch::default()
        },
    )
    .await
    .must("update connection");
    v.bumped("update_connection").await;
    let deployment = s
        .create_deployment(sample_deployment("d"))
        .await
        .must("deployment");
    v.bumped("create_deployment").await;
    s.update_deployment(
        deployment.id,
        DeploymentPatch {
            blocked: Some(true),
            ..DeploymentPatch::default()
        },
    )
    .await
    .must("update deployment");
    v.bumped("update_deployment").await;
    let route = s
        .create_connection_deployment(sample_connection_deployment(
            connection.id,
            deployment.id,
            1,
        ))
        .await
        .must("connection link");
    v.bumped("create_connection_deployment").await;
    s.update_connection_deployment(route.id, 2)
        .await
        .must("reweight");
    v.bumped("update_connection_deployment").await;
    let key = s
        .create_virtual_key(sample_key(project.id, "hash"))
        .await
        .must("key");
    v.bumped("create_virtual_key").await;
    s.update_virtual_key(
        key.id,
        VirtualKeyPatch {
            blocked: Some(true),
            ..VirtualKeyPatch::default()
        },
    )
    .await
    .must("update key");
    v.bumped("update_virtual_key").await;
    let grant = s
        .create_virtual_key_deployment(sample_key_deployment(key.id, deployment.id))
        .await
        .must("key link");
    v.bumped("create_virtual_key_deployment").await;
    s.delete_virtual_key_deployment(grant.id)
        .await
        .must("delete key link");
    v.bumped("delete_virtual_key_deployment").await;
    s.delete_connection_deployment(route.id)
        .await
        .must("delete connection link");
    v.bumped("delete_connection_deployment").await;
    s.delete_virtual_key(key.id).await.must("delete key");
    v.bumped("delete_virtual_key").await;
    s.delete_deployment(deployment.id)
        .await
        .must("delete deployment");
    v.bumped("delete_deployment").await;
    s.delete_connection(connection.id)
        .await
        .must("delete connection");
    v.bumped("delete_connection").await;
    s.delete_project(project.id).await.must("delete project");
    v.bumped("delete_project").await;

    // Deletes that cascade bump too.
    let project = s.create_project(sample_project("q")).await.must("q");
    let key = s
        .create_virtual_key(sample_key(project.id, "hash-q"))
        .await
        .must("key q");
    let deployment = s
        .create_deployment(sample_deployment("e"))
        .await
        .must("deployment e");
    s.create_virtual_key_deployment(sample_key_deployment(key.id, deployment.id))
        .await
        .must("link q");
    v.bumped("creating a project, key, deployment and link")
        .await;
    s.delete_project(project.id)
        .await
        .must("delete project with keys");
    v.bumped("delete_project with keys and links").await;
    assert_eq!(
        s.load_catalog().await.must("load_catalog").version,
        v.last,
        "load_catalog reports the current version"
    );
}

/// A failed write (conflict, unknown row, invalid value) leaves the version unchanged.
pub async fn catalog_version_ignores_failed_writes(s: &dyn Store) {
    let project = s.create_project(sample_project("p")).await.must("project");
    let connection = s
        .create_connection(sample_connection())
        .await
        .must("connection");
    let deployment = s
        .create_deployment(sample_deployment("d"))
        .await
        .must("deployment");
    let key = s
        .create_virtual_key(sample_key(project.id, "hash"))
        .await
        .must("key");
    let mut v = Versions::new(s).await;

    must_fail(
        s.create_deployment(sample_deployment("d")).await,
        StoreErrorKind::Conflict,
        "duplicate deployment name",
    );
    v.unchanged("a conflicting create_deployment").await;
    must_fail(
        s.create_virtual_key(sample_key(project.id, "hash")).await,
        StoreErrorKind::Conflict,
        "duplicate key hash",
    );
    v.unchanged("a conflicting create_virtual_key").await;
    must_fail(
        s.create_virtual_key(sample_key(ProjectId(Uuid::now_v7()), "x"))
            .await,
        StoreErrorKind::NotFound,
        "key of an unknown project",
    );
    v.unchanged("create_virtual_key for an unknown project")
        .await;
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(
            connection.id,
            DeploymentId(Uuid::now_v7()),
            1,
        ))
        .await,
        StoreErrorKind::NotFound,
        "link to an unknown deployment",
    );
    v.unchanged("create_connection_deployment with a bad reference")
        .await;
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(
            connection.id,
            deployment.id,
            101,
        ))
        .await,
        StoreErrorKind::Invalid,
        "weight 101",
    );
    v.unchanged("create_connection_deployment with weight 101")
        .await;
    must_fail(
        s.update_connection(ConnectionId(Uuid::now_v7()), ConnectionPatch::default())
            .await,
        StoreErrorKind::NotFound,
        "update an unknown connection",
    );
    v.unchanged("update_connection of an unknown id").await;
    must_fail(
        s.delete_deployment(DeploymentId(Uuid::now_v7())).await,
        StoreErrorKind::NotFound,
        "delete an unknown deployment",
    );
    v.unchanged("delete_deployment of an unknown id").await;
    must_fail(
        s.delete_virtual_key(VirtualKeyId(Uuid::now_v7())).await,
        StoreErrorKind::NotFound,
        "delete an unknown key",
    );
    v.unchanged("delete_virtual_key of an unknown id").await;
    must_fail(
        s.update_project(ProjectId(Uuid::now_v7()), None, None)
            .await,
        StoreErrorKind::NotFound,
        "update an unknown project",
    );
    v.unchanged("update_project of an unknown id").await;
    assert_eq!(
        s.get_virtual_key(key.id).await.must("key"),
        key,
        "failed writes change no row"
    );
}

/// `load_catalog` returns every catalog row (blocked ones too), each list ascending by id,
/// with the current version; after changes it reflects them.
pub async fn load_catalog_consistent(s: &dyn Store) {
    let empty = s.load_catalog().await.must("load empty");
    assert_eq!(empty.version, version(s).await);
    assert!(
        empty.connections.is_empty()
            && empty.deployments.is_empty()
            && empty.connection_deployments.is_empty()
            && empty.virtual_keys.is_empty()
            && empty.virtual_key_deployments.is_empty()
            && empty.projects.is_empty(),
        "a fresh store has an empty catalog"
    );

    // Users, memberships and invites are not part of the catalog.
    let user = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("user");
    let mut projects = Vec::new();
    for name in ["p1", "p2"] {
        projects.push(s.create_project(sample_project(name)).await.must("project"));
    }
    s.create_membership(sample_membership(
        user.id,
        projects[0].id,
        ProjectRole::Admin,
    ))
    .await
    .must("membership");
    let connections = vec![
        s.create_connection(sample_connection())
            .await
            .must("connection 1"),
        s.create_connection(sample_azure_connection())
            .await
            .must("connection 2"),
    ];
    let mut blocked = sample_deployment("blocked");
    blocked.blocked = true;
    let deployments = vec![
        s.create_deployment(sample_deployment("open"))
            .await
            .must("deployment 1"),
        s.create_deployment(blocked).await.must("deployment 2"),
    ];
    let mut routes = Vec::new();
    for (c, d, w) in [(0, 0, 1), (1, 0, 2), (1, 1, 3)] {
        routes.push(
            s.create_connection_deployment(sample_connection_deployment(
                connections[c].id,
                deployments[d].id,
                w,
            ))
            .await
            .must("connection link"),
        );
    }
    let mut blocked_key = sample_key(projects[1].id, "hash-2");
    blocked_key.blocked = true;
    let keys = vec![
        s.create_virtual_key(sample_key(projects[0].id, "hash-1"))
            .await
            .must("key 1"),
        s.create_virtual_key(blocked_key).await.must("key 2"),
    ];
    let mut grants = Vec::new();
    for (k, d) in [(0, 0), (0, 1), (1, 1)] {
        grants.push(
            s.create_virtual_key_deployment(sample_key_deployment(keys[k].id, deployments[d].id))
                .await
                .must("key link"),
        );
    }

    let expected = CatalogData {
        version: version(s).await,
        connections: by_id(connections, |c| c.id.0),
        deployments: by_id(deployments, |d| d.id.0),
        connection_deployments: by_id(routes.clone(), |l| l.id.0),
        virtual_keys: by_id(keys.clone(), |k| k.id.0),
        virtual_key_deployments: by_id(grants.clone(), |l| l.id.0),
        projects: by_id(projects, |p| p.id.0),
    };
    let loaded = s.load_catalog().await.must("load");
    assert_eq!(loaded, expected, "load_catalog returns every row, by id");
    assert_eq!(loaded.version, version(s).await);

    s.delete_virtual_key(keys[0].id).await.must("delete key 1");
    s.delete_connection_deployment(routes[0].id)
        .await
        .must("delete route");
    let after = s.load_catalog().await.must("load after deletes");
    assert_eq!(after.version, version(s).await);
    assert!(after.version > loaded.version);
    assert_eq!(after.virtual_keys, vec![keys[1].clone()]);
    assert_eq!(after.virtual_key_deployments, vec![grants[2].clone()]);
    assert_eq!(
        after.connection_deployments,
        by_id(routes[1..].to_vec(), |l| l.id.0)
    );
}

fn by_id<T>(mut items: Vec<T>, id: impl Fn(&T) -> Uuid) -> Vec<T> {
    items.sort_by_key(|item| id(item));
    items
}

/// Limits (every window, fractional budgets; partial and empty ones) round-trip for
/// projects, connections, deployments and keys, on create, update and in `load_catalog`.
pub async fn limits_round_trip(s: &dyn Store) {
    for limits in [full_limits(), partial_limits(), Limits::default()] {
        let mut project = sample_project("p");
        project.limits = limits;
        let project = s.create_project(project).await.must("project");
        assert_eq!(
            s.get_project(project.id).await.must("get project").limits,
            limits
        );
        let mut connection = sample_connection();
        connection.limits = limits;
        let connection = s.create_connection(connection).await.must("connection");
        assert_eq!(
            s.get_connection(connection.id)
                .await
                .must("get connection")
                .limits,
            limits
        );
        let mut deployment = sample_deployment(&format!("d-{}", Uuid::now_v7()));
        deployment.limits = limits;
        let deployment = s.create_deployment(deployment).await.must("deployment");
        assert_eq!(
            s.get_deployment(deployment.id)
                .await
                .must("get deployment")
                .limits,
            limits
        );
        let mut key = sample_key(project.id, &format!("hash-{}", Uuid::now_v7()));
        key.limits = limits;
        let key = s.create_virtual_key(key).await.must("key");
        assert_eq!(
            s.get_virtual_key(key.id).await.must("get key").limits,
            limits
        );

        // And through updates, to the full set.
        let full = full_limits();
        let updated = s
            .update_project(project.id, None, Some(full))
            .await
            .must("update project limits");
        assert_eq!(updated.limits, full);
        let patch = ConnectionPatch {
            limits: Some(full),
            ..ConnectionPatch::default()
        };
        s.update_connection(connection.id, patch)
            .await
            .must("update connection limits");
        let patch = DeploymentPatch {
            limits: Some(full),
            ..DeploymentPatch::default()
        };
        s.update_deployment(deployment.id, patch)
            .await
            .must("update deployment limits");
        let patch = VirtualKeyPatch {
            limits: Some(full),
            ..VirtualKeyPatch::default()
        };
        s.update_virtual_key(key.id, patch)
            .await
            .must("update key limits");
    }
    let catalog = s.load_catalog().await.must("load_catalog");
    let full = full_limits();
    assert!(catalog.projects.iter().all(|p| p.limits == full));
    assert!(catalog.connections.iter().all(|c| c.limits == full));
    assert!(catalog.deployments.iter().all(|d| d.limits == full));
    assert!(catalog.virtual_keys.iter().all(|k| k.limits == full));
    assert_eq!(catalog.projects.len(), 3);
    let budget = catalog.projects[0].limits.budget;
    assert_eq!(
        budget.per_hour,
        Some(12.5),
        "f64 budgets round-trip exactly"
    );
    assert_eq!(budget.per_month, Some(1_999.99));
}
