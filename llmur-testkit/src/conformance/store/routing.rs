//! Checks for connections, deployments and the links between them.

use llmur_core::store::types::*;
use llmur_core::{Access, ConnectionId, DeploymentId, Store, StoreErrorKind, Strategy};
use uuid::Uuid;

use super::{Step, ids, sorted};
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// Create, get, list, count; secrets round-trip byte for byte, price and api-version
/// `Some` and `None`; unknown ids are `NotFound`; a taken id is `Conflict`.
pub async fn connections_crud(s: &dyn Store) {
    assert_eq!(s.count_connections().await.must("count"), 0);
    let openai = sample_connection();
    let azure = sample_azure_connection();
    assert_eq!(
        s.create_connection(openai.clone())
            .await
            .must("create openai"),
        openai
    );
    assert_eq!(
        s.create_connection(azure.clone())
            .await
            .must("create azure"),
        azure
    );
    let mut same_id = sample_connection();
    same_id.id = openai.id;
    must_fail(
        s.create_connection(same_id).await,
        StoreErrorKind::Conflict,
        "create_connection with a taken id",
    );

    let got = s.get_connection(openai.id).await.must("get openai");
    assert_eq!(got, openai, "price None and api_version None round-trip");
    let got = s.get_connection(azure.id).await.must("get azure");
    assert_eq!(got, azure, "price and api_version round-trip");
    assert_eq!(got.api_key.key_version, azure.api_key.key_version);
    assert_eq!(got.api_key.nonce, azure.api_key.nonce, "nonce byte-exact");
    assert_eq!(
        got.api_key.ciphertext, azure.api_key.ciphertext,
        "ciphertext byte-exact"
    );
    must_fail(
        s.get_connection(ConnectionId(Uuid::now_v7())).await,
        StoreErrorKind::NotFound,
        "an unknown connection",
    );

    let listed = s.list_connections(all()).await.must("list");
    assert_eq!(
        ids(&listed.items, |c| c.id.0),
        sorted(vec![openai.id.0, azure.id.0])
    );
    assert_eq!(listed.next, None);
    assert_eq!(s.count_connections().await.must("count"), 2);
}

/// A price for patches.
const PRICE: Price = Price {
    input_per_million: 2.5,
    output_per_million: 10.0,
};

/// Every patch field on its own, `Some(None)` clears api-version and price; an empty patch
/// changes nothing; an unknown id is `NotFound`.
pub async fn connections_update_patch(s: &dyn Store) {
    let mut expected = s
        .create_connection(sample_azure_connection())
        .await
        .must("create");
    let other = s
        .create_connection(sample_connection())
        .await
        .must("create other");
    let id = expected.id;
    let unchanged = s
        .update_connection(id, ConnectionPatch::default())
        .await
        .must("empty patch");
    assert_eq!(unchanged, expected, "an empty patch changes nothing");

    let steps: [Step<ConnectionPatch, StoredConnection>; 8] = [
        (
            "api_endpoint",
            ConnectionPatch {
                api_endpoint: Some("https://other.openai.azure.com".into()),
                ..ConnectionPatch::default()
            },
            |c| c.api_endpoint = "https://other.openai.azure.com".into(),
        ),
        (
            "model",
            ConnectionPatch {
                model: Some("gpt-4o".into()),
                ..ConnectionPatch::default()
            },
            |c| c.model = "gpt-4o".into(),
        ),
        (
            "api_version set",
            ConnectionPatch {
                api_version: Some(Some("2025-01-01-preview".into())),
                ..ConnectionPatch::default()
            },
            |c| c.api_version = Some("2025-01-01-preview".into()),
        ),
        (
            "api_version cleared",
            ConnectionPatch {
                api_version: Some(None),
                ..ConnectionPatch::default()
            },
            |c| c.api_version = None,
        ),
        (
            "api_key",
            ConnectionPatch {
                api_key: Some(sample_secret(7)),
                ..ConnectionPatch::default()
            },
            |c| c.api_key = sample_secret(7),
        ),
        (
            "price set",
            ConnectionPatch {
                price: Some(Some(PRICE)),
                ..ConnectionPatch::default()
            },
            |c| c.price = Some(PRICE),
        ),
        (
            "price cleared",
            ConnectionPatch {
                price: Some(None),
                ..ConnectionPatch::default()
            },
            |c| c.price = None,
        ),
        (
            "limits",
            ConnectionPatch {
                limits: Some(full_limits()),
                ..ConnectionPatch::default()
            },
            |c| c.limits = full_limits(),
        ),
    ];
    for (field, patch, apply) in steps {
        apply(&mut expected);
        let updated = s.update_connection(id, patch).await.must(field);
        assert_eq!(
            updated, expected,
            "update_connection returns the patched {field}"
        );
        assert_eq!(
            s.get_connection(id).await.must("get"),
            expected,
            "patching {field} is stored and changes nothing else"
        );
    }
    assert_eq!(
        s.get_connection(other.id).await.must("other"),
        other,
        "other connections are untouched"
    );
    must_fail(
        s.update_connection(ConnectionId(Uuid::now_v7()), ConnectionPatch::default())
            .await,
        StoreErrorKind::NotFound,
        "update_connection of an unknown id",
    );
}

/// Deleting a connection deletes its links, not the deployments nor other links.
pub async fn connections_delete_cascades_links(s: &dyn Store) {
    let c1 = s.create_connection(sample_connection()).await.must("c1");
    let c2 = s.create_connection(sample_connection()).await.must("c2");
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
            s.create_connection_deployment(sample_connection_deployment(c1.id, d.id, 1))
                .await
                .must("c1 link"),
        );
    }
    let kept = s
        .create_connection_deployment(sample_connection_deployment(c2.id, d1.id, 1))
        .await
        .must("c2 link");

    s.delete_connection(c1.id).await.must("delete c1");
    must_fail(
        s.get_connection(c1.id).await,
        StoreErrorKind::NotFound,
        "a deleted connection",
    );
    for link in &doomed {
        must_fail(
            s.get_connection_deployment(link.id).await,
            StoreErrorKind::NotFound,
            "a deleted connection's link",
        );
    }
    let left = s
        .list_connection_deployments(None, None, all())
        .await
        .must("links");
    assert_eq!(left.items, vec![kept]);
    assert_eq!(s.get_deployment(d1.id).await.must("d1"), d1);
    assert_eq!(s.get_deployment(d2.id).await.must("d2"), d2);
    assert_eq!(s.count_connections().await.must("count"), 1);
    must_fail(
        s.delete_connection(c1.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted connection",
    );
}

/// Create, get by id and by exact name, list; unknown ids and names are `NotFound`.
pub async fn deployments_crud(s: &dyn Store) {
    let chat = sample_deployment("chat");
    let mut embed = sample_deployment("embed");
    embed.access = Access::Public;
    embed.strategy = Strategy::WeightedLeastConnections;
    embed.blocked = true;
    assert_eq!(
        s.create_deployment(chat.clone()).await.must("create chat"),
        chat
    );
    assert_eq!(
        s.create_deployment(embed.clone())
            .await
            .must("create embed"),
        embed
    );
    let mut same_id = sample_deployment("other");
    same_id.id = chat.id;
    must_fail(
        s.create_deployment(same_id).await,
        StoreErrorKind::Conflict,
        "create_deployment with a taken id",
    );
    assert_eq!(s.get_deployment(chat.id).await.must("get chat"), chat);
    assert_eq!(
        s.get_deployment(embed.id).await.must("get embed"),
        embed,
        "access, strategy and blocked round-trip"
    );
    assert_eq!(
        s.get_deployment_by_name("embed").await.must("by name"),
        embed
    );
    must_fail(
        s.get_deployment_by_name("CHAT").await,
        StoreErrorKind::NotFound,
        "names compare exactly (case-sensitively)",
    );
    must_fail(
        s.get_deployment_by_name("missing").await,
        StoreErrorKind::NotFound,
        "an unknown name",
    );
    must_fail(
        s.get_deployment(DeploymentId(Uuid::now_v7())).await,
        StoreErrorKind::NotFound,
        "an unknown id",
    );
    let listed = s.list_deployments(all()).await.must("list");
    assert_eq!(
        ids(&listed.items, |d| d.id.0),
        sorted(vec![chat.id.0, embed.id.0])
    );
    assert_eq!(listed.next, None);
}

/// A taken name is `Conflict` on create and on rename (renaming to its own name is fine);
/// a freed name can be taken again.
pub async fn deployments_name_conflict(s: &dyn Store) {
    let a = s.create_deployment(sample_deployment("a")).await.must("a");
    let b = s.create_deployment(sample_deployment("b")).await.must("b");
    must_fail(
        s.create_deployment(sample_deployment("a")).await,
        StoreErrorKind::Conflict,
        "create with a taken name",
    );
    let rename = |name: &str| DeploymentPatch {
        name: Some(name.into()),
        ..DeploymentPatch::default()
    };
    must_fail(
        s.update_deployment(b.id, rename("a")).await,
        StoreErrorKind::Conflict,
        "rename to a taken name",
    );
    assert_eq!(
        s.get_deployment(b.id).await.must("b"),
        b,
        "a failed rename changes nothing"
    );
    assert_eq!(
        s.update_deployment(b.id, rename("b"))
            .await
            .must("rename to its own name"),
        b
    );
    let renamed = s
        .update_deployment(b.id, rename("c"))
        .await
        .must("rename to a free name");
    assert_eq!(renamed.name, "c");
    must_fail(
        s.get_deployment_by_name("b").await,
        StoreErrorKind::NotFound,
        "the old name after a rename",
    );
    s.create_deployment(sample_deployment("b"))
        .await
        .must("a renamed-away name is free");
    s.delete_deployment(a.id).await.must("delete a");
    s.create_deployment(sample_deployment("a"))
        .await
        .must("a deleted deployment's name is free");
    assert_eq!(s.list_deployments(all()).await.must("list").items.len(), 3);
}

/// Every patch field on its own; an empty patch changes nothing; an unknown id is
/// `NotFound`.
pub async fn deployments_update_patch(s: &dyn Store) {
    let mut expected = s
        .create_deployment(sample_deployment("chat"))
        .await
        .must("create");
    let other = s
        .create_deployment(sample_deployment("other"))
        .await
        .must("create other");
    let id = expected.id;
    let unchanged = s
        .update_deployment(id, DeploymentPatch::default())
        .await
        .must("empty patch");
    assert_eq!(unchanged, expected, "an empty patch changes nothing");
    let steps: [Step<DeploymentPatch, StoredDeployment>; 6] = [
        (
            "name",
            DeploymentPatch {
                name: Some("chat-v2".into()),
                ..DeploymentPatch::default()
            },
            |d| d.name = "chat-v2".into(),
        ),
        (
            "access",
            DeploymentPatch {
                access: Some(Access::Public),
                ..DeploymentPatch::default()
            },
            |d| d.access = Access::Public,
        ),
        (
            "strategy",
            DeploymentPatch {
                strategy: Some(Strategy::WeightedRoundRobin),
                ..DeploymentPatch::default()
            },
            |d| d.strategy = Strategy::WeightedRoundRobin,
        ),
        (
            "blocked",
            DeploymentPatch {
                blocked: Some(true),
                ..DeploymentPatch::default()
            },
            |d| d.blocked = true,
        ),
        (
            "limits",
            DeploymentPatch {
                limits: Some(full_limits()),
                ..DeploymentPatch::default()
            },
            |d| d.limits = full_limits(),
        ),
        (
            "unblocked",
            DeploymentPatch {
                blocked: Some(false),
                ..DeploymentPatch::default()
            },
            |d| d.blocked = false,
        ),
    ];
    for (field, patch, apply) in steps {
        apply(&mut expected);
        let updated = s.update_deployment(id, patch).await.must(field);
        assert_eq!(
            updated, expected,
            "update_deployment returns the patched {field}"
        );
        assert_eq!(
            s.get_deployment(id).await.must("get"),
            expected,
            "patching {field} is stored and changes nothing else"
        );
    }
    assert_eq!(
        s.get_deployment_by_name("chat-v2").await.must("new name"),
        expected
    );
    assert_eq!(s.get_deployment(other.id).await.must("other"), other);
    must_fail(
        s.update_deployment(DeploymentId(Uuid::now_v7()), DeploymentPatch::default())
            .await,
        StoreErrorKind::NotFound,
        "update_deployment of an unknown id",
    );
}

/// Deleting a deployment deletes its connection links and key links, not the connections,
/// keys, or other deployments' links.
pub async fn deployments_delete_cascades_links(s: &dyn Store) {
    let project = s.create_project(sample_project("p")).await.must("project");
    let key = s
        .create_virtual_key(sample_key(project.id, "hash"))
        .await
        .must("key");
    let connection = s
        .create_connection(sample_connection())
        .await
        .must("connection");
    let doomed = s
        .create_deployment(sample_deployment("doomed"))
        .await
        .must("doomed");
    let kept = s
        .create_deployment(sample_deployment("kept"))
        .await
        .must("kept");
    let mut route = Vec::new();
    let mut grant = Vec::new();
    for d in [&doomed, &kept] {
        route.push(
            s.create_connection_deployment(sample_connection_deployment(connection.id, d.id, 1))
                .await
                .must("connection link"),
        );
        grant.push(
            s.create_virtual_key_deployment(sample_key_deployment(key.id, d.id))
                .await
                .must("key link"),
        );
    }

    s.delete_deployment(doomed.id).await.must("delete");
    must_fail(
        s.get_deployment(doomed.id).await,
        StoreErrorKind::NotFound,
        "a deleted deployment",
    );
    must_fail(
        s.get_deployment_by_name("doomed").await,
        StoreErrorKind::NotFound,
        "a deleted deployment by name",
    );
    must_fail(
        s.get_connection_deployment(route[0].id).await,
        StoreErrorKind::NotFound,
        "a deleted deployment's connection link",
    );
    must_fail(
        s.get_virtual_key_deployment(grant[0].id).await,
        StoreErrorKind::NotFound,
        "a deleted deployment's key link",
    );
    let routes = s
        .list_connection_deployments(None, None, all())
        .await
        .must("connection links");
    assert_eq!(routes.items, vec![route[1].clone()]);
    let grants = s
        .list_virtual_key_deployments(None, None, all())
        .await
        .must("key links");
    assert_eq!(grants.items, vec![grant[1].clone()]);
    assert_eq!(
        s.get_connection(connection.id).await.must("connection"),
        connection
    );
    assert_eq!(s.get_virtual_key(key.id).await.must("key"), key);
    must_fail(
        s.delete_deployment(doomed.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted deployment",
    );
}

/// Links: bad references `NotFound`, a linked pair `Conflict`, weight `0..=100` (more is
/// `Invalid`), re-weight, filters, delete.
pub async fn connection_deployments_crud(s: &dyn Store) {
    let c1 = s.create_connection(sample_connection()).await.must("c1");
    let c2 = s.create_connection(sample_connection()).await.must("c2");
    let d1 = s
        .create_deployment(sample_deployment("d1"))
        .await
        .must("d1");
    let d2 = s
        .create_deployment(sample_deployment("d2"))
        .await
        .must("d2");
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(
            ConnectionId(Uuid::now_v7()),
            d1.id,
            1,
        ))
        .await,
        StoreErrorKind::NotFound,
        "a link to an unknown connection",
    );
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(
            c1.id,
            DeploymentId(Uuid::now_v7()),
            1,
        ))
        .await,
        StoreErrorKind::NotFound,
        "a link to an unknown deployment",
    );
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(c1.id, d1.id, 101))
            .await,
        StoreErrorKind::Invalid,
        "a link with weight 101",
    );

    let mut links = Vec::new();
    for (c, d, weight) in [(c1.id, d1.id, 0), (c1.id, d2.id, 100), (c2.id, d1.id, 5)] {
        let link = sample_connection_deployment(c, d, weight);
        assert_eq!(
            s.create_connection_deployment(link.clone())
                .await
                .must("create link"),
            link
        );
        links.push(link);
    }
    must_fail(
        s.create_connection_deployment(sample_connection_deployment(c1.id, d1.id, 3))
            .await,
        StoreErrorKind::Conflict,
        "linking a linked pair again",
    );
    assert_eq!(
        s.get_connection_deployment(links[1].id).await.must("get"),
        links[1]
    );

    let of = |i: &[usize]| sorted(i.iter().map(|&i| links[i].id.0).collect());
    let cases = [
        ("connection c1", Some(c1.id), None, of(&[0, 1])),
        ("deployment d1", None, Some(d1.id), of(&[0, 2])),
        ("c2 to d1", Some(c2.id), Some(d1.id), of(&[2])),
        ("c2 to d2", Some(c2.id), Some(d2.id), vec![]),
        ("no filter", None, None, of(&[0, 1, 2])),
        (
            "unknown connection",
            Some(ConnectionId(Uuid::now_v7())),
            None,
            vec![],
        ),
    ];
    for (what, connection, deployment, expected) in cases {
        let got = s
            .list_connection_deployments(connection, deployment, all())
            .await
            .must(what);
        assert_eq!(ids(&got.items, |l| l.id.0), expected, "filter: {what}");
        assert_eq!(got.next, None);
    }

    let reweighted = s
        .update_connection_deployment(links[2].id, 7)
        .await
        .must("reweight");
    let expected = ConnectionDeployment {
        weight: 7,
        ..links[2].clone()
    };
    assert_eq!(reweighted, expected);
    assert_eq!(
        s.get_connection_deployment(links[2].id)
            .await
            .must("get reweighted"),
        expected
    );
    must_fail(
        s.update_connection_deployment(links[2].id, 101).await,
        StoreErrorKind::Invalid,
        "re-weight to 101",
    );
    must_fail(
        s.update_connection_deployment(ConnectionDeploymentId::new_v7(), 1)
            .await,
        StoreErrorKind::NotFound,
        "re-weight an unknown link",
    );

    s.delete_connection_deployment(links[0].id)
        .await
        .must("delete");
    must_fail(
        s.get_connection_deployment(links[0].id).await,
        StoreErrorKind::NotFound,
        "a deleted link",
    );
    must_fail(
        s.delete_connection_deployment(links[0].id).await,
        StoreErrorKind::NotFound,
        "delete a deleted link",
    );
    s.create_connection_deployment(sample_connection_deployment(c1.id, d1.id, 1))
        .await
        .must("an unlinked pair can be linked again");
    assert_eq!(s.get_connection(c1.id).await.must("c1"), c1);
    assert_eq!(s.get_deployment(d1.id).await.must("d1"), d1);
}
