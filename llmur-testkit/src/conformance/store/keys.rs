//! Checks for virtual keys and their deployment links.

use llmur_core::store::types::*;
use llmur_core::{DeploymentId, ProjectId, Store, StoreErrorKind, VirtualKeyId};
use uuid::Uuid;

use super::{Step, ids, sorted};
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// Create (`NotFound` for an unknown project, `Conflict` on a taken hash or id), get by id
/// and by exact hash, list by project.
pub async fn virtual_keys_crud(s: &dyn Store) {
    let p1 = s.create_project(sample_project("p1")).await.must("p1");
    let p2 = s.create_project(sample_project("p2")).await.must("p2");
    must_fail(
        s.create_virtual_key(sample_key(ProjectId(Uuid::now_v7()), "orphan"))
            .await,
        StoreErrorKind::NotFound,
        "a key of an unknown project",
    );
    let k1 = sample_key(p1.id, "hash-1");
    let mut k2 = sample_key(p1.id, "hash-2");
    k2.description = None;
    k2.blocked = true;
    let k3 = sample_key(p2.id, "hash-3");
    for key in [&k1, &k2, &k3] {
        assert_eq!(
            s.create_virtual_key(key.clone()).await.must("create key"),
            *key
        );
    }
    must_fail(
        s.create_virtual_key(sample_key(p2.id, "hash-1")).await,
        StoreErrorKind::Conflict,
        "a key with a taken hash (even in another project)",
    );
    let mut same_id = sample_key(p1.id, "hash-new");
    same_id.id = k1.id;
    must_fail(
        s.create_virtual_key(same_id).await,
        StoreErrorKind::Conflict,
        "a key with a taken id",
    );

    assert_eq!(s.get_virtual_key(k1.id).await.must("get k1"), k1);
    assert_eq!(
        s.get_virtual_key(k2.id).await.must("get k2"),
        k2,
        "description None and blocked round-trip"
    );
    assert_eq!(
        s.get_virtual_key_by_hash("hash-3").await.must("by hash"),
        k3
    );
    must_fail(
        s.get_virtual_key_by_hash("HASH-3").await,
        StoreErrorKind::NotFound,
        "hashes compare exactly",
    );
    must_fail(
        s.get_virtual_key(VirtualKeyId(Uuid::now_v7())).await,
        StoreErrorKind::NotFound,
        "an unknown key id",
    );

    let cases = [
        ("project p1", Some(p1.id), sorted(vec![k1.id.0, k2.id.0])),
        ("project p2", Some(p2.id), vec![k3.id.0]),
        ("no filter", None, sorted(vec![k1.id.0, k2.id.0, k3.id.0])),
        ("unknown project", Some(ProjectId(Uuid::now_v7())), vec![]),
    ];
    for (what, project, expected) in cases {
        let got = s.list_virtual_keys(project, all()).await.must(what);
        assert_eq!(ids(&got.items, |k| k.id.0), expected, "filter: {what}");
        assert_eq!(got.next, None);
    }
}

/// Every patch field on its own, `Some(None)` clears the description; an empty patch
/// changes nothing; an unknown id is `NotFound`.
pub async fn virtual_keys_update_patch(s: &dyn Store) {
    let project = s.create_project(sample_project("p")).await.must("project");
    let mut expected = s
        .create_virtual_key(sample_key(project.id, "hash"))
        .await
        .must("key");
    let other = s
        .create_virtual_key(sample_key(project.id, "other"))
        .await
        .must("other key");
    let id = expected.id;
    let unchanged = s
        .update_virtual_key(id, VirtualKeyPatch::default())
        .await
        .must("empty patch");
    assert_eq!(unchanged, expected, "an empty patch changes nothing");
    let steps: [Step<VirtualKeyPatch, StoredVirtualKey>; 6] = [
        (
            "alias",
            VirtualKeyPatch {
                alias: Some("ci-key".into()),
                ..VirtualKeyPatch::default()
            },
            |k| k.alias = "ci-key".into(),
        ),
        (
            "description set",
            VirtualKeyPatch {
                description: Some(Some("used by CI".into())),
                ..VirtualKeyPatch::default()
            },
            |k| k.description = Some("used by CI".into()),
        ),
        (
            "description cleared",
            VirtualKeyPatch {
                description: Some(None),
                ..VirtualKeyPatch::default()
            },
            |k| k.description = None,
        ),
        (
            "blocked",
            VirtualKeyPatch {
                blocked: Some(true),
                ..VirtualKeyPatch::default()
            },
            |k| k.blocked = true,
        ),
        (
            "limits",
            VirtualKeyPatch {
                limits: Some(full_limits()),
                ..VirtualKeyPatch::default()
            },
            |k| k.limits = full_limits(),
        ),
        (
            "unblocked",
            VirtualKeyPatch {
                blocked: Some(false),
                ..VirtualKeyPatch::default()
            },
            |k| k.blocked = false,
        ),
    ];
    for (field, patch, apply) in steps {
        apply(&mut expected);
        let updated = s.update_virtual_key(id, patch).await.must(field);
        assert_eq!(
            updated, expected,
            "update_virtual_key returns the patched {field}"
        );
        assert_eq!(
            s.get_virtual_key(id).await.must("get"),
            expected,
            "patching {field} is stored and changes nothing else"
        );
    }
    assert_eq!(s.get_virtual_key(other.id).await.must("other"), other);
    must_fail(
        s.update_virtual_key(VirtualKeyId(Uuid::now_v7()), VirtualKeyPatch::default())
            .await,
        StoreErrorKind::NotFound,
        "update_virtual_key of an unknown id",
    );
}

/// Deleting a key deletes its deployment links, not the deployments nor other keys' links;
/// its hash is free again.
pub async fn virtual_keys_delete_cascades_links(s: &dyn Store) {
    let project = s.create_project(sample_project("p")).await.must("project");
    let k1 = s
        .create_virtual_key(sample_key(project.id, "hash-1"))
        .await
        .must("k1");
    let k2 = s
        .create_virtual_key(sample_key(project.id, "hash-2"))
        .await
        .must("k2");
    let d1 = s
        .create_deployment(sample_deployment("d1"))
        .await
        .must("d1");
    let d2 = s
        .create_deployment(sample_deployment("d2"))
        .await
        .must("d2");
    let mut doomed = Vec::new();
    for d in [&d1, &d2] {
        doomed.push(
            s.create_virtual_key_deployment(sample_key_deployment(k1.id, d.id))
                .await
                .must("k1 link"),
        );
    }
    let kept = s
        .create_virtual_key_deployment(sample_key_deployment(k2.id, d1.id))
        .await
        .must("k2 link");

    s.delete_virtual_key(k1.id).await.must("delete k1");
    must_fail(
        s.get_virtual_key(k1.id).await,
        StoreErrorKind::NotFound,
        "a deleted key",
    );
    for link in &doomed {
        must_fail(
            s.get_virtual_key_deployment(link.id).await,
            StoreErrorKind::NotFound,
            "a deleted key's link",
        );
    }
    let left = s
        .list_virtual_key_deployments(None, None, all())
        .await
        .must("links");
    assert_eq!(left.items, vec![kept]);
    assert_eq!(s.get_deployment(d1.id).await.must("d1"), d1);
    assert_eq!(s.get_deployment(d2.id).await.must("d2"), d2);
    assert_eq!(s.get_project(project.id).await.must("project"), project);
    must_fail(
        s.delete_virtual_key(k1.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted key",
    );
    s.create_virtual_key(sample_key(project.id, "hash-1"))
        .await
        .must("a deleted key's hash is free again");
}

/// Key links: bad references `NotFound`, a linked pair `Conflict`, get, filters, delete.
pub async fn virtual_key_deployments_crud(s: &dyn Store) {
    let project = s.create_project(sample_project("p")).await.must("project");
    let k1 = s
        .create_virtual_key(sample_key(project.id, "hash-1"))
        .await
        .must("k1");
    let k2 = s
        .create_virtual_key(sample_key(project.id, "hash-2"))
        .await
        .must("k2");
    let d1 = s
        .create_deployment(sample_deployment("d1"))
        .await
        .must("d1");
    let d2 = s
        .create_deployment(sample_deployment("d2"))
        .await
        .must("d2");
    must_fail(
        s.create_virtual_key_deployment(sample_key_deployment(VirtualKeyId(Uuid::now_v7()), d1.id))
            .await,
        StoreErrorKind::NotFound,
        "a link of an unknown key",
    );
    must_fail(
        s.create_virtual_key_deployment(sample_key_deployment(k1.id, DeploymentId(Uuid::now_v7())))
            .await,
        StoreErrorKind::NotFound,
        "a link to an unknown deployment",
    );
    let mut links = Vec::new();
    for (k, d) in [(k1.id, d1.id), (k1.id, d2.id), (k2.id, d1.id)] {
        let link = sample_key_deployment(k, d);
        assert_eq!(
            s.create_virtual_key_deployment(link.clone())
                .await
                .must("create link"),
            link
        );
        links.push(link);
    }
    must_fail(
        s.create_virtual_key_deployment(sample_key_deployment(k1.id, d1.id))
            .await,
        StoreErrorKind::Conflict,
        "linking a linked pair again",
    );
    assert_eq!(
        s.get_virtual_key_deployment(links[1].id).await.must("get"),
        links[1]
    );
    let of = |i: &[usize]| sorted(i.iter().map(|&i| links[i].id.0).collect());
    let cases = [
        ("key k1", Some(k1.id), None, of(&[0, 1])),
        ("deployment d1", None, Some(d1.id), of(&[0, 2])),
        ("k2 to d1", Some(k2.id), Some(d1.id), of(&[2])),
        ("k2 to d2", Some(k2.id), Some(d2.id), vec![]),
        ("no filter", None, None, of(&[0, 1, 2])),
        (
            "unknown key",
            Some(VirtualKeyId(Uuid::now_v7())),
            None,
            vec![],
        ),
    ];
    for (what, key, deployment, expected) in cases {
        let got = s
            .list_virtual_key_deployments(key, deployment, all())
            .await
            .must(what);
        assert_eq!(ids(&got.items, |l| l.id.0), expected, "filter: {what}");
        assert_eq!(got.next, None);
    }
    s.delete_virtual_key_deployment(links[0].id)
        .await
        .must("delete");
    must_fail(
        s.get_virtual_key_deployment(links[0].id).await,
        StoreErrorKind::NotFound,
        "a deleted link",
    );
    must_fail(
        s.delete_virtual_key_deployment(links[0].id).await,
        StoreErrorKind::NotFound,
        "delete a deleted link",
    );
    must_fail(
        s.get_virtual_key_deployment(VirtualKeyDeploymentId::new_v7())
            .await,
        StoreErrorKind::NotFound,
        "an unknown link",
    );
    s.create_virtual_key_deployment(sample_key_deployment(k1.id, d1.id))
        .await
        .must("an unlinked pair can be linked again");
}
